"""GET /contacts/{id}/export: everything held about a contact as one JSON document (GDPR right
of access), the other mode's contacts not found."""

from __future__ import annotations

import pytest

from catalogue.tests.factories import VenueFactory
from loyalty.services.wallets import spend_token_issue
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory
from offers.services.issued import issued_offer_unlock
from orders.selectors import contact_export
from transactions.tests.factories import base_rule, locked_offer, purchase_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    contact = ContactFactory(
        livemode=False,
        first_name="Ana",
        email="ana.lind@example.com",
        mobile_phone="+46707234567",
        email_consent=True,
        attributes={"shoe_size": 38},
    )
    ContactExternalIdFactory(contact=contact, source="pos", value="POS-42")
    return contact


@pytest.fixture
def history(client_test, contact, django_capture_on_commit_callbacks):
    """A processed purchase, an offer locked then released, and a placed order."""
    base_rule()
    with django_capture_on_commit_callbacks(execute=True):
        sent = client_test.post(
            "/api/v1/transactions", purchase_payload(contact={"id": str(contact.pk)}), format="json"
        )
    assert sent.status_code == 202, sent.json()
    issued, _ = locked_offer(contact=contact, transaction_id="T-77")
    issued_offer_unlock(issued_offer_id=issued.pk)
    venue = VenueFactory()
    placed = client_test.post(
        "/api/v1/orders",
        {
            "contact": {"id": str(contact.pk)},
            "venue": str(venue.pk),
            "currency": "EUR",
            "notes": "Ring twice",
            "lines": [{"sku": "LATTE", "quantity": 2, "unit_price": "3.50"}],
        },
        format="json",
    )
    assert placed.status_code == 201, placed.json()
    return {"issued_offer": issued, "order_id": placed.json()["id"]}


def test_the_export_holds_profile_identifiers_consents_wallet_ledger_offers_purchases_and_orders(
    client_test, contact, history
):
    response = client_test.get(f"/api/v1/contacts/{contact.pk}/export")

    assert response.status_code == 200, response.json()
    document = response.json()
    assert document["contact"]["id"] == str(contact.pk)
    assert document["contact"]["email"] == "ana.lind@example.com"
    assert document["contact"]["mobile_phone"] == "+46707234567"
    assert document["contact"]["attributes"] == {"shoe_size": 38}
    assert document["contact"]["consents"] == {"email": True, "sms": False}
    assert [(row["source"], row["value"]) for row in document["external_ids"]] == [("pos", "POS-42")]
    assert document["wallet"]["points"]["balance"] == 30
    assert [(entry["kind"], entry["amount"]) for entry in document["ledger"]] == [("earn", 30)]
    [purchase] = document["transactions"]
    assert (purchase["external_id"], purchase["status"], len(purchase["items"])) == ("T-1", "processed", 3)
    [offer] = document["offers"]
    assert offer["id"] == str(history["issued_offer"].pk)
    assert [step["action"] for step in offer["history"]] == ["lock", "unlock"]
    [order] = document["orders"]
    assert (order["id"], order["notes"], len(order["lines"]), len(order["history"])) == (
        history["order_id"],
        "Ring twice",
        1,
        1,
    )
    assert document["claims"] == []
    assert document["erasure"] is None


def test_the_export_never_contains_a_spend_token_hash(contact):
    spend_token_issue(contact=contact)

    document = contact_export(contact=contact)

    [token] = document["spend_tokens"]
    assert "code_hash" not in token


def test_the_export_of_an_erased_contact_shows_the_erasure_and_no_personal_data(client_test, contact):
    client_test.delete(f"/api/v1/contacts/{contact.pk}")

    document = client_test.get(f"/api/v1/contacts/{contact.pk}/export").json()

    assert document["contact"]["status"] == "erased"
    assert document["contact"]["email"] is None
    assert document["external_ids"] == []
    assert document["erasure"]["erased_at"]


def test_the_export_of_a_contact_of_the_other_mode_is_404(client_live, contact):
    response = client_live.get(f"/api/v1/contacts/{contact.pk}/export")

    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"


def test_the_export_takes_a_fixed_number_of_queries(contact, history, django_assert_max_num_queries):
    with django_assert_max_num_queries(30):
        contact_export(contact=contact)
