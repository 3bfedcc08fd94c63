"""The contact change feed (`GET /contacts/changes`): commit order, resumable cursors, tombstones.

Every test commits for real (transaction=True): the feed only shows changes of transactions
that have ended, and a test's own open transaction would hold them all back. Other sessions on
the server can hold the feed back for a moment too, so readers poll until what they expect
arrives (and tests of "not yet" only assert absence).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from loyalty.models import Contact, ContactChange, Tier
from loyalty.selectors.changes import contact_changes_cursor
from loyalty.services import contact_changes_purge, contact_create, contact_update
from loyalty.services.ledger import Cause
from loyalty.services.tiers import tier_evaluate
from loyalty.services.wallets import points_earn

pytestmark = pytest.mark.django_db(transaction=True)

CHANGES = "/api/v1/contacts/changes"
CONTACTS = "/api/v1/contacts"
WAIT_SECONDS = 60


def read_page(client, cursor="", page_size=None):
    params = {"cursor": cursor}
    if page_size is not None:
        params["page_size"] = page_size
    response = client.get(CHANGES, params)
    assert response.status_code == 200, response.json()
    return response.json()


def read_until(client, cursor, is_complete, page_size=None):
    """Follow the feed from `cursor` until `is_complete(items)`; returns (items, cursor)."""
    items = []
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        page = read_page(client, cursor, page_size)
        assert page["next_cursor"]
        items += page["results"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            if is_complete(items):
                return items, cursor
            assert time.monotonic() < deadline, f"feed incomplete after {WAIT_SECONDS}s: {items}"
            time.sleep(0.05)


def contact_ids(items):
    return [item["contact"]["id"] for item in items]


def has_ids(*wanted):
    return lambda items: set(map(str, wanted)) <= set(contact_ids(items))


def test_primary_download_from_an_empty_cursor_gives_every_contact_as_get_shows_it(client_test):
    created = [client_test.post(CONTACTS, {"first_name": f"Ana {n}"}, format="json").json() for n in range(5)]

    items, _cursor = read_until(client_test, "", has_ids(*(contact["id"] for contact in created)))

    assert [item["kind"] for item in items] == ["created"] * 5
    assert contact_ids(items) == [contact["id"] for contact in created]
    for item in items:
        assert item["contact"] == client_test.get(f"{CONTACTS}/{item['contact']['id']}").json()
        assert item["change_id"] and item["changed_at"]


def test_each_kind_of_change_is_listed_in_commit_order(client_test):
    contact = client_test.post(CONTACTS, {"first_name": "Ana"}, format="json").json()
    client_test.patch(f"{CONTACTS}/{contact['id']}", {"first_name": "Anna"}, format="json")
    client_test.patch(f"{CONTACTS}/{contact['id']}", {"email": "anna@example.com"}, format="json")
    client_test.patch(f"{CONTACTS}/{contact['id']}", {"external_ids": [{"source": "pos", "id": "P1"}]}, format="json")
    Tier.objects.create(livemode=False, name="Silver", rank=1, threshold=100)
    stored = Contact.objects.get(pk=contact["id"])
    points_earn(contact=stored, points=150, cause=Cause("transaction", "t1", "t1"))
    tier_evaluate(contact=stored)

    items, _cursor = read_until(client_test, "", lambda items: len(items) >= 5)

    assert [item["kind"] for item in items] == [
        "created",
        "updated",
        "identifiers_changed",
        "identifiers_changed",
        "tier_changed",
    ]
    assert [item["change_id"] for item in items] == sorted(item["change_id"] for item in items)
    assert items[-1]["contact"]["external_ids"] == [{"source": "pos", "id": "P1"}]


def test_an_erasure_is_a_tombstone_carrying_only_the_id_and_hides_earlier_changes_data(client_test):
    contact = client_test.post(CONTACTS, {"first_name": "Ana", "email": "ana@example.com"}, format="json").json()
    assert client_test.delete(f"{CONTACTS}/{contact['id']}").status_code == 200

    items, _cursor = read_until(client_test, "", lambda items: "erased" in [item["kind"] for item in items])

    assert [item["kind"] for item in items] == ["created", "erased"]
    assert [item["contact"] for item in items] == [{"id": contact["id"]}, {"id": contact["id"]}]


def test_pages_chain_through_next_cursor_without_gaps_or_repeats(client_test):
    contacts = [contact_create(livemode=False, first_name=f"C{n}") for n in range(7)]
    _items, _cursor = read_until(client_test, "", has_ids(*(contact.pk for contact in contacts)))

    seen, cursor, has_more_flags = [], "", []
    while True:
        page = read_page(client_test, cursor, page_size=3)
        seen += page["results"]
        has_more_flags.append(page["has_more"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break

    assert [len(chunk) for chunk in (seen[0:3], seen[3:6], seen[6:])] == [3, 3, 1]
    assert has_more_flags == [True, True, False]
    assert contact_ids(seen) == [str(contact.pk) for contact in contacts]
    later = contact_create(livemode=False, first_name="Later")
    items, _cursor = read_until(client_test, cursor, has_ids(later.pk))
    assert contact_ids(items) == [str(later.pk)]


def test_a_cursor_that_is_not_ours_is_rejected_naming_cursor(client_test, client_live):
    forged = contact_changes_cursor(livemode=False, xid=5, change_id=7)[:-2] + "xx"
    other_mode = contact_changes_cursor(livemode=False, xid=5, change_id=7)

    for client, cursor in [(client_test, forged), (client_test, "not-a-cursor"), (client_live, other_mode)]:
        response = client.get(CHANGES, {"cursor": cursor})
        body = response.json()
        assert response.status_code == 400, body
        assert body["error"] == "VALIDATION_ERROR"
        assert "cursor" in body["parameters"]


def test_a_page_size_above_1000_is_rejected(client_test):
    response = client_test.get(CHANGES, {"page_size": 1001})

    assert response.status_code == 400
    assert "page_size" in response.json()["parameters"]


def test_changes_of_a_rolled_back_transaction_never_appear(client_test):
    with pytest.raises(RuntimeError), transaction.atomic():
        contact_create(livemode=False, first_name="Ghost")
        raise RuntimeError("rolled back")
    kept = contact_create(livemode=False, first_name="Kept")

    items, _cursor = read_until(client_test, "", has_ids(kept.pk))

    assert contact_ids(items) == [str(kept.pk)]


def test_changes_of_the_other_mode_are_not_listed(client_test, client_live):
    live = contact_create(livemode=True, first_name="Live")
    test = contact_create(livemode=False, first_name="Test")

    items, _cursor = read_until(client_test, "", has_ids(test.pk))
    live_items, _cursor = read_until(client_live, "", has_ids(live.pk))

    assert contact_ids(items) == [str(test.pk)]
    assert contact_ids(live_items) == [str(live.pk)]


def _age_all_changes(days):
    ContactChange.objects.update(created_at=timezone.now() - timedelta(days=days))


def test_purge_keeps_the_latest_change_of_every_contact_so_a_new_download_is_complete(client_test):
    ana = contact_create(livemode=False, first_name="Ana")
    contact_update(contact=ana, first_name="Anna")
    bo = contact_create(livemode=False, first_name="Bo")
    _age_all_changes(days=40)

    assert contact_changes_purge() == 1

    items, _cursor = read_until(client_test, "", has_ids(ana.pk, bo.pk))
    assert [(item["contact"]["id"], item["kind"]) for item in items] == [
        (str(ana.pk), "updated"),
        (str(bo.pk), "created"),
    ]
    assert items[0]["contact"]["first_name"] == "Anna"


def test_a_cursor_from_before_a_purged_erasure_has_expired_and_says_to_download_again(client_test):
    ana = contact_create(livemode=False, first_name="Ana")
    _items, cursor = read_until(client_test, "", has_ids(ana.pk))
    assert client_test.delete(f"{CONTACTS}/{ana.pk}").status_code == 200
    read_until(client_test, cursor, has_ids(ana.pk))
    _age_all_changes(days=40)

    assert contact_changes_purge() == 2  # the superseded "created", then the old tombstone

    response = client_test.get(CHANGES, {"cursor": cursor})
    body = response.json()
    assert response.status_code == 409
    assert body["error"] == "CURSOR_EXPIRED"
    assert "again" in body["message"]
    assert read_page(client_test, "")["results"] == []


def _in_thread(target, failures):
    def run():
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            failures.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_concurrent_writers_never_make_a_resuming_reader_skip_or_repeat_a_change(client_test):
    writer_count, per_writer = 6, 25
    created, failures, writers_done = [], [], threading.Event()
    barrier = threading.Barrier(writer_count)

    def write(writer):
        barrier.wait(timeout=30)
        for n in range(per_writer):
            with transaction.atomic():
                contact = contact_create(livemode=False, first_name=f"W{writer}-{n}")
                contact_update(contact=contact, last_name="Updated")
            created.append(str(contact.pk))

    writers = [_in_thread(lambda writer=writer: write(writer), failures) for writer in range(writer_count)]
    # The reader follows the feed while the writers commit, saving its cursor after each page as
    # a crash-safe client would.
    seen, cursor = [], ""
    while any(writer.is_alive() for writer in writers):
        page = read_page(client_test, cursor, page_size=7)
        seen += page["results"]
        cursor = page["next_cursor"]
    for writer in writers:
        writer.join(timeout=60)
    writers_done.set()
    assert not failures
    rest, _cursor = read_until(client_test, cursor, lambda items: len(seen) + len(items) >= 2 * len(created))
    seen += rest

    change_ids = [item["change_id"] for item in seen]
    assert len(change_ids) == len(set(change_ids)) == writer_count * per_writer * 2
    assert sorted(set(contact_ids(seen))) == sorted(created)


def test_a_long_running_writers_change_reaches_a_reader_that_moved_on_while_it_was_open(client_test):
    holding, release, failures = threading.Event(), threading.Event(), []
    long_contact = {}

    def long_writer():
        with transaction.atomic():
            long_contact["id"] = str(contact_create(livemode=False, first_name="Slow").pk)
            holding.set()
            assert release.wait(timeout=60)

    slow = _in_thread(long_writer, failures)
    assert holding.wait(timeout=30)
    quick = []

    def quick_writer():
        quick.append(str(contact_create(livemode=False, first_name="Quick").pk))

    for quick_thread in [_in_thread(quick_writer, failures) for _ in range(3)]:
        quick_thread.join(timeout=30)
    quick.append(str(contact_create(livemode=False, first_name="Quick main").pk))
    # Reader pages while the long writer is still open; the quick writers committed after it began.
    page = read_page(client_test, "")
    cursor = page["next_cursor"]
    time.sleep(0.2)
    page_again = read_page(client_test, cursor)
    cursor = page_again["next_cursor"]
    before = contact_ids(page["results"] + page_again["results"])
    assert long_contact["id"] not in before

    release.set()
    slow.join(timeout=30)
    assert not failures
    after, _cursor = read_until(client_test, cursor, has_ids(long_contact["id"], *quick))

    everything = before + contact_ids(after)
    assert sorted(everything) == sorted([long_contact["id"], *quick])
    assert everything.count(long_contact["id"]) == 1
