import pytest

from offers.models import IssuedOffer
from offers.tests.factories import IssuedOfferFactory, OfferFactory

pytestmark = pytest.mark.django_db

BASKET = {
    "currency": "EUR",
    "channel": "pos",
    "items": [
        {"sku": "MILK", "quantity": 2, "unit_price": "1.50", "amount": "3.00"},
        {"sku": "BREAD", "quantity": 1, "unit_price": "2.00", "amount": "2.00"},
    ],
}


def test_issue_lookup_lock_redeem_reinstate(client_test):
    offer = OfferFactory()
    issued = IssuedOfferFactory(offer=offer)
    contact = {"id": str(issued.contact_id)}

    lookup = client_test.post("/api/v1/offers/lookup", {"contact": contact, "basket": BASKET}, format="json")
    assert lookup.status_code == 200, lookup.json()
    body = lookup.json()
    assert [o["issued_offer"]["id"] for o in body["offers"]] == [str(issued.pk)]
    assert body["offers"][0]["discount"] == "0.50"
    assert body["best_combination"]["discount"] == "0.50"

    lock = client_test.post(
        f"/api/v1/issued-offers/{issued.pk}/lock", {"transaction_id": "T1", "basket": BASKET}, format="json"
    )
    assert lock.status_code == 200, lock.json()
    assert lock.json()["status"] == "locked" and lock.json()["discount"] == "0.50"

    other = client_test.post(
        f"/api/v1/issued-offers/{issued.pk}/lock", {"transaction_id": "T2", "basket": BASKET}, format="json"
    )
    assert other.status_code == 409 and other.json()["error"] == "OFFER_LOCKED"

    redeem = client_test.post(f"/api/v1/issued-offers/{issued.pk}/redeem", {"transaction_id": "T1"}, format="json")
    assert redeem.status_code == 200, redeem.json()
    again = client_test.post(f"/api/v1/issued-offers/{issued.pk}/redeem", {"transaction_id": "T1"}, format="json")
    assert again.status_code == 409 and again.json()["error"] == "OFFER_NOT_AVAILABLE"

    reinstate = client_test.post(f"/api/v1/issued-offers/{issued.pk}/reinstate", {}, format="json")
    assert reinstate.status_code == 200 and reinstate.json()["status"] == "available"
    assert list(IssuedOffer.objects.get(pk=issued.pk).transitions.values_list("action", flat=True)) == [
        "lock",
        "redeem",
        "reinstate",
    ]
    offer.refresh_from_db()
    assert (offer.redeemed_count, offer.discount_given) == (0, 0)


def test_issue_endpoint_and_management(management_client):
    created = management_client.post(
        "/api/v1/offers",
        {
            "name": "10% dairy",
            "benefit_type": "percent_off",
            "benefit_value": "10",
            "status": "active",
            "restrictions": [{"kind": "family", "value": "dairy"}],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    contact = management_client.post("/api/v1/contacts", {"first_name": "A"}, format="json").json()
    issued = management_client.post(
        f"/api/v1/offers/{created.json()['id']}/issue", {"contact": {"id": contact["id"]}}, format="json"
    )
    assert issued.status_code == 201, issued.json()
    wallet = management_client.get(f"/api/v1/contacts/{contact['id']}/offers").json()
    assert [item["id"] for item in wallet["results"]] == [issued.json()["id"]]
