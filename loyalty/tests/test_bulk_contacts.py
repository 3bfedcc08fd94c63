"""`POST /contacts/bulk`: upsert by match key, one result per row, rows independent."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from core.validators import luhn_check_digit
from loyalty.models import Contact, ContactChange, ContactExternalId
from loyalty.services import contact_bulk_upsert
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db

BULK = "/api/v1/contacts/bulk"


def post_bulk(client, rows, **headers):
    return client.post(BULK, {"contacts": rows}, format="json", **headers)


def test_rows_that_match_nobody_are_created_with_the_match_key_as_identifier(client_test):
    response = post_bulk(
        client_test,
        [
            {"match_key": "C-1", "match_key_type": "external_id", "source": "pos", "first_name": "Ana"},
            {"match_key": "bo@example.com", "match_key_type": "email", "first_name": "Bo"},
            {"match_key": "070 723 45 67", "match_key_type": "mobile_phone"},
        ],
    )

    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert [(result["index"], result["status"]) for result in results] == [
        (0, "created"),
        (1, "created"),
        (2, "created"),
    ]
    ana = Contact.objects.get(pk=results[0]["contact_id"])
    assert ana.first_name == "Ana"
    assert list(ana.external_ids.values_list("source", "value")) == [("pos", "C-1")]
    assert Contact.objects.get(pk=results[1]["contact_id"]).email == "bo@example.com"
    assert Contact.objects.get(pk=results[2]["contact_id"]).mobile_phone == "+46707234567"
    assert ContactChange.objects.filter(kind="created").count() == 3


def test_rows_that_match_a_contact_update_it(client_test):
    contact = ContactFactory(livemode=False, email="ana@example.com", first_name="Ana")
    ContactExternalIdFactory(contact=contact, source="web", value="W-9")

    response = post_bulk(
        client_test,
        [
            {"match_key": "ANA@example.com", "match_key_type": "email", "last_name": "Berg"},
            {"match_key": "W-9", "match_key_type": "external_id", "attributes": {"shoe_size": 38}},
            {"match_key": contact.member_number, "match_key_type": "member_number", "consents": {"sms": True}},
        ],
    )

    results = response.json()["results"]
    assert [result["status"] for result in results] == ["updated"] * 3
    assert {result["contact_id"] for result in results} == {str(contact.pk)}
    contact.refresh_from_db()
    assert (contact.last_name, contact.attributes, contact.sms_consent) == ("Berg", {"shoe_size": 38}, True)
    assert Contact.objects.count() == 1


def test_one_bad_row_never_fails_the_others(client_test):
    ContactFactory(livemode=False, email="taken@example.com")

    response = post_bulk(
        client_test,
        [
            {"match_key": "A-1", "match_key_type": "external_id", "first_name": "Ok"},
            {"match_key": "A-2", "match_key_type": "external_id", "mobile_phone": "not a phone"},
            {"match_key": "A-3", "match_key_type": "external_id", "birth_date": "someday"},
            {"match_key": "A-4", "match_key_type": "external_id", "email": "taken@example.com"},
            {"match_key": "A-5", "match_key_type": "external_id", "first_name": "Also ok"},
        ],
    )

    assert response.status_code == 200
    results = response.json()["results"]
    assert [result["status"] for result in results] == ["created", "error", "error", "error", "created"]
    assert results[1]["error"]["code"] == "VALIDATION_ERROR" and "mobile_phone" in results[1]["error"]["parameters"]
    assert results[2]["error"]["status"] == 400 and "birth_date" in results[2]["error"]["parameters"]
    assert results[3]["error"]["status"] == 409 and results[3]["error"]["code"] == "DUPLICATE_IDENTIFIER"
    assert set(ContactExternalId.objects.values_list("value", flat=True)) == {"A-1", "A-5"}


def test_a_row_whose_match_key_and_email_point_at_different_contacts_is_a_409_conflict(client_test):
    ana = ContactFactory(livemode=False, email="ana@example.com")
    bo = ContactFactory(livemode=False, email="bo@example.com")
    ContactExternalIdFactory(contact=ana, source="pos", value="P-1")

    response = post_bulk(
        client_test,
        [{"match_key": "P-1", "match_key_type": "external_id", "source": "pos", "email": "bo@example.com"}],
    )

    (result,) = response.json()["results"]
    assert result["status"] == "error"
    assert result["error"]["status"] == 409
    assert result["error"]["code"] == "DUPLICATE_IDENTIFIER"
    assert "email" in result["error"]["parameters"]
    ana.refresh_from_db()
    bo.refresh_from_db()
    assert (ana.email, bo.email) == ("ana@example.com", "bo@example.com")


def test_rows_of_one_request_see_each_others_writes_in_order(client_test):
    response = post_bulk(
        client_test,
        [
            {"match_key": "S-1", "match_key_type": "external_id", "first_name": "First"},
            {"match_key": "S-1", "match_key_type": "external_id", "last_name": "Second"},
            {"match_key": "new@example.com", "match_key_type": "email"},
            {"match_key": "S-2", "match_key_type": "external_id", "email": "new@example.com"},
        ],
    )

    results = response.json()["results"]
    assert [result["status"] for result in results] == ["created", "updated", "created", "error"]
    assert results[0]["contact_id"] == results[1]["contact_id"]
    assert results[3]["error"]["code"] == "DUPLICATE_IDENTIFIER"
    contact = Contact.objects.get(pk=results[0]["contact_id"])
    assert (contact.first_name, contact.last_name) == ("First", "Second")


def test_a_member_number_that_matches_nobody_is_not_found_and_not_created(client_test):
    member_number = "90000000001" + luhn_check_digit("90000000001")

    response = post_bulk(client_test, [{"match_key": member_number, "match_key_type": "member_number"}])

    (result,) = response.json()["results"]
    assert (result["status"], result["error"]["status"], result["error"]["code"]) == ("error", 404, "NOT_FOUND")
    assert Contact.objects.count() == 0


def test_an_external_id_without_source_used_by_two_contacts_is_ambiguous(client_test):
    ContactExternalIdFactory(contact=ContactFactory(livemode=False), source="pos", value="X")
    ContactExternalIdFactory(contact=ContactFactory(livemode=False), source="web", value="X")

    response = post_bulk(client_test, [{"match_key": "X", "match_key_type": "external_id", "first_name": "Z"}])

    (result,) = response.json()["results"]
    assert (result["error"]["status"], result["error"]["code"]) == (409, "AMBIGUOUS_MATCH_KEY")


def test_more_than_1000_rows_are_refused_naming_contacts(client_test):
    rows = [{"match_key": f"E{n}", "match_key_type": "external_id"} for n in range(1001)]

    response = post_bulk(client_test, rows)

    body = response.json()
    assert response.status_code == 400
    assert body["error"] == "LIMIT_EXCEEDED"
    assert "contacts" in body["parameters"]
    assert Contact.objects.count() == 0


def test_a_body_without_contacts_is_a_validation_error(client_test):
    response = client_test.post(BULK, {"rows": []}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"


def test_a_repeat_with_the_same_idempotency_key_replays_the_first_answer(client_test):
    rows = [{"match_key": "I-1", "match_key_type": "external_id", "first_name": "Ana"}]

    first = post_bulk(client_test, rows, HTTP_IDEMPOTENCY_KEY="bulk-1")
    second = post_bulk(client_test, rows, HTTP_IDEMPOTENCY_KEY="bulk-1")
    other = post_bulk(client_test, [*rows, *rows], HTTP_IDEMPOTENCY_KEY="bulk-1")

    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["error"] == "IDEMPOTENCY_MISMATCH"
    assert Contact.objects.count() == 1


def test_a_retry_without_idempotency_key_updates_what_the_first_run_created(client_test):
    rows = [{"match_key": f"R-{n}", "match_key_type": "external_id", "first_name": f"N{n}"} for n in range(3)]

    first = post_bulk(client_test, rows).json()["results"]
    second = post_bulk(client_test, rows).json()["results"]

    assert [result["status"] for result in second] == ["updated"] * 3
    assert [result["contact_id"] for result in second] == [result["contact_id"] for result in first]


def test_bulk_writes_are_invisible_to_the_other_mode(client_test, client_live):
    post_bulk(client_test, [{"match_key": "M-1", "match_key_type": "external_id"}])

    (result,) = post_bulk(client_live, [{"match_key": "M-1", "match_key_type": "external_id"}]).json()["results"]

    assert result["status"] == "created"
    assert sorted(Contact.objects.values_list("livemode", flat=True)) == [False, True]


def test_new_contacts_announce_their_identifiers_to_the_hooks(client_test, django_capture_on_commit_callbacks):
    from loyalty.services import contacts as contact_services

    announced = []
    contact_services.IDENTIFIERS_ADDED_HOOKS.append(announced.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            results = post_bulk(client_test, [{"match_key": "H-1", "match_key_type": "external_id"}]).json()
    finally:
        contact_services.IDENTIFIERS_ADDED_HOOKS.remove(announced.append)

    assert [str(contact_id) for contact_id in announced] == [results["results"][0]["contact_id"]]


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_requests_with_the_same_new_keys_create_each_contact_once():
    thread_count = 4
    rows = [{"match_key": f"K-{n}", "match_key_type": "external_id", "first_name": "Same"} for n in range(50)]
    barrier = threading.Barrier(thread_count)
    outcomes, failures = [None] * thread_count, []

    def upsert(index):
        try:
            barrier.wait(timeout=30)
            outcomes[index] = contact_bulk_upsert(livemode=False, rows=list(enumerate(rows)))
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upsert, args=(index,)) for index in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures
    assert Contact.objects.count() == 50
    for outcome in outcomes:
        assert all(result.status in ("created", "updated") for result in outcome), [
            result.error for result in outcome if result.error
        ]
    assert sum(result.status == "created" for outcome in outcomes for result in outcome) == 50
