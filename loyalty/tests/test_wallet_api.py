import pytest

from loyalty.models import Tier
from loyalty.services.ledger import Cause
from loyalty.services.tiers import tier_evaluate
from loyalty.services.wallets import money_credit, points_earn, wallet_spend
from loyalty.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def cause(key):
    return Cause("transaction", key, key)


def test_wallet_shows_points_money_and_tier_progress(client_test):
    contact = ContactFactory(livemode=False)
    Tier.objects.create(livemode=False, name="Silver", rank=1, threshold=100)
    Tier.objects.create(livemode=False, name="Gold", rank=2, threshold=1000)
    points_earn(contact=contact, points=150, cause=cause("t1"))
    tier_evaluate(contact=contact)
    money_credit(contact=contact, kind="open", currency="EUR", amount=1250, cause=cause("c1"))
    body = client_test.get(f"/api/v1/contacts/{contact.pk}/wallet").json()
    assert body["points"]["balance"] == 150
    assert body["points"]["available"] == 150
    assert body["points"]["next_expiring"][0]["points"] == 150
    assert body["money"] == [
        {"kind": "open", "currency": "EUR", "balance": "12.50", "available": "12.50", "pending": "0.00"}
    ]
    assert body["tier"]["current"]["name"] == "Silver"
    assert body["tier"]["remaining_to_next"] == 850


def test_wallet_of_another_modes_contact_is_not_found(client_live):
    contact = ContactFactory(livemode=False)
    response = client_live.get(f"/api/v1/contacts/{contact.pk}/wallet")
    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"


def test_ledger_is_newest_first_filterable_and_cursor_paginated(client_test):
    contact = ContactFactory(livemode=False)
    for n in range(5):
        points_earn(contact=contact, points=10 + n, cause=cause(f"e{n}"))
    money_credit(contact=contact, kind="open", currency="EUR", amount=500, cause=cause("m"))
    from loyalty.services.earning import BasketLine

    wallet_spend(
        contact=contact, currency="EUR", amount=200, lines=[BasketLine(sku="A", amount=1000)], cause=cause("s")
    )
    first = client_test.get(f"/api/v1/contacts/{contact.pk}/ledger", {"page_size": 3}).json()
    assert [entry["kind"] for entry in first["results"]] == ["spend", "earn", "earn"]
    assert first["results"][0]["amount"] == "-2.00" and first["results"][0]["currency"] == "EUR"
    second = client_test.get(first["next"]).json()
    assert [entry["amount"] for entry in second["results"]] == [13, 12, 11]
    points_only = client_test.get(f"/api/v1/contacts/{contact.pk}/ledger", {"account": "points", "kind": "earn"})
    assert len(points_only.json()["results"]) == 5
    bad = client_test.get(f"/api/v1/contacts/{contact.pk}/ledger", {"kind": "gift"})
    assert bad.status_code == 400 and "kind" in bad.json()["parameters"]


def test_spend_token_is_issued_once_as_a_six_digit_code(client_test):
    contact = ContactFactory(livemode=False)
    response = client_test.post(f"/api/v1/contacts/{contact.pk}/spend-tokens")
    assert response.status_code == 201
    body = response.json()
    assert len(body["code"]) == 6 and body["code"].isdigit()
    assert body["code"] not in str(contact.spend_tokens.get().code_hash)


def test_tiers_and_earning_rules_are_managed_with_the_admins_validation(management_client):
    tier = management_client.post("/api/v1/tiers", {"name": "Silver", "rank": 1, "threshold": 500}, format="json")
    assert tier.status_code == 201, tier.json()
    duplicate = management_client.post("/api/v1/tiers", {"name": "Silver", "rank": 1, "threshold": 1}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "DUPLICATE_TIER"
    rule = management_client.post(
        "/api/v1/earning-rules",
        {
            "name": "Base",
            "currency": "EUR",
            "points_per_unit": "1.5",
            "tier": tier.json()["id"],
            "exclusions": [{"kind": "family", "value": "tobacco"}],
        },
        format="json",
    )
    assert rule.status_code == 201, rule.json()
    assert rule.json()["exclusions"] == [{"kind": "family", "value": "tobacco"}]
    too_many = management_client.patch(
        f"/api/v1/earning-rules/{rule.json()['id']}",
        {"exclusions": [{"kind": "sku", "value": f"S{n}"} for n in range(51)]},
        format="json",
    )
    assert too_many.status_code == 400 and too_many.json()["error"] == "LIMIT_EXCEEDED"
    bad_currency = management_client.post(
        "/api/v1/earning-rules", {"name": "X", "currency": "ZZZ", "points_per_unit": "1"}, format="json"
    )
    assert bad_currency.status_code == 400 and "currency" in bad_currency.json()["parameters"]


def test_integration_keys_cannot_manage_tiers(client_test):
    assert client_test.get("/api/v1/tiers").status_code == 403
