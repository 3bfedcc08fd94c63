"""Many tills sending the same purchase at the same moment: the database keeps one.

Real threads, each with its own database connection, released together by a barrier. Celery is
eager here: the request that stored the purchase processes it on commit, in its own thread.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from loyalty.models import LedgerEntry
from loyalty.services.earning import earning_rule_create
from loyalty.tests.factories import ContactFactory
from transactions.models import Transaction, TransactionItem
from transactions.tests.factories import purchase_payload

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 20


@pytest.fixture
def till(make_client):
    """One test-mode key (made before any thread starts), a contact, 1 point per euro."""
    earning_rule_create(livemode=False, name="Base", currency="EUR", points_per_unit=Decimal(1))
    client = make_client(name="till")
    return client.raw_key, ContactFactory(livemode=False)


def _post_all_at_once(raw_key, payloads: list[dict]) -> list:
    """POST each payload from its own thread (own APIClient, own connection), all released at
    once; the responses in the same order."""
    barrier = threading.Barrier(len(payloads))
    responses: list = [None] * len(payloads)
    errors: list[BaseException] = []

    def post(index: int, payload: dict) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        try:
            barrier.wait(timeout=30)
            responses[index] = client.post("/api/v1/transactions", payload, format="json")
        except BaseException as error:  # noqa: BLE001 - reported in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(index, payload)) for index, payload in enumerate(payloads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(response is not None for response in responses)
    return responses


def _earns(external_id: str) -> list[int]:
    return list(
        LedgerEntry.objects.filter(source_type="transaction", source_id=external_id, kind="earn").values_list(
            "amount", flat=True
        )
    )


def test_twenty_tills_sending_the_same_purchase_at_once_store_it_once_and_it_earns_once(till):
    raw_key, contact = till
    payload = purchase_payload("RACE-1", contact={"id": str(contact.pk)})

    responses = _post_all_at_once(raw_key, [payload] * THREADS)

    assert [response.status_code for response in responses] == [202] * THREADS, [r.content for r in responses]
    bodies = [response.json() for response in responses]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["id"] == "RACE-1" and bodies[0]["status"] == "queued"
    stored_by = [response for response in responses if not response.has_header("Idempotent-Replayed")]
    assert len(stored_by) == 1  # one request stored it; the nineteen others were answered its answer

    txn = Transaction.objects.get(external_id="RACE-1")
    assert Transaction.objects.count() == 1
    assert str(txn.pk) == bodies[0]["transaction_id"]
    assert list(TransactionItem.objects.values_list("transaction_id", "line_number")) == [
        (txn.pk, 0),
        (txn.pk, 1),
        (txn.pk, 2),
    ]
    assert list(txn.events.filter(kind="received").values_list("kind", flat=True)) == ["received"]
    assert txn.status == Transaction.Status.PROCESSED, txn.failure_reason
    assert _earns("RACE-1") == [30]
    assert LedgerEntry.objects.filter(contact=contact).count() == 1


def test_tills_racing_with_two_payloads_for_one_id_keep_the_stored_one_and_get_409_for_the_other(till):
    raw_key, contact = till
    reference = {"id": str(contact.pk)}
    three_lines = purchase_payload("RACE-2", contact=reference, lines=3)
    one_line = purchase_payload("RACE-2", contact=reference, lines=1)
    payloads = [one_line if index % 4 == 0 else three_lines for index in range(THREADS)]  # 5 against 15

    responses = _post_all_at_once(raw_key, payloads)

    # Whichever payload won the insert: all its senders got its answer, all the others a 409.
    txn = Transaction.objects.get(external_id="RACE-2")
    assert Transaction.objects.count() == 1
    lines = txn.items.count()
    assert lines in (1, 3)
    winner = three_lines if lines == 3 else one_line
    for payload, response in zip(payloads, responses, strict=True):
        if payload is winner:
            assert response.status_code == 202, response.content
            assert response.json()["transaction_id"] == str(txn.pk)
        else:
            assert response.status_code == 409, response.content
            assert response.json()["error"] == "IDEMPOTENCY_MISMATCH"
    accepted = [response.json() for response in responses if response.status_code == 202]
    assert all(body == accepted[0] for body in accepted)

    # The stored purchase is the winner's, whole, and earned once.
    assert txn.amount == 1000 * lines
    assert list(txn.items.values_list("sku", flat=True)) == [f"SKU{n}" for n in range(lines)]
    assert txn.status == Transaction.Status.PROCESSED, txn.failure_reason
    assert _earns("RACE-2") == [10 * lines]
    assert LedgerEntry.objects.filter(contact=contact).count() == 1
