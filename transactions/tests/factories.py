from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone

from core.baskets import BasketLine
from loyalty.services.earning import earning_rule_create
from offers.models import OfferRestriction
from offers.services.engine import BasketContext
from offers.services.issued import issued_offer_lock
from offers.tests.factories import IssuedOfferFactory, OfferFactory
from transactions.api.serializers import fingerprint
from transactions.services.intake import Purchase


def purchase_payload(external_id="T-1", contact=None, lines=3, **extra):
    payload = {
        "id": external_id,
        "occurred_at": datetime(2026, 11, 20, 12, 0, tzinfo=UTC).isoformat(),
        "currency": "EUR",
        "channel": "pos",
        "items": [
            {"sku": f"SKU{n}", "quantity": 1, "unit_price": "10.00", "amount": "10.00", "tax_included": "2.00"}
            for n in range(lines)
        ],
        "payments": [{"method": "card", "amount": f"{10 * lines}.00"}],
        "tax_total": f"{2 * lines}.00",
    }
    if contact is not None:
        payload["contact"] = contact
    payload.update(extra)
    return payload


def purchase(
    external_id="T-1",
    *,
    lines=(("SKU0", 1000),),
    contact=None,
    occurred_at=None,
    discounts=(),
    spend=None,
    currency="EUR",
    **extra,
):
    """A validated purchase for the services (amounts in minor units). `lines` are (sku, amount)
    or (sku, amount, quantity, family, brand); `contact` a Contact or a contact reference."""
    basket = []
    for line in lines:
        sku, amount, quantity, family, brand = (*line, None, None, None)[:5]
        basket.append(BasketLine(sku=sku, amount=amount, quantity=Decimal(quantity or 1), family=family, brand=brand))
    reference = {"id": str(contact.pk)} if hasattr(contact, "pk") else contact
    discounts = [{"amount": amount, "issued_offer_id": issued_offer_id} for amount, issued_offer_id in discounts]
    fields = {
        "external_id": external_id,
        "occurred_at": occurred_at or timezone.now(),
        "currency": currency,
        "lines": basket,
        "contact_reference": reference,
        "discounts": discounts,
        "spend": spend,
        **extra,
    }
    return Purchase(fingerprint=fingerprint({**fields, "occurred_at": str(fields["occurred_at"])}), **fields)


def base_rule(*, livemode=False, points_per_unit="1", **fields):
    """An economy rule: `points_per_unit` points per 1.00 EUR spent."""
    fields.setdefault("name", f"Base {points_per_unit}")
    fields.setdefault("currency", "EUR")
    return earning_rule_create(livemode=livemode, points_per_unit=Decimal(points_per_unit), **fields)


def locked_offer(
    *, contact, transaction_id, lines=(("SKU0", 1000),), ttl_seconds=None, restrictions=(), **offer_fields
):
    """An offer issued to the contact and locked by `transaction_id` on a basket of `lines`
    ((sku, amount) or (sku, amount, family)); `restrictions` are (mode, kind, value).
    Returns (issued offer, evaluation)."""
    offer = OfferFactory(livemode=contact.livemode, **offer_fields)
    for mode, kind, value in restrictions:
        OfferRestriction.objects.create(offer=offer, mode=mode, kind=kind, value=value)
    issued = IssuedOfferFactory(offer=offer, contact=contact)
    context = BasketContext(
        lines=[BasketLine(sku=line[0], amount=line[1], family=(*line, None)[2]) for line in lines],
        currency="EUR",
        at=timezone.now(),
        channel="pos",
    )
    return issued_offer_lock(
        issued_offer_id=issued.pk, transaction_id=transaction_id, context=context, ttl_seconds=ttl_seconds
    )
