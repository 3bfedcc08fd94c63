"""The reference till client against the real server (gunicorn on 127.0.0.1): purchases go
through, are spooled when the connection is cut and sent exactly once when it is back; the contact
cache is built from the change feed and answers `identify` offline."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime

import pytest
from loyalty_till import TillClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("till"), pytest.mark.django_db(transaction=True)]


def purchase(purchase_id: str | None = None, contact: dict | None = None) -> dict:
    body = {
        "id": purchase_id or f"till-{uuid.uuid4().hex[:12]}",
        "occurred_at": datetime(2026, 11, 20, 12, 0, tzinfo=UTC).isoformat(),
        "currency": "EUR",
        "channel": "pos",
        "items": [{"sku": "SKU1", "quantity": 1, "unit_price": "10.00", "amount": "10.00", "tax_included": "2.00"}],
        "payments": [{"method": "card", "amount": "10.00"}],
        "tax_total": "2.00",
    }
    if contact is not None:
        body["contact"] = contact
    return body


def transactions_with_id(external_id: str) -> int:
    from transactions.models import Transaction

    return Transaction.objects.filter(livemode=False, external_id=external_id).count()


@pytest.fixture
def till(live_server_process, api_key, tmp_path):
    return TillClient(live_server_process.url, api_key, tmp_path / "till.sqlite3")


def test_purchase_goes_through_when_the_server_is_up(till):
    body = purchase()

    result = till.send_purchase(body)

    assert result.status == "ok", result
    assert result.http_status == 202
    assert till.spooled() == []
    assert transactions_with_id(body["id"]) == 1


def test_purchase_is_spooled_when_the_connection_is_cut_and_sent_once_when_it_is_back(till, live_server_process):
    body = purchase()
    live_server_process.stop()  # cut the connection

    started = time.monotonic()
    result = till.send_purchase(body)  # must not raise
    elapsed = time.monotonic() - started

    assert elapsed < 3
    assert result.status == "queued"
    assert [row["id"] for row in till.spooled()] == [body["id"]]
    assert transactions_with_id(body["id"]) == 0
    report = till.flush_spool()  # still down: nothing lost
    assert report.stopped and report.sent == [] and report.remaining == 1

    live_server_process.start()
    first = till.flush_spool()
    second = till.flush_spool()

    assert first.sent == [body["id"]] and first.remaining == 0
    assert second.sent == [] and second.remaining == 0
    assert transactions_with_id(body["id"]) == 1
    # A retry of the same purchase (e.g. the till did not see the first answer) is a replay.
    assert till.send_purchase(body).status == "ok"
    assert transactions_with_id(body["id"]) == 1


def test_a_server_that_does_not_answer_times_out_quickly(api_key, tmp_path, live_server_process):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = TillClient(f"http://127.0.0.1:{port}/api/v1", api_key, tmp_path / "till.sqlite3")

        started = time.monotonic()
        result = client.send_purchase(purchase())
        identified = client.identify("123", "member_number")
        elapsed = time.monotonic() - started

    assert result.status == "queued"
    assert identified.status == "unavailable"
    assert elapsed < 6  # two calls, 2 s each at most


def test_flush_drops_a_purchase_the_server_refuses_and_records_why(till, live_server_process):
    good = purchase()
    till.send_purchase(good)  # stored on the server
    changed = {**good, "tax_total": "3.00"}  # same id, another body: 409 IDEMPOTENCY_MISMATCH
    invalid = purchase()
    invalid["currency"] = "NOPE"
    live_server_process.stop()
    assert till.send_purchase(changed).status == "queued"
    assert till.send_purchase(invalid).status == "queued"
    live_server_process.start()

    report = till.flush_spool()

    assert sorted(report.failed) == sorted([good["id"], invalid["id"]])
    assert report.remaining == 0
    errors = {row["id"]: row for row in till.spool_errors()}
    assert errors[good["id"]]["http_status"] == 409
    assert errors[good["id"]]["error"]["error"] == "IDEMPOTENCY_MISMATCH"
    assert errors[invalid["id"]]["http_status"] == 400
    assert transactions_with_id(good["id"]) == 1


def sync_until(till, done, timeout: float = 30.0, **kwargs) -> list:
    """Sync until `done(cached contact ids)` holds (or the timeout); returns every result."""
    deadline, results = time.monotonic() + timeout, []
    while True:
        results.append(till.sync_contacts(**kwargs))
        with till._db() as db:
            cached = {row[0] for row in db.execute("SELECT id FROM contacts")}
        if done(cached) or time.monotonic() > deadline:
            return results
        time.sleep(0.2)


def test_sync_builds_the_cache_and_identify_works_offline(till, live_server_process):
    from loyalty.services import contact_create, contact_erase

    alice = contact_create(livemode=False, first_name="Alice", email="Alice@Example.com", mobile_phone="+46701234567")
    bob = contact_create(livemode=False, first_name="Bob", email="bob@example.com")

    # One contact per page exercises the cursor loop. The feed shows a change once every older
    # transaction in the database cluster has finished (other tests run in parallel), so sync
    # again until both are there.
    results = sync_until(till, lambda cached: {str(alice.pk), str(bob.pk)} <= cached, page_size=1)

    assert all(result.status == "ok" for result in results), results
    assert sum(result.data["pages"] for result in results) >= 2
    online = till.identify(alice.member_number, "member_number")
    assert online.status == "ok" and online.source == "server"
    assert online.data["id"] == str(alice.pk)

    contact_erase(contact=bob, erased_by="test")
    carol = contact_create(livemode=False, first_name="Carol", email="carol@example.com")
    resumed = sync_until(till, lambda cached: str(carol.pk) in cached and str(bob.pk) not in cached)
    assert all(result.status == "ok" for result in resumed)  # resumes from the saved cursor

    live_server_process.stop()
    by_email = till.identify("alice@EXAMPLE.com", "email")
    by_phone = till.identify("+46 70 123 45 67", "mobile_phone")
    by_number = till.identify(carol.member_number, "member_number")
    erased = till.identify("bob@example.com", "email")

    assert (by_email.status, by_email.source, by_email.data["id"]) == ("ok", "cache", str(alice.pk))
    assert by_phone.data["id"] == str(alice.pk)
    assert by_number.data["id"] == str(carol.pk)
    assert erased.status == "unavailable"  # erased contacts are deleted from the cache
    assert till.sync_contacts().status == "unavailable"  # no exception, cache untouched
    assert till.identify(alice.member_number, "member_number").status == "ok"
    # A purchase tagged from the cache goes into the spool like any other.
    assert till.send_purchase(purchase(contact={"id": by_email.data["id"]})).status == "queued"


def test_expired_cursor_downloads_everything_again(till, live_server_process):
    from loyalty.services import contact_create

    alice = contact_create(livemode=False, first_name="Alice", email="alice@example.com")
    assert all(result.status == "ok" for result in sync_until(till, lambda cached: str(alice.pk) in cached))
    with till._db() as db:  # a stale row and a cursor the server no longer honours
        db.execute("INSERT INTO contacts (id, member_number, data) VALUES ('stale', 'X1', '{\"id\": \"stale\"}')")

    def expired(method, path, **kwargs):
        if path == "/contacts/changes" and kwargs["query"]["cursor"]:
            return 409, {"status": 409, "error": "CURSOR_EXPIRED", "message": "too old", "parameters": ["cursor"]}
        return real(method, path, **kwargs)

    real = till._request
    till._request = expired

    result = till.sync_contacts()

    assert result.status == "ok" and result.data["restarted"] is True
    assert till.cached_contact("X1", "member_number") is None
    assert till.cached_contact(alice.member_number, "member_number")["id"] == str(alice.pk)
