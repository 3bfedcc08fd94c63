import datetime

import pytest
from django.utils import timezone

from core.exceptions import ValidationError
from core.validators import is_valid_member_number, luhn_check_digit
from loyalty.exceptions import DuplicateIdentifier
from loyalty.models import Contact, ContactExternalId
from loyalty.services import contact_create, contact_update
from loyalty.services import contacts as contact_services
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db


def _counts():
    return Contact.objects.count(), ContactExternalId.objects.count()


# --- contact_create -------------------------------------------------------------------------


def test_a_registered_contact_gets_a_valid_twelve_digit_member_number():
    contact = contact_create(livemode=False, first_name="Ana")

    contact.refresh_from_db()
    assert len(contact.member_number) == 12
    assert is_valid_member_number(contact.member_number)
    assert contact.status == Contact.Status.ACTIVE


def test_registration_stores_the_phone_in_e164_and_the_email_with_a_lower_case_domain():
    contact = contact_create(livemode=False, mobile_phone="070 723 45 67", email="Ana@Example.COM")

    contact.refresh_from_db()
    assert contact.mobile_phone == "+46707234567"
    assert contact.email == "Ana@example.com"


def test_registration_without_phone_or_email_stores_nulls_not_empty_strings():
    contact = contact_create(livemode=False, first_name="Ana", email="", mobile_phone="")

    contact.refresh_from_db()
    assert contact.email is None
    assert contact.mobile_phone is None


def test_two_contacts_without_phone_or_email_can_both_be_registered():
    contact_create(livemode=False, first_name="Ana")
    contact_create(livemode=False, first_name="Bo")

    assert Contact.objects.filter(email__isnull=True, mobile_phone__isnull=True).count() == 2


def test_registration_writes_the_external_ids_in_the_contacts_mode():
    contact = contact_create(
        livemode=True, external_ids=[{"source": "pos", "id": "P-1"}, {"source": "", "id": "shared-1"}]
    )

    assert sorted(contact.external_ids.values_list("livemode", "source", "value")) == [
        (True, "", "shared-1"),
        (True, "pos", "P-1"),
    ]


def test_registration_strips_external_ids_and_treats_a_missing_source_as_no_source():
    contact = contact_create(livemode=False, external_ids=[{"id": "  X-9  "}])

    assert list(contact.external_ids.values_list("source", "value")) == [("", "X-9")]


def test_registration_records_the_consents_and_when_they_were_given():
    before = timezone.now()

    contact = contact_create(livemode=False, consents={"email": True, "sms": False})

    contact.refresh_from_db()
    assert contact.consents == {"email": True, "sms": False}
    assert contact.consents_updated_at >= before


def test_registration_without_consents_leaves_them_off_and_undated():
    contact = contact_create(livemode=False)

    contact.refresh_from_db()
    assert contact.consents == {"email": False, "sms": False}
    assert contact.consents_updated_at is None


def test_a_malformed_phone_is_refused_and_nothing_is_written():
    with pytest.raises(ValidationError) as error:
        contact_create(livemode=False, mobile_phone="12", external_ids=[{"source": "pos", "id": "A"}])

    assert error.value.parameters[0]["name"] == "mobile_phone"
    assert _counts() == (0, 0)


def test_a_malformed_email_is_refused_naming_email():
    with pytest.raises(ValidationError) as error:
        contact_create(livemode=False, email="not-an-email")

    assert error.value.parameters[0]["name"] == "email"
    assert Contact.objects.count() == 0


def test_a_birth_date_in_the_future_is_refused():
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)

    with pytest.raises(ValidationError) as error:
        contact_create(livemode=False, birth_date=tomorrow)

    assert error.value.parameters[0]["name"] == "birth_date"
    assert Contact.objects.count() == 0


def test_a_birth_date_of_today_is_accepted():
    contact = contact_create(livemode=False, birth_date=timezone.localdate())

    assert contact.birth_date == timezone.localdate()


def test_the_same_external_id_twice_in_one_registration_is_refused():
    with pytest.raises(ValidationError) as error:
        contact_create(livemode=False, external_ids=[{"source": "pos", "id": "A"}, {"source": "pos", "id": " A "}])

    assert error.value.parameters[0]["name"] == "external_ids"
    assert _counts() == (0, 0)


def test_the_same_external_id_value_under_two_sources_in_one_registration_is_accepted():
    contact = contact_create(livemode=False, external_ids=[{"source": "pos", "id": "A"}, {"source": "web", "id": "A"}])

    assert contact.external_ids.count() == 2


def test_an_external_id_without_a_value_is_refused_naming_its_position():
    with pytest.raises(ValidationError) as error:
        contact_create(livemode=False, external_ids=[{"source": "pos", "id": "A"}, {"source": "pos", "id": "  "}])

    assert error.value.parameters[0]["name"] == "external_ids.1.id"


def test_too_many_custom_attributes_are_refused():
    attributes = {f"key{index}": index for index in range(contact_services.MAX_ATTRIBUTES + 1)}

    with pytest.raises(ValidationError) as error:
        contact_create(livemode=False, attributes=attributes)

    assert error.value.parameters[0]["name"] == "attributes"


def test_an_attribute_name_longer_than_sixty_four_characters_is_refused():
    with pytest.raises(ValidationError):
        contact_create(livemode=False, attributes={"x" * 65: 1})


def test_a_phone_another_contact_of_the_mode_holds_is_a_duplicate_and_nothing_is_written():
    ContactFactory(mobile_phone="+46707234567")
    before = _counts()

    with pytest.raises(DuplicateIdentifier) as error:
        contact_create(livemode=False, mobile_phone="070-723 45 67", external_ids=[{"source": "pos", "id": "new"}])

    assert error.value.code == "DUPLICATE_IDENTIFIER"
    assert [parameter["name"] for parameter in error.value.parameters] == ["mobile_phone"]
    assert _counts() == before


def test_an_email_another_contact_holds_in_another_case_is_a_duplicate():
    ContactFactory(email="ana@example.com")

    with pytest.raises(DuplicateIdentifier) as error:
        contact_create(livemode=False, email="ANA@EXAMPLE.COM")

    assert [parameter["name"] for parameter in error.value.parameters] == ["email"]


def test_an_external_id_another_contact_holds_under_the_same_source_is_a_duplicate_naming_its_position():
    ContactExternalIdFactory(source="pos", value="P-1")
    before = _counts()

    with pytest.raises(DuplicateIdentifier) as error:
        contact_create(
            livemode=False,
            email="new@example.com",
            external_ids=[{"source": "web", "id": "W-1"}, {"source": "pos", "id": "P-1"}],
        )

    assert error.value.parameters == [{"name": "external_ids.1", "value": "P-1", "source": "pos"}]
    assert _counts() == before


def test_an_external_id_another_contact_holds_under_another_source_is_not_a_duplicate():
    ContactExternalIdFactory(source="pos", value="P-1")

    contact = contact_create(livemode=False, external_ids=[{"source": "web", "id": "P-1"}])

    assert contact.external_ids.get().source == "web"


def test_every_taken_identifier_is_named_at_once():
    holder = ContactFactory(email="ana@example.com", mobile_phone="+46707234567")
    ContactExternalIdFactory(contact=holder, source="pos", value="P-1")

    with pytest.raises(DuplicateIdentifier) as error:
        contact_create(
            livemode=False,
            email="ana@example.com",
            mobile_phone="+46707234567",
            external_ids=[{"source": "pos", "id": "P-1"}],
        )

    assert [parameter["name"] for parameter in error.value.parameters] == ["email", "mobile_phone", "external_ids.0"]


def test_identifiers_held_in_the_other_mode_do_not_count_as_duplicates():
    holder = ContactFactory(livemode=True, email="ana@example.com", mobile_phone="+46707234567")
    ContactExternalIdFactory(contact=holder, source="pos", value="P-1")

    contact = contact_create(
        livemode=False,
        email="ana@example.com",
        mobile_phone="+46707234567",
        external_ids=[{"source": "pos", "id": "P-1"}],
    )

    assert contact.livemode is False
    assert Contact.objects.filter(mobile_phone="+46707234567").count() == 2


def test_a_duplicate_the_checks_miss_still_ends_in_a_duplicate_identifier(monkeypatch):
    """A concurrent writer may take the phone between the check and the insert: the database's
    unique index refuses it and the service still names the field."""
    ContactFactory(mobile_phone="+46707234567")
    real_check = contact_services._raise_if_taken
    calls = []

    def check_that_misses_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            return None
        return real_check(**kwargs)

    monkeypatch.setattr(contact_services, "_raise_if_taken", check_that_misses_once)

    with pytest.raises(DuplicateIdentifier) as error:
        contact_create(livemode=False, mobile_phone="+46707234567")

    assert len(calls) == 2
    assert [parameter["name"] for parameter in error.value.parameters] == ["mobile_phone"]
    assert Contact.objects.count() == 1


def test_a_member_number_collision_is_retried_with_a_fresh_number(monkeypatch):
    taken = ContactFactory().member_number
    fresh = "70000000000" + luhn_check_digit("70000000000")
    numbers = iter([taken, fresh])
    monkeypatch.setattr(contact_services, "member_number_generate", lambda: next(numbers))

    contact = contact_create(livemode=False, first_name="Ana", external_ids=[{"source": "pos", "id": "A"}])

    contact.refresh_from_db()
    assert contact.member_number == fresh
    assert contact.external_ids.count() == 1
    assert Contact.objects.count() == 2


def test_a_member_number_taken_in_the_other_mode_is_not_a_collision(monkeypatch):
    taken = ContactFactory(livemode=True).member_number
    monkeypatch.setattr(contact_services, "member_number_generate", lambda: taken)

    contact = contact_create(livemode=False)

    assert contact.member_number == taken


def test_registration_gives_up_after_five_member_number_collisions(monkeypatch):
    taken = ContactFactory().member_number
    monkeypatch.setattr(contact_services, "member_number_generate", lambda: taken)

    with pytest.raises(RuntimeError):
        contact_create(livemode=False, external_ids=[{"source": "pos", "id": "A"}])

    assert _counts() == (1, 0)


# --- contact_update -------------------------------------------------------------------------


def test_an_update_changes_only_the_fields_it_is_given():
    contact = ContactFactory(first_name="Ana", last_name="Svensson", email="ana@example.com")

    contact_update(contact=contact, first_name="Anna")

    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name, contact.email) == ("Anna", "Svensson", "ana@example.com")


def test_an_update_normalises_a_new_phone_and_email():
    contact = ContactFactory()

    contact_update(contact=contact, mobile_phone="0046 70 723 45 67", email="Bo@EXAMPLE.se")

    contact.refresh_from_db()
    assert (contact.mobile_phone, contact.email) == ("+46707234567", "Bo@example.se")


def test_an_update_with_none_removes_the_phone_and_the_email():
    contact = ContactFactory()

    contact_update(contact=contact, mobile_phone=None, email=None)

    contact.refresh_from_db()
    assert (contact.mobile_phone, contact.email) == (None, None)


def test_attributes_are_merged_and_a_none_value_deletes_one():
    contact = ContactFactory(attributes={"shoe_size": 42, "club": "north", "pet": "cat"})

    contact_update(contact=contact, attributes={"club": "south", "pet": None, "newsletter": True})

    contact.refresh_from_db()
    assert contact.attributes == {"shoe_size": 42, "club": "south", "newsletter": True}


def test_external_ids_given_on_update_are_added_to_the_existing_ones():
    contact = ContactFactory()
    ContactExternalIdFactory(contact=contact, source="pos", value="P-1")

    contact_update(contact=contact, external_ids=[{"source": "web", "id": "W-1"}, {"source": "pos", "id": "P-1"}])

    assert sorted(contact.external_ids.values_list("source", "value")) == [("pos", "P-1"), ("web", "W-1")]


def test_external_ids_added_on_update_take_the_contacts_mode():
    contact = ContactFactory(livemode=True)

    contact_update(contact=contact, external_ids=[{"source": "web", "id": "W-1"}])

    assert contact.external_ids.get().livemode is True


def test_status_can_be_set_to_blocked_and_back_to_active():
    contact = ContactFactory()

    contact_update(contact=contact, status="blocked")
    contact.refresh_from_db()
    assert contact.status == Contact.Status.BLOCKED

    contact_update(contact=contact, status="active")
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


def test_status_cannot_be_set_to_erased_by_an_update():
    contact = ContactFactory()

    with pytest.raises(ValidationError) as error:
        contact_update(contact=contact, status="erased")

    assert error.value.parameters[0]["name"] == "status"
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


def test_consents_given_on_update_change_only_the_ones_named():
    contact = ContactFactory(email_consent=True, sms_consent=False)

    contact_update(contact=contact, consents={"sms": True})

    contact.refresh_from_db()
    assert contact.consents == {"email": True, "sms": True}
    assert contact.consents_updated_at is not None


def test_an_update_to_another_contacts_phone_is_a_duplicate_and_changes_nothing():
    ContactFactory(mobile_phone="+46707234567")
    contact = ContactFactory(first_name="Ana", mobile_phone="+46701111111")

    with pytest.raises(DuplicateIdentifier) as error:
        contact_update(contact=contact, first_name="Anna", mobile_phone="070 723 45 67")

    assert error.value.parameters[0]["name"] == "mobile_phone"
    contact.refresh_from_db()
    assert (contact.first_name, contact.mobile_phone) == ("Ana", "+46701111111")


def test_an_update_to_another_contacts_external_id_is_a_duplicate_and_adds_nothing():
    ContactExternalIdFactory(source="pos", value="P-1")
    contact = ContactFactory()

    with pytest.raises(DuplicateIdentifier):
        contact_update(contact=contact, external_ids=[{"source": "web", "id": "W-1"}, {"source": "pos", "id": "P-1"}])

    assert contact.external_ids.count() == 0


def test_an_update_keeping_the_contacts_own_identifiers_is_not_a_duplicate():
    contact = ContactFactory(email="ana@example.com", mobile_phone="+46707234567")

    contact_update(contact=contact, email="ANA@example.com", mobile_phone="070 723 45 67")

    contact.refresh_from_db()
    assert contact.email == "ANA@example.com"


def test_an_update_to_a_future_birth_date_is_refused():
    contact = ContactFactory(birth_date=datetime.date(1990, 5, 17))

    with pytest.raises(ValidationError):
        contact_update(contact=contact, birth_date=timezone.localdate() + datetime.timedelta(days=1))

    contact.refresh_from_db()
    assert contact.birth_date == datetime.date(1990, 5, 17)


def test_an_update_from_a_stale_copy_does_not_undo_another_writers_change():
    """Two integrators patch one contact at the same time: each change survives the other."""
    contact = ContactFactory(first_name="Ana", attributes={"club": "north"})
    stale_copy = Contact.objects.get(pk=contact.pk)

    contact_update(contact=contact, last_name="Berg", attributes={"shoe_size": 42})
    contact_update(contact=stale_copy, first_name="Anna", attributes={"pet": "cat"})

    contact.refresh_from_db()
    assert (contact.first_name, contact.last_name) == ("Anna", "Berg")
    assert contact.attributes == {"club": "north", "shoe_size": 42, "pet": "cat"}
