import datetime
import threading
import uuid

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.tests.assertions import assert_error_body
from core.validators import is_valid_member_number, luhn_check_digit, normalize_email
from loyalty.models import Contact, ContactExternalId
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts"
STORED_PHONE = "+46707234567"


def _detail(contact_id):
    return f"{CONTACTS}/{contact_id}"


def assert_error(response, status, code, *parameters):
    """The contract's error body, its `parameters` exactly `parameters`: each offending field (dotted
    path when nested) or id, followed by its offending value where there is one and by any figures
    as name/value pairs (`"match_key", "<value>", "match_key_type", "email"`)."""
    return assert_error_body(response, status, code, parameters)


def _identify(client, match_key, match_key_type, **extra):
    return client.get(CONTACTS, {"match_key": match_key, "match_key_type": match_key_type, **extra})


def _identified_ids(response):
    assert response.status_code == 200, response.json()
    return [contact["id"] for contact in response.json()["results"]]


def _counts():
    return Contact.objects.count(), ContactExternalId.objects.count()


@pytest.fixture
def ana():
    contact = ContactFactory(first_name="Ana", email="Ana.Svensson@example.com", mobile_phone=STORED_PHONE)
    ContactExternalIdFactory(contact=contact, source="pos", value="CARD-5512")
    return contact


# --- identification: GET /contacts?match_key=&match_key_type= ---------------------------------


def test_registered_contact_is_found_by_its_phone_in_another_format(client_test):
    response = client_test.post(
        CONTACTS,
        {"first_name": "Ana", "mobile_phone": "+46 70-723 45 67", "email": "Ana@Example.com"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["mobile_phone"] == STORED_PHONE
    assert body["livemode"] is False

    found = _identify(client_test, "0707234567", "mobile_phone")
    assert _identified_ids(found) == [body["id"]]


def test_a_contact_is_identified_by_its_member_number(client_test, ana):
    ContactFactory.create_batch(2)

    response = _identify(client_test, ana.member_number, "member_number")

    assert _identified_ids(response) == [str(ana.pk)]
    assert response.json()["results"][0]["member_number"] == ana.member_number


def test_a_member_number_with_a_wrong_check_digit_is_refused_naming_match_key(client_test, ana):
    wrong = ana.member_number[:-1] + str((int(ana.member_number[-1]) + 1) % 10)

    response = _identify(client_test, wrong, "member_number")

    assert_error(response, 400, "VALIDATION_ERROR", "match_key")


@pytest.mark.parametrize(
    "typed", ["+46 70-723 45 67", "0046707234567", "070 723 45 67", "46707234567", "(070) 7234567", STORED_PHONE]
)
def test_a_contact_is_identified_by_its_phone_in_any_usual_format(client_test, ana, typed):
    ContactFactory.create_batch(2)

    assert _identified_ids(_identify(client_test, typed, "mobile_phone")) == [str(ana.pk)]


def test_a_phone_with_an_unencoded_plus_in_the_query_string_still_identifies_the_contact(client_test, ana):
    response = client_test.get(f"{CONTACTS}?match_key=+46707234567&match_key_type=mobile_phone")

    assert _identified_ids(response) == [str(ana.pk)]


def test_a_malformed_phone_is_refused_naming_match_key(client_test, ana):
    assert_error(_identify(client_test, "12", "mobile_phone"), 400, "VALIDATION_ERROR", "match_key")


@pytest.mark.parametrize("typed", ["Ana.Svensson@example.com", "ana.svensson@EXAMPLE.com", "ANA.SVENSSON@EXAMPLE.COM"])
def test_a_contact_is_identified_by_its_email_in_any_case(client_test, ana, typed):
    assert _identified_ids(_identify(client_test, typed, "email")) == [str(ana.pk)]


def test_a_contact_is_identified_by_an_external_id_with_its_source(client_test, ana):
    assert _identified_ids(_identify(client_test, "CARD-5512", "external_id", source="pos")) == [str(ana.pk)]


def test_a_contact_is_identified_by_an_external_id_without_a_source(client_test, ana):
    assert _identified_ids(_identify(client_test, "CARD-5512", "external_id")) == [str(ana.pk)]


def test_an_external_id_under_another_source_is_not_found(client_test, ana):
    response = _identify(client_test, "CARD-5512", "external_id", source="web")

    assert_error(response, 404, "NOT_FOUND", "match_key", "CARD-5512", "match_key_type", "external_id")


def test_an_external_id_two_sources_use_for_two_contacts_is_ambiguous_without_source(client_test, ana):
    bo = ContactFactory()
    ContactExternalIdFactory(contact=ana, source="pos", value="1001")
    ContactExternalIdFactory(contact=bo, source="web", value="1001")

    response = _identify(client_test, "1001", "external_id")

    assert_error_body(response, 409, "AMBIGUOUS_MATCH_KEY")
    parameters = response.json()["parameters"]
    assert parameters[:3] == ["match_key", "1001", "contacts"]
    assert sorted(parameters[3:]) == sorted([str(ana.pk), str(bo.pk)])


def test_an_external_id_two_sources_use_for_two_contacts_finds_one_contact_with_source(client_test, ana):
    bo = ContactFactory()
    ContactExternalIdFactory(contact=ana, source="pos", value="1001")
    ContactExternalIdFactory(contact=bo, source="web", value="1001")

    assert _identified_ids(_identify(client_test, "1001", "external_id", source="pos")) == [str(ana.pk)]
    assert _identified_ids(_identify(client_test, "1001", "external_id", source="web")) == [str(bo.pk)]


def test_an_unknown_match_key_type_is_refused_naming_match_key_type(client_test, ana):
    response = _identify(client_test, ana.member_number, "loyalty_card")

    assert_error(response, 400, "VALIDATION_ERROR", "match_key_type")


def test_a_match_key_without_a_type_is_refused_naming_match_key_type(client_test, ana):
    response = client_test.get(CONTACTS, {"match_key": ana.member_number})

    assert_error(response, 400, "VALIDATION_ERROR", "match_key_type")


def test_a_match_key_type_without_a_match_key_is_refused_naming_match_key(client_test, ana):
    response = client_test.get(CONTACTS, {"match_key_type": "email"})

    assert_error(response, 400, "VALIDATION_ERROR", "match_key")


def test_an_empty_match_key_is_refused_naming_match_key(client_test, ana):
    assert_error(_identify(client_test, "", "email"), 400, "VALIDATION_ERROR", "match_key")


@pytest.mark.parametrize(
    ("match_key", "match_key_type"),
    [
        ("070 111 22 33", "mobile_phone"),
        ("nobody@example.com", "email"),
        ("CARD-0000", "external_id"),
        ("12345678901" + luhn_check_digit("12345678901"), "member_number"),
    ],
)
def test_an_identifier_nobody_has_is_not_found(client_test, ana, match_key, match_key_type):
    response = _identify(client_test, match_key, match_key_type)

    assert_error(response, 404, "NOT_FOUND", "match_key", match_key, "match_key_type", match_key_type)


def test_identification_without_a_key_is_unauthenticated(client, ana):
    response = client.get(CONTACTS, {"match_key": ana.member_number, "match_key_type": "member_number"})

    assert_error(response, 401, "AUTHENTICATION_FAILED")


# --- registration: POST /contacts --------------------------------------------------------------


def test_registration_returns_the_contact_with_id_member_number_livemode_and_normalised_identifiers(client_test):
    response = client_test.post(
        CONTACTS,
        {
            "first_name": "Ana",
            "last_name": "Svensson",
            "email": "Ana.Svensson@Example.COM",
            "mobile_phone": "070-723 45 67",
            "birth_date": "1990-05-17",
            "external_ids": [{"source": "pos", "id": "CARD-5512"}, {"id": "legacy-9"}],
            "consents": {"email": True, "sms": False},
            "attributes": {"shoe_size": 42, "club": "north"},
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    contact = Contact.objects.get()
    assert body["id"] == str(contact.pk)
    assert len(body["member_number"]) == 12
    assert body["member_number"].isdigit()
    assert is_valid_member_number(body["member_number"])
    assert body["member_number"] == contact.member_number
    assert body["livemode"] is False
    assert body["status"] == "active"
    assert body["mobile_phone"] == STORED_PHONE
    assert body["email"] == "Ana.Svensson@example.com"
    assert body["birth_date"] == "1990-05-17"
    assert sorted(body["external_ids"], key=lambda entry: entry["id"]) == [
        {"source": "pos", "id": "CARD-5512"},
        {"source": "", "id": "legacy-9"},
    ]
    assert body["consents"] == {"email": True, "sms": False}
    assert body["attributes"] == {"shoe_size": 42, "club": "north"}
    assert contact.livemode is False
    assert contact.mobile_phone == STORED_PHONE


def test_registration_with_a_live_key_is_live(client_live):
    response = client_live.post(CONTACTS, {"first_name": "Ana"}, format="json")

    assert response.status_code == 201
    assert response.json()["livemode"] is True
    assert Contact.objects.get().livemode is True


def test_registration_with_an_empty_body_gives_a_contact_with_just_a_member_number(client_test):
    response = client_test.post(CONTACTS, {}, format="json")

    assert response.status_code == 201
    assert is_valid_member_number(response.json()["member_number"])


def test_registration_with_a_bad_phone_is_refused_naming_mobile_phone(client_test):
    response = client_test.post(CONTACTS, {"mobile_phone": "070 12"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "mobile_phone")
    assert _counts() == (0, 0)


def test_registration_with_a_bad_email_is_refused_naming_email(client_test):
    response = client_test.post(CONTACTS, {"email": "ana(at)example.com"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "email")
    assert _counts() == (0, 0)


@pytest.mark.parametrize(
    ("field", "taken_as", "sent_as", "shown_as"),
    [
        ("mobile_phone", STORED_PHONE, "070 723 45 67", STORED_PHONE),
        ("email", "ana.svensson@example.com", "ANA.Svensson@Example.com", "ANA.Svensson@example.com"),
    ],
)
def test_registration_with_a_taken_identifier_is_a_duplicate_and_writes_nothing(
    client_test, field, taken_as, sent_as, shown_as
):
    ContactFactory(**{field: taken_as})
    before = _counts()

    response = client_test.post(
        CONTACTS,
        {"first_name": "Copy", field: sent_as, "external_ids": [{"source": "pos", "id": "NEW-1"}]},
        format="json",
    )

    assert_error(response, 409, "DUPLICATE_IDENTIFIER", field, shown_as)
    assert _counts() == before
    assert not ContactExternalId.objects.filter(value="NEW-1").exists()


def test_registration_with_a_taken_external_id_is_a_duplicate_and_writes_nothing(client_test, ana):
    before = _counts()

    response = client_test.post(
        CONTACTS,
        {
            "email": "fresh@example.com",
            "external_ids": [{"source": "web", "id": "W-1"}, {"source": "pos", "id": "CARD-5512"}],
        },
        format="json",
    )

    assert_error(response, 409, "DUPLICATE_IDENTIFIER", "external_ids.1", "CARD-5512", "source", "pos")
    assert _counts() == before
    assert not Contact.objects.filter(email="fresh@example.com").exists()


def test_registration_naming_the_same_external_id_twice_is_refused(client_test):
    response = client_test.post(
        CONTACTS,
        {"external_ids": [{"source": "pos", "id": "CARD-1"}, {"source": "pos", "id": "CARD-1"}]},
        format="json",
    )

    assert_error(response, 400, "VALIDATION_ERROR", "external_ids")
    assert _counts() == (0, 0)


def test_registration_with_a_future_birth_date_is_refused(client_test):
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)

    response = client_test.post(CONTACTS, {"birth_date": tomorrow.isoformat()}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "birth_date")
    assert Contact.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": 123}, "first_name"),
        ({"last_name": True}, "last_name"),
        ({"email": 42}, "email"),
        ({"mobile_phone": 46707234567}, "mobile_phone"),
        ({"consents": "yes"}, "consents"),
        ({"consents": {"email": "maybe"}}, "consents.email"),
        ({"external_ids": "CARD-1"}, "external_ids"),
        ({"external_ids": {"source": "pos", "id": "CARD-1"}}, "external_ids"),
        ({"external_ids": [{"source": "pos", "id": 1}]}, "external_ids.0.id"),
        ({"external_ids": [{"source": "pos"}]}, "external_ids.0.id"),
        ({"attributes": ["a", "b"]}, "attributes"),
        ({"birth_date": "17/05/1990"}, "birth_date"),
    ],
)
def test_registration_with_a_field_of_the_wrong_type_is_refused_naming_it(client_test, body, field):
    response = client_test.post(CONTACTS, body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert Contact.objects.count() == 0


@pytest.mark.parametrize("field", ["phone", "member_number", "livemode", "id", "status"])
def test_registration_with_an_unknown_or_read_only_field_is_refused_naming_it(client_test, field):
    response = client_test.post(CONTACTS, {"first_name": "Ana", field: "x"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert Contact.objects.count() == 0


def test_registration_with_more_than_twenty_external_ids_is_refused(client_test):
    external_ids = [{"source": "pos", "id": f"CARD-{index}"} for index in range(21)]

    response = client_test.post(CONTACTS, {"external_ids": external_ids}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "external_ids")
    assert _counts() == (0, 0)


def test_registration_with_a_body_that_is_not_an_object_is_refused(client_test):
    response = client_test.post(CONTACTS, [{"first_name": "Ana"}], format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "body")


def test_registration_repeated_with_the_same_idempotency_key_returns_the_first_contact(client_test):
    payload = {"first_name": "Ana", "mobile_phone": "070 723 45 67"}

    first = client_test.post(CONTACTS, payload, format="json", HTTP_IDEMPOTENCY_KEY="reg-1")
    again = client_test.post(CONTACTS, payload, format="json", HTTP_IDEMPOTENCY_KEY="reg-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert Contact.objects.count() == 1


def test_an_idempotency_key_reused_with_another_body_is_a_mismatch(client_test):
    client_test.post(CONTACTS, {"first_name": "Ana"}, format="json", HTTP_IDEMPOTENCY_KEY="reg-1")

    response = client_test.post(CONTACTS, {"first_name": "Bo"}, format="json", HTTP_IDEMPOTENCY_KEY="reg-1")

    assert_error(response, 409, "IDEMPOTENCY_MISMATCH", "Idempotency-Key", "reg-1")
    assert Contact.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("mobile_phone", ["070 723 45 67", "+46707234567", "0046 70 723 45 67", "(070) 7234567", "46707234567"]),
        ("email", ["ana@example.com", "ANA@example.com", "Ana@Example.com", "ana@EXAMPLE.COM", "aNa@example.com"]),
    ],
)
def test_concurrent_registrations_of_one_identifier_create_exactly_one_contact(make_client, field, values):
    thread_count = 10
    # Keys are created here, in the main thread, and committed before any request runs.
    clients = [make_client(livemode=False, name=f"till {index}") for index in range(thread_count)]
    barrier = threading.Barrier(thread_count)
    responses = [None] * thread_count
    failures = []

    def register(index):
        try:
            barrier.wait(timeout=30)
            responses[index] = clients[index].post(
                CONTACTS, {"first_name": f"Ana {index}", field: values[index % len(values)]}, format="json"
            )
        except BaseException as error:  # noqa: BLE001 - reported to the main thread below
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register, args=(index,)) for index in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures
    assert all(not thread.is_alive() for thread in threads)
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * (thread_count - 1), [response.json() for response in responses]
    for index, response in enumerate(responses):
        if response.status_code == 409:
            sent = values[index % len(values)]
            shown = STORED_PHONE if field == "mobile_phone" else normalize_email(sent)  # as the contact would hold it
            assert_error(response, 409, "DUPLICATE_IDENTIFIER", field, shown)
    assert Contact.objects.count() == 1


# --- GET /contacts/{id} ------------------------------------------------------------------------


def test_a_contact_is_read_by_its_id(client_test, ana):
    response = client_test.get(_detail(ana.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(ana.pk)
    assert body["member_number"] == ana.member_number
    assert body["mobile_phone"] == STORED_PHONE
    assert body["external_ids"] == [{"source": "pos", "id": "CARD-5512"}]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "12345", "0" * 40])
def test_a_non_uuid_id_is_not_found(client_test, bad_id):
    assert_error(client_test.get(_detail(bad_id)), 404, "NOT_FOUND", "id", bad_id)
    response = client_test.patch(_detail(bad_id), {"first_name": "X"}, format="json")
    assert_error(response, 404, "NOT_FOUND", "id", bad_id)


def test_an_unknown_id_is_not_found(client_test):
    unknown_id = str(uuid.uuid4())

    assert_error(client_test.get(_detail(unknown_id)), 404, "NOT_FOUND", "id", unknown_id)


# --- PATCH /contacts/{id} ----------------------------------------------------------------------


def test_a_patch_changes_only_the_fields_sent(client_test, ana):
    ana.last_name = "Svensson"
    ana.birth_date = datetime.date(1990, 5, 17)
    ana.attributes = {"club": "north"}
    ana.save()

    response = client_test.patch(_detail(ana.pk), {"first_name": "Anna"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["first_name"] == "Anna"
    ana.refresh_from_db()
    assert ana.first_name == "Anna"
    assert ana.last_name == "Svensson"
    assert ana.birth_date == datetime.date(1990, 5, 17)
    assert ana.email == "Ana.Svensson@example.com"
    assert ana.mobile_phone == STORED_PHONE
    assert ana.attributes == {"club": "north"}
    assert list(ana.external_ids.values_list("value", flat=True)) == ["CARD-5512"]


def test_a_patch_merges_attributes_and_null_deletes_one(client_test, ana):
    ana.attributes = {"club": "north", "pet": "cat", "shoe_size": 42}
    ana.save()

    response = client_test.patch(
        _detail(ana.pk), {"attributes": {"club": "south", "pet": None, "vip": True}}, format="json"
    )

    assert response.status_code == 200, response.json()
    expected = {"club": "south", "shoe_size": 42, "vip": True}
    assert response.json()["attributes"] == expected
    ana.refresh_from_db()
    assert ana.attributes == expected


def test_a_patch_adds_external_ids_to_the_existing_ones(client_test, ana):
    response = client_test.patch(
        _detail(ana.pk),
        {"external_ids": [{"source": "web", "id": "W-1"}, {"source": "pos", "id": "CARD-5512"}]},
        format="json",
    )

    assert response.status_code == 200, response.json()
    expected = [{"source": "pos", "id": "CARD-5512"}, {"source": "web", "id": "W-1"}]
    assert sorted(response.json()["external_ids"], key=lambda entry: entry["source"]) == expected
    assert sorted(ana.external_ids.values_list("source", "value")) == [("pos", "CARD-5512"), ("web", "W-1")]


def test_a_patch_with_another_contacts_external_id_is_a_duplicate(client_test, ana):
    bo = ContactFactory()

    response = client_test.patch(
        _detail(bo.pk), {"external_ids": [{"source": "pos", "id": "CARD-5512"}]}, format="json"
    )

    assert_error(response, 409, "DUPLICATE_IDENTIFIER", "external_ids.0", "CARD-5512", "source", "pos")
    assert bo.external_ids.count() == 0


@pytest.mark.parametrize("field", ["email", "mobile_phone"])
def test_a_patch_with_null_removes_an_identifier(client_test, ana, field):
    response = client_test.patch(_detail(ana.pk), {field: None}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()[field] is None
    ana.refresh_from_db()
    assert getattr(ana, field) is None


def test_a_patch_normalises_a_new_phone(client_test, ana):
    response = client_test.patch(_detail(ana.pk), {"mobile_phone": "0046 70 111 22 33"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["mobile_phone"] == "+46701112233"


def test_a_patch_with_a_bad_phone_is_refused_naming_mobile_phone(client_test, ana):
    response = client_test.patch(_detail(ana.pk), {"mobile_phone": "12"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "mobile_phone")
    ana.refresh_from_db()
    assert ana.mobile_phone == STORED_PHONE


@pytest.mark.parametrize("status", ["blocked", "active"])
def test_a_patch_may_set_the_status_to_blocked_or_active(client_test, status):
    contact = ContactFactory(status="active" if status == "blocked" else "blocked")

    response = client_test.patch(_detail(contact.pk), {"status": status}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == status
    contact.refresh_from_db()
    assert contact.status == status


@pytest.mark.parametrize("status", ["erased", "deleted", ""])
def test_a_patch_may_not_set_any_other_status(client_test, ana, status):
    response = client_test.patch(_detail(ana.pk), {"status": status}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "status")
    ana.refresh_from_db()
    assert ana.status == "active"


def test_a_patch_to_another_contacts_phone_is_a_duplicate_and_changes_nothing(client_test, ana):
    bo = ContactFactory(first_name="Bo", mobile_phone="+46701112233")

    response = client_test.patch(
        _detail(bo.pk), {"first_name": "Bosse", "mobile_phone": "070-723 45 67"}, format="json"
    )

    assert_error(response, 409, "DUPLICATE_IDENTIFIER", "mobile_phone", STORED_PHONE)
    bo.refresh_from_db()
    assert (bo.first_name, bo.mobile_phone) == ("Bo", "+46701112233")


def test_a_patch_to_another_contacts_email_in_another_case_is_a_duplicate(client_test, ana):
    bo = ContactFactory(email="bo@example.com")

    response = client_test.patch(_detail(bo.pk), {"email": "ANA.SVENSSON@example.com"}, format="json")

    assert_error(response, 409, "DUPLICATE_IDENTIFIER", "email", "ANA.SVENSSON@example.com")
    bo.refresh_from_db()
    assert bo.email == "bo@example.com"


@pytest.mark.parametrize("field", ["member_number", "livemode", "id", "created_at", "nickname"])
def test_a_patch_of_an_unknown_or_read_only_field_is_refused(client_test, ana, field):
    response = client_test.patch(_detail(ana.pk), {field: "1"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", field)
    ana.refresh_from_db()
    assert ana.livemode is False


def test_a_patch_with_a_future_birth_date_is_refused(client_test, ana):
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)

    response = client_test.patch(_detail(ana.pk), {"birth_date": tomorrow.isoformat()}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "birth_date")


def test_a_patch_of_consents_changes_only_the_consent_sent(client_test, ana):
    ana.email_consent = True
    ana.save()

    response = client_test.patch(_detail(ana.pk), {"consents": {"sms": True}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["consents"] == {"email": True, "sms": True}


# --- the list ----------------------------------------------------------------------------------


def test_the_contact_list_is_cursor_paginated_newest_first(client_test):
    contacts = ContactFactory.create_batch(5)
    newest_first = [str(contact.pk) for contact in sorted(contacts, key=lambda c: c.created_at, reverse=True)]

    first_page = client_test.get(CONTACTS, {"page_size": 2})
    assert first_page.status_code == 200
    seen = [contact["id"] for contact in first_page.json()["results"]]
    next_url = first_page.json()["next"]
    while next_url:
        page = client_test.get(next_url)
        seen += [contact["id"] for contact in page.json()["results"]]
        next_url = page.json()["next"]

    assert len(first_page.json()["results"]) == 2
    assert seen == newest_first


def test_listing_contacts_takes_as_many_queries_for_thirty_contacts_as_for_three(client_test):
    def list_queries():
        client_test.get(CONTACTS)  # the key's last-used write happens once, on the first request
        with CaptureQueriesContext(connection) as queries:
            response = client_test.get(CONTACTS)
        assert response.status_code == 200
        return len(queries), len(response.json()["results"])

    for contact in ContactFactory.create_batch(3):
        ContactExternalIdFactory(contact=contact)
    few_queries, few = list_queries()
    for contact in ContactFactory.create_batch(27):
        ContactExternalIdFactory(contact=contact)
    many_queries, many = list_queries()

    assert (few, many) == (3, 30)
    assert many_queries == few_queries


# --- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("owner_live", "reader_live"), [(False, True), (True, False)])
def test_a_contact_of_one_mode_is_invisible_to_a_key_of_the_other(make_client, owner_live, reader_live):
    contact = ContactFactory(livemode=owner_live, first_name="Ana", mobile_phone=STORED_PHONE)
    ContactExternalIdFactory(contact=contact, source="pos", value="CARD-5512")
    owner = make_client(livemode=owner_live)
    reader = make_client(livemode=reader_live)

    assert owner.get(_detail(contact.pk)).status_code == 200
    assert_error(reader.get(_detail(contact.pk)), 404, "NOT_FOUND", "id", str(contact.pk))
    for match_key, match_key_type in [
        (contact.member_number, "member_number"),
        ("070 723 45 67", "mobile_phone"),
        (contact.email, "email"),
        ("CARD-5512", "external_id"),
    ]:
        assert _identified_ids(_identify(owner, match_key, match_key_type)) == [str(contact.pk)]
        assert_error(
            _identify(reader, match_key, match_key_type),
            404,
            "NOT_FOUND",
            "match_key",
            match_key,
            "match_key_type",
            match_key_type,
        )
    assert [entry["id"] for entry in owner.get(CONTACTS).json()["results"]] == [str(contact.pk)]
    assert reader.get(CONTACTS).json()["results"] == []
    response = reader.patch(_detail(contact.pk), {"first_name": "Hacked"}, format="json")
    assert_error(response, 404, "NOT_FOUND", "id", str(contact.pk))
    contact.refresh_from_db()
    assert contact.first_name == "Ana"
    assert contact.livemode is owner_live


def test_the_same_phone_can_be_registered_once_in_each_mode(client_test, client_live):
    payload = {"mobile_phone": "070 723 45 67", "email": "ana@example.com", "external_ids": [{"id": "CARD-1"}]}

    test_response = client_test.post(CONTACTS, payload, format="json")
    live_response = client_live.post(CONTACTS, payload, format="json")
    test_again = client_test.post(CONTACTS, {"mobile_phone": "0707234567"}, format="json")
    live_again = client_live.post(CONTACTS, {"mobile_phone": "0707234567"}, format="json")

    assert (test_response.status_code, live_response.status_code) == (201, 201)
    assert (test_response.json()["livemode"], live_response.json()["livemode"]) == (False, True)
    assert test_response.json()["id"] != live_response.json()["id"]
    assert_error(test_again, 409, "DUPLICATE_IDENTIFIER", "mobile_phone", STORED_PHONE)
    assert_error(live_again, 409, "DUPLICATE_IDENTIFIER", "mobile_phone", STORED_PHONE)
    assert Contact.objects.filter(mobile_phone=STORED_PHONE).count() == 2


def test_source_with_a_match_key_type_other_than_external_id_is_refused(client_test):
    response = client_test.get(
        "/api/v1/contacts", {"match_key": "a@example.com", "match_key_type": "email", "source": "pos"}
    )
    assert response.status_code == 400
    assert response.json()["parameters"] == ["source"]


def test_an_erased_contact_cannot_be_patched_back_to_life(client_test):
    from loyalty.models import Contact
    from loyalty.tests.factories import ContactFactory

    contact = ContactFactory(livemode=False, status=Contact.Status.ERASED)
    response = client_test.patch(f"/api/v1/contacts/{contact.pk}", {"status": "active"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "CONTACT_NOT_ACTIVE"
    contact.refresh_from_db()
    assert contact.status == "erased"
