from decimal import Decimal

import pytest

from loyalty.models import LedgerEntry
from loyalty.services.earning import earning_rule_create
from loyalty.tests.factories import ContactFactory
from transactions.models import Transaction
from transactions.tests.factories import purchase_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def rule():
    return earning_rule_create(livemode=False, name="Base", currency="EUR", points_per_unit=Decimal(1))


def test_purchase_is_accepted_then_processed_into_points(client_test, rule, django_capture_on_commit_callbacks):
    contact = ContactFactory(livemode=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_test.post(
            "/api/v1/transactions", purchase_payload(contact={"id": str(contact.pk)}), format="json"
        )
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued"
    txn = Transaction.objects.get(external_id="T-1")
    assert txn.status == "processed", txn.failure_reason
    assert LedgerEntry.objects.get(contact=contact).amount == 30
    detail = client_test.get("/api/v1/transactions/T-1").json()
    assert detail["status"] == "processed" and detail["points_earned"] == 30

    again = client_test.post("/api/v1/transactions", purchase_payload(contact={"id": str(contact.pk)}), format="json")
    assert again.status_code == 202 and again.json() == response.json()
    other = client_test.post(
        "/api/v1/transactions", purchase_payload(lines=1, contact={"id": str(contact.pk)}), format="json"
    )
    assert other.status_code == 409 and other.json()["error"] == "IDEMPOTENCY_MISMATCH"

    with django_capture_on_commit_callbacks(execute=True):
        void = client_test.post("/api/v1/transactions/T-1/void", {"reason": "till error"}, format="json")
    assert void.status_code == 200 and void.json()["status"] == "voided"
    assert sum(LedgerEntry.objects.filter(contact=contact).values_list("amount", flat=True)) == 0


def test_unmatched_purchase_is_attached_when_the_contact_registers(
    client_test, rule, django_capture_on_commit_callbacks
):
    reference = {"match_key": "+46701112233", "match_key_type": "mobile_phone"}
    with django_capture_on_commit_callbacks(execute=True):
        client_test.post("/api/v1/transactions", purchase_payload(contact=reference), format="json")
    assert Transaction.objects.get().status == "unmatched"
    with django_capture_on_commit_callbacks(execute=True):
        created = client_test.post("/api/v1/contacts", {"mobile_phone": "070-111 22 33"}, format="json")
    assert created.status_code == 201
    txn = Transaction.objects.get()
    assert txn.status == "processed" and str(txn.contact_id) == created.json()["id"]


def test_return_reverses_points_in_proportion(client_test, rule, django_capture_on_commit_callbacks):
    contact = ContactFactory(livemode=False)
    with django_capture_on_commit_callbacks(execute=True):
        client_test.post("/api/v1/transactions", purchase_payload(contact={"id": str(contact.pk)}), format="json")
    response = client_test.post(
        "/api/v1/returns",
        {"id": "R-1", "transaction_id": "T-1", "items": [{"sku": "SKU0", "quantity": 1}]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["points_reversed"] == 10
    too_much = client_test.post(
        "/api/v1/returns",
        {"id": "R-2", "transaction_id": "T-1", "items": [{"sku": "SKU0", "quantity": 1}]},
        format="json",
    )
    assert too_much.status_code == 400


def test_product_sync_reports_progress_and_row_errors(client_test, django_capture_on_commit_callbacks):
    rows = [{"sku": "A1", "family": "dairy", "brand": "arla"}, {"sku": "", "name": "bad"}, {"sku": "B2"}]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_test.post("/api/v1/products/sync", {"products": rows}, format="json")
    assert response.status_code == 202
    status = client_test.get(f"/api/v1/products/sync/{response.json()['process_id']}").json()
    assert (status["status"], status["processed"], status["created"]) == ("done", 3, 2)
    assert status["errors"] == [{"row": 1, "field": "sku", "error": "A SKU is required."}]
