"""Purchases end to end: the API in this process, a real Celery worker on Redis, PostgreSQL.

The web side (this process) is pointed at the worker's Redis queue with eager mode off, so
`process_transaction.delay` really goes through the broker. A purchase posted is processed by
the worker; one accepted while the broker is down is stored and the sweeper gets it processed;
a worker killed in the middle of processing leaves its message to be delivered again, and the
purchase earns exactly once.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, transaction

from config.celery import app as celery_app
from loyalty.models import ContactTier, LedgerEntry
from loyalty.services.earning import earning_rule_create
from loyalty.tests.factories import ContactFactory
from transactions.models import Transaction, TransactionEvent
from transactions.services.processing import queued_sweep
from transactions.tests.factories import purchase_payload

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.django_db(transaction=True)]

BROKER_DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused at once
VISIBILITY_TIMEOUT = 1  # seconds, for the worker that takes over from a killed one
PRODUCER_SETTINGS = ("task_always_eager", "broker_url", "task_default_queue")


def _forget_producer_connections() -> None:
    """Celery caches the connection pool, the producer pool and the queues it routes to; drop
    them so the next `delay` uses the broker and queue configured now."""
    celery_app._pool = None
    celery_app.__dict__.pop("amqp", None)


@pytest.fixture
def web_side(monkeypatch):
    """`web_side(broker, queue)` makes this process send tasks to that broker and queue instead
    of running them in-process; the original configuration is restored afterwards."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # it would win over the configuration
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    saved = {name: celery_app.conf[name] for name in PRODUCER_SETTINGS}

    def send_to(broker: str, queue: str = "celery") -> None:
        celery_app.conf.update(task_always_eager=False, broker_url=broker, task_default_queue=queue)
        _forget_producer_connections()

    try:
        yield send_to
    finally:
        celery_app.conf.update(saved)
        _forget_producer_connections()


@pytest.fixture
def shopper(make_client):
    """A test-mode key, a contact and a base rule of 1 point per euro: a purchase of 3 × 10 EUR
    earns 30 points."""
    earning_rule_create(livemode=False, name="Base", currency="EUR", points_per_unit=Decimal(1))
    return make_client(name="e2e till"), ContactFactory(livemode=False)


def _post_purchase(client, contact, external_id: str) -> dict:
    response = client.post(
        "/api/v1/transactions", purchase_payload(external_id, contact={"id": str(contact.pk)}), format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    return response.json()


def _status(transaction_id: str) -> str:
    return Transaction.objects.filter(pk=transaction_id).values_list("status", flat=True).get()


def _events(transaction_id: str) -> list[str]:
    return list(TransactionEvent.objects.filter(transaction_id=transaction_id).values_list("kind", flat=True))


def _earn_entries(external_id: str) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(source_type="transaction", source_id=external_id, kind="earn"))


def _assert_earned_once(client, contact, external_id: str, transaction_id: str) -> None:
    """Processed, one earn entry of 30 points under the purchase's key, a wallet of 30."""
    txn = Transaction.objects.get(pk=transaction_id)
    assert txn.status == Transaction.Status.PROCESSED, txn.failure_reason
    assert txn.points_earned == 30
    assert list(txn.items.values_list("points_earned", flat=True)) == [10, 10, 10]
    entries = _earn_entries(external_id)
    assert [(entry.amount, entry.idempotency_key) for entry in entries] == [(30, f"txn:{txn.pk}:earn")]
    assert LedgerEntry.objects.filter(contact=contact).count() == 1
    detail = client.get(f"/api/v1/transactions/{external_id}").json()
    assert (detail["status"], detail["points_earned"]) == ("processed", 30)
    assert [(award["kind"], award["amount"]) for award in detail["awards"]] == [("earn", 30)]
    wallet = client.get(f"/api/v1/contacts/{contact.pk}/wallet").json()
    assert wallet["points"]["balance"] == 30


def _queries_waiting_on_a_lock() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


@contextmanager
def rows_locked(queryset):
    """Hold `SELECT … FOR UPDATE` on the rows from another database connection (a thread)
    until the block ends: whoever else needs those rows waits, deterministically."""
    locked, release, errors = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with transaction.atomic():
                assert list(queryset.select_for_update()), "nothing to lock"
                locked.set()
                release.wait(60)
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)
            locked.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10) and not errors, errors
    try:
        yield
    finally:
        release.set()
        thread.join(10)


@contextmanager
def tier_row_locked(contact):
    """The contact's tier row, locked from another connection (see rows_locked)."""
    ContactTier.objects.get_or_create(contact=contact)
    with rows_locked(ContactTier.objects.filter(contact=contact)):
        yield


def _task_ids(worker, event: str) -> list[str]:
    """Ids of the processing tasks (a drain, or one purchase sent by the sweeper) in the log."""
    return re.findall(rf"Task transactions\.process(?:_queued)?\[([0-9a-f-]+)\] {event}", worker.log())


def _children(pid: int) -> list[int]:
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:  # the process went away meanwhile
            continue
        if fields.get("PPid", "").strip() == str(pid):
            children.append(int(status.parent.name))
    return children


def test_purchase_posted_over_the_api_is_processed_by_a_real_worker_into_ledger_and_wallet(
    celery_worker_process, web_side, shopper
):
    client, contact = shopper
    worker = celery_worker_process
    web_side(worker.broker, worker.queue)

    answer = _post_purchase(client, contact, "E2E-1")

    worker.wait_until(lambda: _status(answer["transaction_id"]) != "queued")
    assert len(_task_ids(worker, "succeeded")) == 1  # it went through Redis to the worker process
    assert "Task transactions.process_queued[" in worker.log()  # a drain
    _assert_earned_once(client, contact, "E2E-1", answer["transaction_id"])


def test_a_burst_of_purchases_is_drained_by_two_tasks_not_one_task_each(celery_worker_process, web_side, shopper):
    client, contact = shopper
    worker = celery_worker_process
    web_side(worker.broker, worker.queue)

    with tier_row_locked(contact):
        # The first purchase's drain starts (clearing the flag) and waits on the tier row; the
        # second sends one more drain; the next eighteen find it waiting and send nothing.
        first = _post_and_block_in_processing(client, contact, worker, "E2E-BURST-0")
        answers = [_post_purchase(client, contact, f"E2E-BURST-{n}") for n in range(1, 20)]

    ids = [first] + [answer["transaction_id"] for answer in answers]
    worker.wait_until(lambda: all(_status(transaction_id) == "processed" for transaction_id in ids))
    worker.wait_until(lambda: len(_task_ids(worker, "succeeded")) == 2)
    assert len(_task_ids(worker, "received")) == 2
    assert LedgerEntry.objects.filter(contact=contact, kind="earn").count() == 20
    assert sum(LedgerEntry.objects.filter(contact=contact).values_list("amount", flat=True)) == 20 * 30


def test_purchase_accepted_while_the_broker_is_down_is_stored_and_the_sweeper_gets_it_processed(
    celery_worker_process, web_side, shopper, caplog
):
    client, contact = shopper
    worker = celery_worker_process
    web_side(BROKER_DOWN)

    with caplog.at_level(logging.WARNING, logger="transactions.services.intake"):
        answer = _post_purchase(client, contact, "E2E-DOWN")

    assert f"Could not enqueue transaction {answer['transaction_id']}" in caplog.text
    assert _status(answer["transaction_id"]) == "queued"
    assert _earn_entries("E2E-DOWN") == []

    web_side(worker.broker, worker.queue)  # the broker is back
    assert queued_sweep(older_than_seconds=0) == 1

    worker.wait_until(lambda: _status(answer["transaction_id"]) != "queued")
    assert len(_task_ids(worker, "succeeded")) == 1
    _assert_earned_once(client, contact, "E2E-DOWN", answer["transaction_id"])


def _post_and_block_in_processing(client, contact, worker, external_id: str) -> str:
    """Post a purchase while the contact's tier row is locked: the worker processing it gets
    past posting the earn entry (inside its database transaction) and waits in the tier update.
    Returns the transaction id once that is so."""
    answer = _post_purchase(client, contact, external_id)
    worker.wait_until(_queries_waiting_on_a_lock, timeout=60)
    [blocked] = _queries_waiting_on_a_lock()
    assert "loyalty_contacttier" in blocked and "FOR UPDATE" in blocked, blocked
    assert _status(answer["transaction_id"]) == "queued"
    return answer["transaction_id"]


def test_pool_process_killed_mid_task_has_its_task_rejected_back_to_the_queue_and_the_purchase_earns_once(
    celery_workers, web_side, shopper
):
    client, contact = shopper
    worker = celery_workers(pool="prefork")
    web_side(worker.broker, worker.queue)

    with tier_row_locked(contact):
        transaction_id = _post_and_block_in_processing(client, contact, worker, "E2E-CHILD")
        [child] = _children(worker.process.pid)
        os.kill(child, signal.SIGKILL)
        worker.wait_until(lambda: "WorkerLostError" in worker.log())

    worker.wait_until(lambda: _status(transaction_id) != "queued")
    received = _task_ids(worker, "received")
    killed = received[0]
    assert received.count(killed) == 2  # the same message, delivered again after the loss
    assert killed in _task_ids(worker, "succeeded")
    # The redelivered drain may find the purchase still held by the killed process's session
    # (PostgreSQL notices the lost client only when that session next reads from it): it then
    # looks again a moment later, which is the only other task.
    assert len(set(received)) <= 2
    _assert_earned_once(client, contact, "E2E-CHILD", transaction_id)
    assert _events(transaction_id) == ["received", "processed"]


def test_worker_killed_mid_task_leaves_its_message_to_another_worker_and_the_purchase_earns_once(
    celery_workers, web_side, shopper
):
    client, contact = shopper
    first = celery_workers()
    web_side(first.broker, first.queue)

    with tier_row_locked(contact):
        transaction_id = _post_and_block_in_processing(client, contact, first, "E2E-KILL")
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)

    assert _status(transaction_id) == "queued"
    # A worker starting up puts unacknowledged messages older than its visibility timeout back
    # on their queue (and then only every 100 s): let the killed worker's message get that old.
    time.sleep(VISIBILITY_TIMEOUT + 0.5)
    second = celery_workers(env={"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)})

    second.wait_until(lambda: _status(transaction_id) != "queued", timeout=60)
    assert _task_ids(second, "succeeded") == _task_ids(first, "received")  # the same message
    _assert_earned_once(client, contact, "E2E-KILL", transaction_id)
    assert _events(transaction_id) == ["received", "processed"]
