import factory

from core.validators import luhn_check_digit
from loyalty.models import Contact, ContactExternalId


def _member_number(sequence: int) -> str:
    body = f"9{sequence:010d}"
    return body + luhn_check_digit(body)


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    livemode = False
    member_number = factory.Sequence(_member_number)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    mobile_phone = factory.Sequence(lambda n: f"+4670{n:07d}")


class ContactExternalIdFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactExternalId

    contact = factory.SubFactory(ContactFactory)
    livemode = factory.SelfAttribute("contact.livemode")
    source = "pos"
    value = factory.Sequence(lambda n: f"EXT{n}")
