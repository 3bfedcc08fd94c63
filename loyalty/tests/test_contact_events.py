"""contact.created / contact.updated in the outbox: written by every service that creates or
changes a contact, in the same transaction as the change, with a small payload."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import services as core_services
from core.models import OutboxEvent
from loyalty import services
from loyalty.models import Contact, ContactChange, ContactTier, Tier
from loyalty.services import contacts as contact_services
from loyalty.services import erasure as erasure_services
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts"
PAYLOAD_FIELDS = {"id", "member_number", "status", "email", "mobile_phone", "external_ids", "tier"}


def events(event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(event_type=event_type).order_by("id"))


# --- contact.created ----------------------------------------------------------------------------


def test_registering_a_contact_announces_it_with_its_identifiers_and_no_other_personal_data():
    contact = services.contact_create(
        livemode=False,
        first_name="Ana",
        last_name="Lind",
        email="Ana@Example.COM",
        mobile_phone="070 723 45 67",
        birth_date=timezone.localdate() - timedelta(days=9000),
        external_ids=[{"source": "pos", "id": "C-1"}],
        attributes={"shoe_size": 38},
    )

    (event,) = events("contact.created")
    assert event.livemode is False
    assert event.payload == {
        "id": str(contact.pk),
        "member_number": contact.member_number,
        "status": "active",
        "email": "Ana@example.com",
        "mobile_phone": "+46707234567",
        "external_ids": [{"source": "pos", "id": "C-1"}],
        "tier": None,
    }


def test_a_contact_registered_over_the_api_is_announced_once_with_the_answers_id_and_member_number(client_test):
    response = client_test.post(CONTACTS, {"first_name": "Bo", "email": "bo@example.com"}, format="json")

    assert response.status_code == 201, response.json()
    (event,) = events("contact.created")
    assert (event.payload["id"], event.payload["member_number"]) == (
        response.json()["id"],
        response.json()["member_number"],
    )
    assert not events("contact.updated")


def test_a_contact_added_in_the_admin_is_announced(admin_client):
    response = admin_client.post(
        "/admin/loyalty/contact/add/",
        {
            "first_name": "Ana",
            "mobile_phone": "070 723 45 67",
            "status": "active",
            "attributes": "{}",
            "external_ids-TOTAL_FORMS": "0",
            "external_ids-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    (event,) = events("contact.created")
    assert event.payload["id"] == str(Contact.objects.get().pk)
    assert event.payload["mobile_phone"] == "+46707234567"


# --- contact.updated ----------------------------------------------------------------------------


def test_a_patch_announces_the_changed_fields_and_the_values_after_the_change(client_test):
    contact = ContactFactory(first_name="Ana", email="ana@example.com")
    gold = Tier.objects.create(livemode=False, name="Gold", rank=1, threshold=100)
    ContactTier.objects.create(contact=contact, tier=gold)

    response = client_test.patch(
        f"{CONTACTS}/{contact.pk}",
        {"first_name": "Anna", "email": "anna@example.com", "consents": {"sms": True}},
        format="json",
    )

    assert response.status_code == 200, response.json()
    (event,) = events("contact.updated")
    assert set(event.payload) == PAYLOAD_FIELDS | {"changed_fields"}
    assert event.payload["changed_fields"] == ["consents", "email", "first_name"]
    assert (event.payload["email"], event.payload["tier"]) == ("anna@example.com", "Gold")
    assert event.payload["member_number"] == contact.member_number


def test_an_update_that_changes_nothing_announces_nothing():
    contact = ContactFactory(first_name="Ana")

    services.contact_update(contact=contact, first_name="Ana", attributes={})

    assert not events("contact.updated")
    assert ContactChange.objects.filter(contact_id=contact.pk).exists()  # the feed still records the write


def test_a_new_external_id_is_announced_with_all_of_the_contacts_external_ids():
    contact = ContactFactory()
    ContactExternalIdFactory(contact=contact, source="pos", value="C-1")

    services.contact_update(contact=contact, external_ids=[{"source": "web", "id": "W-1"}])

    (event,) = events("contact.updated")
    assert event.payload["changed_fields"] == ["external_ids"]
    assert event.payload["external_ids"] == [{"source": "pos", "id": "C-1"}, {"source": "web", "id": "W-1"}]


def test_blocking_a_contact_announces_its_new_status():
    contact = ContactFactory()

    services.contact_update(contact=contact, status=Contact.Status.BLOCKED)

    (event,) = events("contact.updated")
    assert (event.payload["status"], event.payload["changed_fields"]) == ("blocked", ["status"])


def test_a_change_in_the_admin_is_announced(admin_client):
    contact = ContactFactory(first_name="Ana", attributes={})
    data = {
        "first_name": "Anna",
        "last_name": contact.last_name,
        "email": contact.email,
        "mobile_phone": contact.mobile_phone,
        "birth_date": "",
        "status": "active",
        "attributes": "{}",
        "external_ids-TOTAL_FORMS": "0",
        "external_ids-INITIAL_FORMS": "0",
    }

    response = admin_client.post(f"/admin/loyalty/contact/{contact.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    (event,) = events("contact.updated")
    assert event.payload["changed_fields"] == ["first_name"]


def test_an_external_id_added_in_the_admin_goes_through_the_service(admin_client):
    contact = ContactFactory(attributes={})
    data = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "mobile_phone": contact.mobile_phone,
        "birth_date": "",
        "status": "active",
        "attributes": "{}",
        "external_ids-TOTAL_FORMS": "1",
        "external_ids-INITIAL_FORMS": "0",
        "external_ids-0-source": "pos",
        "external_ids-0-value": "CARD-1",
    }

    response = admin_client.post(f"/admin/loyalty/contact/{contact.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(contact.external_ids.values_list("livemode", "source", "value")) == [(False, "pos", "CARD-1")]
    (event,) = events("contact.updated")
    assert (event.payload["changed_fields"], event.payload["external_ids"]) == (
        ["external_ids"],
        [{"source": "pos", "id": "CARD-1"}],
    )
    # The change feed hears of it as of an API change (it used to be written straight to the table).
    assert ContactChange.objects.filter(contact_id=contact.pk, kind="identifiers_changed").exists()


# --- bulk write ---------------------------------------------------------------------------------


def test_a_bulk_write_of_1000_new_contacts_announces_each_with_one_insert_for_all_events():
    rows = [
        (index, {"match_key": f"K-{index}", "match_key_type": "external_id", "source": "pos"}) for index in range(1000)
    ]

    with CaptureQueriesContext(connection) as queries:
        results = services.contact_bulk_upsert(livemode=False, rows=rows)

    assert {result.status for result in results} == {"created"}
    created = events("contact.created")
    assert len(created) == 1000
    by_id = {event.payload["id"]: event.payload for event in created}
    first = Contact.objects.get(pk=results[0].contact_id)
    assert by_id[str(first.pk)]["member_number"] == first.member_number
    assert by_id[str(first.pk)]["external_ids"] == [{"source": "pos", "id": "K-0"}]
    outbox_inserts = [query for query in queries.captured_queries if 'INSERT INTO "core_outboxevent"' in query["sql"]]
    assert len(outbox_inserts) == 1
    assert len(queries.captured_queries) < 20  # the batch stays a handful of statements


def test_bulk_rows_that_update_contacts_announce_what_changed():
    contact = ContactFactory(email="ana@example.com", last_name="Lind")

    services.contact_bulk_upsert(
        livemode=False,
        rows=[
            (0, {"match_key": "ana@example.com", "match_key_type": "email", "last_name": "Berg"}),
            (1, {"match_key": "nobody@example.com", "match_key_type": "email"}),
        ],
    )

    (updated,) = events("contact.updated")
    assert (updated.payload["id"], updated.payload["changed_fields"]) == (str(contact.pk), ["last_name"])
    (created,) = events("contact.created")
    assert created.payload["email"] == "nobody@example.com"


def test_a_failed_bulk_row_announces_nothing():
    ContactFactory(email="taken@example.com")

    (result,) = services.contact_bulk_upsert(
        livemode=False,
        rows=[(0, {"match_key": "X-1", "match_key_type": "external_id", "email": "taken@example.com"})],
    )

    assert result.status == "error"
    assert not OutboxEvent.objects.exists()


def test_the_bulk_events_reach_outbox_listeners_like_single_ones(monkeypatch):
    heard = []
    monkeypatch.setitem(
        core_services.OUTBOX_LISTENERS, "contact.created", [lambda livemode, payload: heard.append(payload["id"])]
    )

    results = services.contact_bulk_upsert(
        livemode=False,
        rows=[(index, {"match_key": f"L-{index}", "match_key_type": "external_id"}) for index in range(3)],
    )

    assert sorted(heard) == sorted(str(result.contact_id) for result in results)


# --- the event and the change commit together ----------------------------------------------------


def test_a_registration_that_fails_after_its_event_was_written_leaves_neither_contact_nor_event():
    # `_announce_identifiers` runs after the outbox row, inside the same transaction.
    with (
        mock.patch.object(contact_services, "_announce_identifiers", side_effect=RuntimeError("after the event")),
        pytest.raises(RuntimeError),
    ):
        services.contact_create(livemode=False, email="ana@example.com")

    assert not Contact.objects.exists()
    assert not OutboxEvent.objects.exists()
    assert not ContactChange.objects.exists()


def test_an_update_that_fails_after_its_event_was_written_leaves_neither_change_nor_event():
    contact = ContactFactory(first_name="Ana")

    with (
        mock.patch.object(contact_services, "_announce_identifiers", side_effect=RuntimeError("after the event")),
        pytest.raises(RuntimeError),
    ):
        services.contact_update(contact=contact, first_name="Eve")

    assert Contact.objects.get(pk=contact.pk).first_name == "Ana"
    assert not OutboxEvent.objects.exists()


def test_a_bulk_batch_that_fails_after_its_events_were_written_leaves_no_contact_and_no_event():
    rows = [(index, {"match_key": f"F-{index}", "match_key_type": "external_id"}) for index in range(5)]

    with (
        mock.patch.object(contact_services, "_announce_identifiers_of", side_effect=RuntimeError("after the events")),
        pytest.raises(RuntimeError),
    ):
        services.contact_bulk_upsert(livemode=False, rows=rows)

    assert not Contact.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_an_erasure_that_fails_after_its_event_was_written_leaves_neither_erasure_nor_event():
    contact = ContactFactory(email="ana@example.com")

    with (
        mock.patch.object(
            erasure_services, "_contact_change_record_erased", side_effect=RuntimeError("after the event")
        ),
        pytest.raises(RuntimeError),
    ):
        services.contact_erase(contact=contact, erased_by="user:test")

    contact.refresh_from_db()
    assert (contact.status, contact.email) == ("active", "ana@example.com")
    assert not OutboxEvent.objects.filter(event_type="contact.erased").exists()


# --- personal data ------------------------------------------------------------------------------


def test_contact_events_are_purged_with_the_other_payloads_after_the_retention(settings):
    settings.PERSONAL_DATA_RETENTION_DAYS = 10
    old = services.contact_create(livemode=False, email="old@example.com")
    services.contact_update(contact=old, mobile_phone="070 723 45 67")
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(days=11))
    services.contact_create(livemode=False, email="new@example.com")

    purged = core_services.personal_data_purge()

    assert purged["outbox_events"] == 2
    assert [event.payload["email"] for event in OutboxEvent.objects.all()] == ["new@example.com"]
