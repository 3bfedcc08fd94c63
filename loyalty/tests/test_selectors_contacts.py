import uuid

import pytest

from core.exceptions import AmbiguousMatch, NotFound, ValidationError
from core.validators import luhn_check_digit
from loyalty.selectors import contact_find, contact_get, contact_list, contact_resolve
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana():
    return ContactFactory(email="Ana.Svensson@example.com", mobile_phone="+46707234567")


def _wrong_check_digit(member_number):
    right = member_number[-1]
    return member_number[:-1] + str((int(right) + 1) % 10)


# --- contact_find ---------------------------------------------------------------------------


def test_a_contact_is_found_by_its_member_number(ana):
    assert contact_find(livemode=False, match_key=ana.member_number, match_key_type="member_number") == ana


def test_a_member_number_typed_with_spaces_still_finds_the_contact(ana):
    spaced = " ".join(ana.member_number[index : index + 4] for index in range(0, 12, 4))

    assert contact_find(livemode=False, match_key=spaced, match_key_type="member_number") == ana


def test_a_member_number_with_a_wrong_check_digit_is_a_validation_error_naming_match_key(ana):
    with pytest.raises(ValidationError) as error:
        contact_find(livemode=False, match_key=_wrong_check_digit(ana.member_number), match_key_type="member_number")

    assert [parameter["name"] for parameter in error.value.parameters] == ["match_key"]


def test_a_valid_member_number_nobody_has_is_not_found(ana):
    body = "12345678901"

    with pytest.raises(NotFound) as error:
        contact_find(livemode=False, match_key=body + luhn_check_digit(body), match_key_type="member_number")

    assert error.value.parameters[0]["name"] == "match_key"


@pytest.mark.parametrize(
    "typed", ["+46707234567", "+46 70-723 45 67", "0046707234567", "070 723 45 67", "46707234567", "(070) 7234567"]
)
def test_a_contact_is_found_by_its_phone_in_any_usual_format(ana, typed):
    assert contact_find(livemode=False, match_key=typed, match_key_type="mobile_phone") == ana


def test_a_malformed_phone_match_key_is_a_validation_error_naming_match_key(ana):
    with pytest.raises(ValidationError) as error:
        contact_find(livemode=False, match_key="12", match_key_type="mobile_phone")

    assert [parameter["name"] for parameter in error.value.parameters] == ["match_key"]


@pytest.mark.parametrize("typed", ["Ana.Svensson@example.com", "ana.svensson@example.com", "ANA.SVENSSON@EXAMPLE.COM"])
def test_a_contact_is_found_by_its_email_in_any_case(ana, typed):
    assert contact_find(livemode=False, match_key=typed, match_key_type="email") == ana


def test_a_malformed_email_match_key_is_a_validation_error_naming_match_key(ana):
    with pytest.raises(ValidationError) as error:
        contact_find(livemode=False, match_key="ana-at-example", match_key_type="email")

    assert error.value.parameters[0]["name"] == "match_key"


def test_a_contact_is_found_by_an_external_id_with_its_source(ana):
    ContactExternalIdFactory(contact=ana, source="pos", value="CARD-1")

    assert contact_find(livemode=False, match_key="CARD-1", match_key_type="external_id", source="pos") == ana


def test_a_contact_is_found_by_an_external_id_without_a_source(ana):
    ContactExternalIdFactory(contact=ana, source="pos", value="CARD-1")

    assert contact_find(livemode=False, match_key="CARD-1", match_key_type="external_id") == ana


def test_an_external_id_under_another_source_is_not_found(ana):
    ContactExternalIdFactory(contact=ana, source="pos", value="CARD-1")

    with pytest.raises(NotFound):
        contact_find(livemode=False, match_key="CARD-1", match_key_type="external_id", source="web")


def test_an_external_id_two_sources_give_two_contacts_is_ambiguous_without_a_source(ana):
    bo = ContactFactory()
    ContactExternalIdFactory(contact=ana, source="pos", value="42")
    ContactExternalIdFactory(contact=bo, source="web", value="42")

    with pytest.raises(AmbiguousMatch) as error:
        contact_find(livemode=False, match_key="42", match_key_type="external_id")

    assert error.value.code == "AMBIGUOUS_MATCH_KEY"
    assert error.value.parameters[0]["name"] == "match_key"
    assert sorted(error.value.parameters[0]["contacts"]) == sorted([str(ana.pk), str(bo.pk)])


def test_an_external_id_two_sources_give_two_contacts_is_unambiguous_with_a_source(ana):
    bo = ContactFactory()
    ContactExternalIdFactory(contact=ana, source="pos", value="42")
    ContactExternalIdFactory(contact=bo, source="web", value="42")

    assert contact_find(livemode=False, match_key="42", match_key_type="external_id", source="pos") == ana
    assert contact_find(livemode=False, match_key="42", match_key_type="external_id", source="web") == bo


def test_an_external_id_two_sources_give_the_same_contact_is_not_ambiguous(ana):
    ContactExternalIdFactory(contact=ana, source="pos", value="42")
    ContactExternalIdFactory(contact=ana, source="web", value="42")

    assert contact_find(livemode=False, match_key="42", match_key_type="external_id") == ana


def test_an_external_id_given_without_source_is_found_by_the_empty_source(ana):
    ContactExternalIdFactory(contact=ana, source="", value="42")

    assert contact_find(livemode=False, match_key="42", match_key_type="external_id", source="") == ana


def test_an_unknown_match_key_type_is_a_validation_error_naming_match_key_type(ana):
    with pytest.raises(ValidationError) as error:
        contact_find(livemode=False, match_key=ana.member_number, match_key_type="passport")

    assert [parameter["name"] for parameter in error.value.parameters] == ["match_key_type"]


@pytest.mark.parametrize(
    ("match_key_type", "match_key"),
    [("mobile_phone", "+46707234567"), ("email", "ana.svensson@example.com"), ("external_id", "CARD-1")],
)
def test_a_contact_of_the_other_mode_is_not_found_by_any_identifier(ana, match_key_type, match_key):
    ContactExternalIdFactory(contact=ana, source="pos", value="CARD-1")

    with pytest.raises(NotFound):
        contact_find(livemode=True, match_key=match_key, match_key_type=match_key_type)


def test_a_contact_of_the_other_mode_is_not_found_by_member_number(ana):
    with pytest.raises(NotFound):
        contact_find(livemode=True, match_key=ana.member_number, match_key_type="member_number")


def test_an_external_id_held_in_both_modes_finds_each_modes_own_contact_without_ambiguity(ana):
    live_twin = ContactFactory(livemode=True)
    ContactExternalIdFactory(contact=ana, source="pos", value="42")
    ContactExternalIdFactory(contact=live_twin, source="pos", value="42")

    assert contact_find(livemode=False, match_key="42", match_key_type="external_id") == ana
    assert contact_find(livemode=True, match_key="42", match_key_type="external_id") == live_twin


# --- contact_get, contact_list, contact_resolve ------------------------------------------------


def test_a_contact_is_got_by_its_id_as_a_string_or_uuid(ana):
    assert contact_get(livemode=False, contact_id=str(ana.pk)) == ana
    assert contact_get(livemode=False, contact_id=ana.pk) == ana


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "123", None])
def test_a_malformed_id_is_not_found_naming_id(bad_id):
    with pytest.raises(NotFound) as error:
        contact_get(livemode=False, contact_id=bad_id)

    assert error.value.parameters[0]["name"] == "id"


def test_an_unknown_id_is_not_found():
    with pytest.raises(NotFound):
        contact_get(livemode=False, contact_id=uuid.uuid4())


def test_another_modes_contact_is_not_found_by_id(ana):
    with pytest.raises(NotFound):
        contact_get(livemode=True, contact_id=ana.pk)


def test_the_contact_list_holds_only_the_modes_contacts(ana):
    live_contact = ContactFactory(livemode=True)

    assert list(contact_list(livemode=False)) == [ana]
    assert list(contact_list(livemode=True)) == [live_contact]


def test_reading_the_external_ids_of_listed_contacts_takes_no_query_per_contact(django_assert_num_queries):
    for contact in ContactFactory.create_batch(5):
        ContactExternalIdFactory.create_batch(2, contact=contact)

    with django_assert_num_queries(2):
        values = [[external_id.value for external_id in c.external_ids.all()] for c in contact_list(livemode=False)]

    assert [len(ids) for ids in values] == [2] * 5


def test_a_reference_by_id_resolves_to_the_contact(ana):
    assert contact_resolve(livemode=False, reference={"id": str(ana.pk)}) == ana


def test_a_reference_by_match_key_resolves_to_the_contact(ana):
    ContactExternalIdFactory(contact=ana, source="pos", value="CARD-1")

    resolved = contact_resolve(
        livemode=False, reference={"match_key": "CARD-1", "match_key_type": "external_id", "source": "pos"}
    )

    assert resolved == ana


def test_a_reference_to_another_modes_contact_does_not_resolve(ana):
    with pytest.raises(NotFound):
        contact_resolve(livemode=True, reference={"id": str(ana.pk)})
