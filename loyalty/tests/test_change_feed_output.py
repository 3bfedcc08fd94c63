"""The change feed's hand-written output: byte for byte what ContactSerializer and DRF's
JSONRenderer made of the same contacts, and the same few queries for a page of any size.

Every test commits for real (transaction=True): the feed only shows changes of transactions
that have ended (see test_change_feed.py).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime

import pytest
from django.db import connection
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext
from rest_framework.fields import DateTimeField
from rest_framework.renderers import JSONRenderer

from loyalty.api.serializers import ContactSerializer
from loyalty.models import Contact, ContactChange, ContactExternalId
from loyalty.selectors import changes as change_selectors
from loyalty.services import contact_bulk_upsert, contact_create, contact_erase, contact_update

pytestmark = pytest.mark.django_db(transaction=True)

CHANGES = "/api/v1/contacts/changes"


def wait_until_visible(client):
    """Poll until the feed shows every change written so far (other sessions may hold it back)."""
    expected = ContactChange.objects.filter(livemode=False).count()
    deadline = time.monotonic() + 60
    while True:
        response = client.get(CHANGES, {"page_size": 1000})
        assert response.status_code == 200, response.content
        if len(response.json()["results"]) >= expected:
            return response
        assert time.monotonic() < deadline, "the feed did not catch up"
        time.sleep(0.05)


def page_as_the_serializer_made_it(next_cursor: str) -> bytes:
    """What the feed answered before it wrote its JSON by hand: ContactSerializer per contact,
    DRF's DateTimeField for changed_at, DRF's JSONRenderer for the page."""
    results = []
    for change in ContactChange.objects.filter(livemode=False).order_by("xid", "id"):
        contact = (
            Contact.objects.prefetch_related(Prefetch("external_ids", ContactExternalId.objects.order_by("id")))
            .exclude(status=Contact.Status.ERASED)
            .filter(pk=change.contact_id)
            .first()
        )
        if contact is None or change.kind == ContactChange.Kind.ERASED:
            representation = {"id": str(change.contact_id)}
        else:
            representation = ContactSerializer(contact).data
        results.append(
            {
                "change_id": change.id,
                "kind": change.kind,
                "contact": representation,
                "changed_at": DateTimeField().to_representation(change.created_at),
            }
        )
    return JSONRenderer().render({"results": results, "next_cursor": next_cursor, "has_more": False})


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York"])
def test_a_page_is_byte_for_byte_what_the_contact_serializer_and_json_renderer_made(client_test, settings, time_zone):
    settings.TIME_ZONE = time_zone
    full = contact_create(
        livemode=False,
        first_name="Åsa",
        last_name='Ström "the second" \u2028 \\ 名前',
        email="Asa@Example.COM",
        mobile_phone="070 723 45 67",
        birth_date=date(1990, 2, 3),
        external_ids=[{"source": "pos", "id": "P-1"}, {"source": "", "id": "X-9"}],
        consents={"email": True},
        attributes={"shoe": 38, "ratio": 1e-07, "big": 12345678901234567890, "tags": ["a", 2.5], "none": {"k": None}},
    )
    bare = contact_create(livemode=False)
    contact_update(contact=bare, first_name="Bo", external_ids=[{"source": "web", "id": "W-1"}])
    on_the_second = contact_create(livemode=False, first_name="Round")
    Contact.objects.filter(pk=on_the_second.pk).update(created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    erased = contact_create(livemode=False, email="gone@example.com")
    contact_erase(contact=erased, erased_by="test")
    contact_update(contact=full, attributes={"shoe": 39})

    response = wait_until_visible(client_test)

    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert [item["kind"] for item in body["results"]] == [
        "created",
        "created",
        "identifiers_changed",
        "created",
        "created",
        "erased",
        "updated",
    ]
    assert response.content == page_as_the_serializer_made_it(body["next_cursor"])


def test_a_client_asking_for_indented_json_gets_the_same_document_indented(client_test):
    contact_create(livemode=False, first_name="Ana", external_ids=[{"source": "pos", "id": "P-1"}])
    compact = wait_until_visible(client_test)

    indented = client_test.get(CHANGES, {"page_size": 1000}, HTTP_ACCEPT="application/json; indent=2")

    assert indented.status_code == 200
    assert b'\n  "results": [' in indented.content
    assert json.loads(indented.content) == compact.json()


def test_the_one_statement_page_and_the_portable_page_are_the_same(client_test):
    ana = contact_create(livemode=False, first_name="Ana", external_ids=[{"source": "a", "id": "1"}])
    contact_update(contact=ana, external_ids=[{"source": "b", "id": "2"}, {"source": "c", "id": "3"}])
    contact_create(livemode=False, first_name="Bo", attributes={"x": [1, {"y": 2}]})
    contact_erase(contact=contact_create(livemode=False, email="gone@example.com"), erased_by="test")
    wait_until_visible(client_test)
    first = ContactChange.objects.filter(livemode=False).order_by("xid", "id").first()

    for after, limit in [((0, 0), 1000), ((0, 0), 2), ((first.xid, first.id), 1000)]:
        in_one_statement = change_selectors._page_in_one_statement(
            livemode=False, after=after, below_xid=2**62, limit=limit
        )
        portable = change_selectors._page_portable(livemode=False, after=after, limit=limit)
        assert in_one_statement == portable
    ana_rows = [contact for row, contact in in_one_statement if contact is not None and contact.id == str(ana.pk)]
    assert ana_rows[0].external_ids == (("a", "1"), ("b", "2"), ("c", "3"))


def test_a_page_of_a_thousand_contacts_takes_no_more_queries_than_a_page_of_one(
    client_test, django_assert_max_num_queries
):
    contact_create(livemode=False, first_name="One", external_ids=[{"source": "pos", "id": "P-0"}])
    wait_until_visible(client_test)
    with CaptureQueriesContext(connection) as one_contact:
        response = client_test.get(CHANGES, {"page_size": 1000})
    one_contact_queries = len(one_contact.captured_queries)  # read now: the next request clears the log
    assert len(response.json()["results"]) == 1
    rows = [
        (index, {"match_key": f"P-{index}", "match_key_type": "external_id", "email": f"c{index}@example.com"})
        for index in range(1, 1000)
    ]
    assert {result.status for result in contact_bulk_upsert(livemode=False, rows=rows)} == {"created"}
    wait_until_visible(client_test)

    with django_assert_max_num_queries(one_contact_queries):
        response = client_test.get(CHANGES, {"page_size": 1000})

    assert len(response.json()["results"]) == 1000
