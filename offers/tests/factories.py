from decimal import Decimal

import factory

from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer, Offer


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offer

    livemode = False
    name = factory.Sequence(lambda n: f"Offer {n}")
    status = Offer.Status.ACTIVE
    benefit_type = Offer.Benefit.PERCENT_OFF
    benefit_value = Decimal("10")
    currency = "EUR"
    applies_to = Offer.AppliesTo.QUALIFYING_ITEMS


class IssuedOfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IssuedOffer

    offer = factory.SubFactory(OfferFactory)
    contact = factory.SubFactory(ContactFactory, livemode=factory.SelfAttribute("..offer.livemode"))
    livemode = factory.SelfAttribute("offer.livemode")
