"""The bulk write's batch paths: rows that collide with no other row and no other contact are
created or updated together, and the outcome is still the one of applying the rows one by one,
in order (`_bulk_row_upsert`, the one-row path, is the reference)."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import OutboxEvent
from core.validators import luhn_check_digit
from loyalty.models import Contact, ContactChange
from loyalty.services import contact_bulk_upsert
from loyalty.services import contacts as contact_services
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db

BULK = "/api/v1/contacts/bulk"


def contact_state(contact_id):
    contact = Contact.objects.get(pk=contact_id)
    return (
        contact.first_name,
        contact.last_name,
        contact.email,
        contact.mobile_phone,
        contact.birth_date,
        contact.email_consent,
        contact.sms_consent,
        contact.attributes,
        sorted(contact.external_ids.values_list("source", "value")),
    )


def comparable(results):
    """Results as comparable across two runs (a created contact has another id each time)."""
    return [
        (
            result.index,
            result.status,
            result.error.code if result.error else None,
            sorted(parameter["name"] for parameter in result.error.parameters) if result.error else None,
            contact_state(result.contact_id) if result.contact_id else None,
        )
        for result in results
    ]


def everyone():
    return sorted((contact_state(contact_id) for contact_id in Contact.objects.values_list("pk", flat=True)), key=repr)


@pytest.fixture
def one_row_path_calls(monkeypatch):
    calls = []
    original = contact_services._bulk_row_upsert

    def spy(*, livemode, index, row):
        calls.append(index)
        return original(livemode=livemode, index=index, row=row)

    monkeypatch.setattr(contact_services, "_bulk_row_upsert", spy)
    return calls


def test_a_mixed_batch_gives_what_applying_its_rows_one_by_one_gives(one_row_path_calls):
    e1 = ContactFactory(email="e1@example.com", first_name="Old")
    ContactExternalIdFactory(contact=e1, source="pos", value="E-1")
    e2 = ContactFactory(email=None, mobile_phone="+46701111111")
    ContactExternalIdFactory(contact=e2, source="pos", value="E-2")
    ContactFactory(email="e3@example.com")
    ContactFactory(email="e4@example.com")
    ContactFactory(email="e5@example.com", first_name="Same")
    e6 = ContactFactory(email="e6@example.com")
    ContactExternalIdFactory(contact=e6, source="pos", value="E-6")
    nobody = "80000000001" + luhn_check_digit("80000000001")  # factories number from 9…
    rows = [
        # 0: new, collides with nothing → created in the batch
        {"match_key": "N-1", "match_key_type": "external_id", "source": "pos", "email": "n1@example.com"},
        # 1 and 9: the same contact twice → one by one, in order
        {"match_key": "E-1", "match_key_type": "external_id", "source": "pos", "last_name": "Berg"},
        # 2: invalid phone → its own error
        {"match_key": "N-2", "match_key_type": "external_id", "mobile_phone": "not a phone"},
        # 3: takes e1's email → DUPLICATE_IDENTIFIER (and shares e2 with row 11)
        {"match_key": "E-2", "match_key_type": "external_id", "email": "e1@example.com"},
        # 4 and 5: the same new key twice → created, then updated
        {"match_key": "N-3", "match_key_type": "external_id", "first_name": "First"},
        {"match_key": "N-3", "match_key_type": "external_id", "last_name": "Second"},
        # 6 gives up e3@ and 7 takes it after → both succeed, in order
        {"match_key": "e3@example.com", "match_key_type": "email", "email": "e3new@example.com"},
        {"match_key": "N-4", "match_key_type": "external_id", "email": "e3@example.com"},
        # 8: a new contact with a taken email → DUPLICATE_IDENTIFIER
        {"match_key": "N-5", "match_key_type": "external_id", "email": "e4@example.com"},
        {"match_key": "E1@EXAMPLE.COM", "match_key_type": "email", "attributes": {"vip": True}},
        # 10: a member number nobody has → NOT_FOUND
        {"match_key": nobody, "match_key_type": "member_number"},
        {"match_key": "+46701111111", "match_key_type": "mobile_phone", "consents": {"sms": True}},
        # 12: an invalid change of an existing contact → its own error
        {"match_key": "e4@example.com", "match_key_type": "email", "birth_date": date.today() + timedelta(days=2)},
        # 13: changes nothing → updated in the batch; 14: a new name and external id, in the batch
        {"match_key": "e5@example.com", "match_key_type": "email", "first_name": "Same"},
        {
            "match_key": "E-6",
            "match_key_type": "external_id",
            "source": "pos",
            "first_name": "Six",
            "external_ids": [{"source": "web", "id": "W-6"}],
        },
        # 15: new, with everything → created in the batch
        {
            "match_key": "N-6",
            "match_key_type": "external_id",
            "consents": {"email": True},
            "attributes": {"a": 1},
            "birth_date": date(1990, 1, 2),
            "mobile_phone": "070 723 45 67",
        },
    ]

    with transaction.atomic():
        batch = contact_bulk_upsert(livemode=False, rows=list(enumerate(rows)))
        in_batch, everyone_after_batch = comparable(batch), everyone()
        transaction.set_rollback(True)
    went_one_by_one = sorted(one_row_path_calls)
    one_by_one = [contact_services._bulk_row_upsert(livemode=False, index=i, row=row) for i, row in enumerate(rows)]

    assert in_batch == comparable(one_by_one)
    assert everyone_after_batch == everyone()
    assert went_one_by_one == [1, 3, 4, 5, 6, 7, 8, 9, 11]
    assert [(result.status, result.error and result.error.code) for result in batch] == [
        ("created", None),
        ("updated", None),
        ("error", "VALIDATION_ERROR"),
        ("error", "DUPLICATE_IDENTIFIER"),
        ("created", None),
        ("updated", None),
        ("updated", None),
        ("created", None),
        ("error", "DUPLICATE_IDENTIFIER"),
        ("updated", None),
        ("error", "NOT_FOUND"),
        ("updated", None),
        ("error", "VALIDATION_ERROR"),
        ("updated", None),
        ("updated", None),
        ("created", None),
    ]


def test_batch_updates_write_the_feed_the_events_and_announce_the_identifiers_once(
    django_capture_on_commit_callbacks,
):
    ana, bo, cy = (ContactFactory(email=f"{name}@example.com", first_name=name) for name in ("ana", "bo", "cy"))
    batches, singles = [], []
    contact_services.IDENTIFIERS_ADDED_BATCH_HOOKS.append(batches.append)
    contact_services.IDENTIFIERS_ADDED_HOOKS.append(singles.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            results = contact_bulk_upsert(
                livemode=False,
                rows=[
                    (0, {"match_key": "ana@example.com", "match_key_type": "email", "first_name": "Anna"}),
                    (1, {"match_key": "bo@example.com", "match_key_type": "email", "first_name": "bo"}),
                    (
                        2,
                        {
                            "match_key": "cy@example.com",
                            "match_key_type": "email",
                            "external_ids": [{"source": "pos", "id": "C-1"}],
                        },
                    ),
                ],
            )
    finally:
        contact_services.IDENTIFIERS_ADDED_BATCH_HOOKS.remove(batches.append)
        contact_services.IDENTIFIERS_ADDED_HOOKS.remove(singles.append)

    assert [result.status for result in results] == ["updated"] * 3
    assert [sorted(batch) for batch in batches] == [sorted([ana.pk, bo.pk, cy.pk])]
    assert sorted(singles) == sorted([ana.pk, bo.pk, cy.pk])
    assert dict(ContactChange.objects.values_list("contact_id", "kind")) == {
        ana.pk: "updated",
        bo.pk: "updated",
        cy.pk: "identifiers_changed",
    }
    events = {event.payload["id"]: event.payload for event in OutboxEvent.objects.filter(event_type="contact.updated")}
    assert set(events) == {str(ana.pk), str(cy.pk)}  # bo's row changed nothing
    assert events[str(ana.pk)]["changed_fields"] == ["first_name"]
    assert (events[str(cy.pk)]["changed_fields"], events[str(cy.pk)]["external_ids"]) == (
        ["external_ids"],
        [{"source": "pos", "id": "C-1"}],
    )
    ana.refresh_from_db()
    assert ana.first_name == "Anna" and ana.updated_at > ana.created_at


def test_a_contact_changed_by_someone_else_after_it_was_read_is_updated_on_its_fresh_state(
    monkeypatch, one_row_path_calls
):
    ana = ContactFactory(email="ana@example.com", first_name="Ana", last_name="Lind")
    original = contact_services._contacts_update_batch

    def concurrent_writer_first(**kwargs):
        Contact.objects.filter(pk=ana.pk).update(first_name="Concurrent", updated_at=timezone.now())
        return original(**kwargs)

    monkeypatch.setattr(contact_services, "_contacts_update_batch", concurrent_writer_first)

    (result,) = contact_bulk_upsert(
        livemode=False, rows=[(0, {"match_key": "ana@example.com", "match_key_type": "email", "last_name": "Berg"})]
    )

    assert result.status == "updated"
    assert one_row_path_calls == [0]
    ana.refresh_from_db()
    assert (ana.first_name, ana.last_name) == ("Concurrent", "Berg")


def test_a_batch_update_that_fails_after_writing_leaves_no_change_no_feed_row_and_no_event(monkeypatch):
    ana = ContactFactory(email="ana@example.com", first_name="Ana")
    monkeypatch.setattr(contact_services, "_announce_identifiers_of", lambda contact_ids: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        contact_bulk_upsert(
            livemode=False, rows=[(0, {"match_key": "ana@example.com", "match_key_type": "email", "first_name": "X"})]
        )

    assert Contact.objects.get(pk=ana.pk).first_name == "Ana"
    assert not ContactChange.objects.exists()
    assert not OutboxEvent.objects.exists()


def bulk_rows(start, count):
    return [
        {
            "match_key": f"Q-{n}",
            "match_key_type": "external_id",
            "source": "pos",
            "first_name": f"N{n}",
            "email": f"q{n}@example.com",
            "mobile_phone": f"+4670{n:07d}",
            "consents": {"email": True},
            "attributes": {"n": n},
        }
        for n in range(start, start + count)
    ]


def queries_of(client, rows):
    with CaptureQueriesContext(connection) as queries:
        response = client.post(BULK, {"contacts": rows}, format="json")
    count = len(queries.captured_queries)  # read now: the next request clears the log
    assert response.status_code == 200, response.json()
    return count, {result["status"] for result in response.json()["results"]}


def test_a_bulk_write_of_a_thousand_rows_takes_no_more_queries_than_one_of_ten(
    client_test, django_assert_max_num_queries
):
    queries_of(client_test, bulk_rows(5000, 1))  # the key's first use is recorded once
    ten_created, statuses = queries_of(client_test, bulk_rows(0, 10))
    assert statuses == {"created"}
    with django_assert_max_num_queries(ten_created):
        client_test.post(BULK, {"contacts": bulk_rows(10, 1000 - 10)}, format="json")
    ten_updated, statuses = queries_of(client_test, [{**row, "first_name": "X"} for row in bulk_rows(0, 10)])
    assert statuses == {"updated"}

    with django_assert_max_num_queries(ten_updated):
        response = client_test.post(
            BULK, {"contacts": [{**row, "last_name": "Y"} for row in bulk_rows(0, 1000)]}, format="json"
        )

    assert {result["status"] for result in response.json()["results"]} == {"updated"}
    assert Contact.objects.filter(last_name="Y").count() == 1000


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_updates_of_the_same_contacts_lose_no_change():
    thread_count = 4
    contacts = [ContactFactory(email=f"same{n}@example.com") for n in range(40)]
    barrier = threading.Barrier(thread_count)
    failures = []

    def upsert(writer):
        try:
            rows = [
                (n, {"match_key": contact.email, "match_key_type": "email", "attributes": {f"w{writer}": True}})
                for n, contact in enumerate(contacts)
            ]
            barrier.wait(timeout=30)
            results = contact_bulk_upsert(livemode=False, rows=rows)
            assert {result.status for result in results} == {"updated"}
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upsert, args=(writer,)) for writer in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures
    for contact in contacts:
        contact.refresh_from_db()
        assert contact.attributes == {f"w{writer}": True for writer in range(thread_count)}
    assert ContactChange.objects.count() == thread_count * len(contacts)
