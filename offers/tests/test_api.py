"""The offers API against the contract: lookup, a contact's wallet, issuing, lock/unlock/redeem/
reinstate, external redemptions, offer management, mode isolation, and bad input (the contract's
error with the precise code, and nothing changed)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalogue.tests.factories import ProductFactory, VenueFactory
from core.models import IdempotencyRecord
from core.tests.assertions import assert_error_body
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer, IssuedOfferTransition, Offer, OfferContactUsage, OfferRestriction
from offers.services import definitions
from offers.services import issued as services
from offers.tests.factories import IssuedOfferFactory, OfferFactory

pytestmark = pytest.mark.django_db

Status = IssuedOffer.Status
LOOKUP = "/api/v1/offers/lookup"
OFFERS = "/api/v1/offers"
EXTERNAL = "/api/v1/external-redemptions"
UNKNOWN_ID = "6f1c1d2e-8a55-4a4e-9f57-1f0d3c6b2a10"

MILK = {"sku": "MILK", "quantity": 2, "unit_price": "1.50", "amount": "3.00"}
BREAD = {"sku": "BREAD", "quantity": 1, "unit_price": "2.00", "amount": "2.00"}
CHEESE = {"sku": "CHEESE", "quantity": 1, "unit_price": "10.00", "amount": "10.00"}


def basket(*items: dict, **extra) -> dict:
    """MILK 3.00 + BREAD 2.00 by default: the factory's 10 % offer gives 0.50 on it."""
    return {"currency": "EUR", "channel": "pos", "items": list(items or (MILK, BREAD)), **extra}


def assert_error(response, status: int, code: str, *parameters: str) -> dict:
    return assert_error_body(response, status, code, list(parameters))


def issued_url(issued, action: str) -> str:
    return f"/api/v1/issued-offers/{issued.pk if hasattr(issued, 'pk') else issued}/{action}"


def post(client, url: str, body: dict, **headers):
    return client.post(url, body, format="json", **headers)


def state(issued: IssuedOffer) -> tuple:
    """Everything a refused request must leave as it was."""
    row = IssuedOffer.objects.get(pk=issued.pk)
    offer = Offer.objects.get(pk=row.offer_id)
    return (
        row.status,
        row.locked_transaction_id,
        row.locked_until,
        row.redeemed_transaction_id,
        row.redeemed_at,
        offer.redeemed_count,
        offer.discount_given,
        OfferContactUsage.objects.filter(offer_id=row.offer_id).count(),
        IssuedOfferTransition.objects.filter(issued_offer_id=row.pk).count(),
    )


def lock(client, issued, transaction_id="T1", **body):
    return post(client, issued_url(issued, "lock"), {"transaction_id": transaction_id, "basket": basket(), **body})


# --- lookup -----------------------------------------------------------------------------------


def test_lookup_without_a_basket_lists_every_usable_issued_offer_of_the_contact(client_test):
    contact = ContactFactory()
    usable = IssuedOfferFactory(contact=contact, offer__priority=5)
    usable_too = IssuedOfferFactory(contact=contact, offer__min_spend=1_000_000)  # no basket: no basket rules
    locked_by_other = IssuedOfferFactory(contact=contact)
    services.issued_offer_lock(issued_offer_id=locked_by_other.pk, transaction_id="OTHER", context=None)
    IssuedOfferFactory(contact=contact, offer__status=Offer.Status.PAUSED)
    IssuedOfferFactory(contact=contact, status=Status.REVOKED)
    IssuedOfferFactory(contact=contact, expires_at=timezone.now() - timedelta(seconds=1))
    IssuedOfferFactory()  # another contact's

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["contact_id"] == str(contact.pk)
    assert [entry["issued_offer"]["id"] for entry in body["offers"]] == [str(usable.pk), str(usable_too.pk)]
    assert all(entry["discount"] is None and entry["applicable"] for entry in body["offers"])
    assert "best_combination" not in body


def test_lookup_with_a_basket_lists_only_applicable_offers_each_with_its_discount(client_test):
    contact = ContactFactory()
    ten_percent = IssuedOfferFactory(contact=contact, offer__priority=10)
    milk_only = IssuedOfferFactory(contact=contact, offer__benefit_value=Decimal("20"), offer__priority=5)
    OfferRestriction.objects.create(offer=milk_only.offer, kind="sku", value="MILK")
    IssuedOfferFactory(contact=contact, offer__min_spend=10_000)

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}, "basket": basket()})

    assert response.status_code == 200, response.json()
    offers = {entry["issued_offer"]["id"]: entry for entry in response.json()["offers"]}
    assert set(offers) == {str(ten_percent.pk), str(milk_only.pk)}
    assert offers[str(ten_percent.pk)]["discount"] == "0.50"
    assert offers[str(ten_percent.pk)]["line_discounts"] == [
        {"line": 0, "amount": "0.30"},
        {"line": 1, "amount": "0.20"},
    ]
    assert offers[str(milk_only.pk)]["discount"] == "0.60"
    assert offers[str(milk_only.pk)]["line_discounts"] == [{"line": 0, "amount": "0.60"}]
    assert "reasons" not in offers[str(ten_percent.pk)]


def test_lookup_with_explain_gives_the_reasons_each_other_offer_does_not_apply(client_test):
    contact = ContactFactory()
    applies = IssuedOfferFactory(contact=contact)
    cases = {
        "min_spend_not_met": IssuedOfferFactory(contact=contact, offer__min_spend=10_000),
        "wrong_channel": IssuedOfferFactory(contact=contact, offer__channels=["web"]),
        "offer_paused": IssuedOfferFactory(contact=contact, offer__status=Offer.Status.PAUSED),
        "not_yet_valid": IssuedOfferFactory(contact=contact, offer__valid_from=timezone.now() + timedelta(days=1)),
        "budget_exhausted": IssuedOfferFactory(contact=contact, offer__budget_count=0),
        "locked_by_another_transaction": IssuedOfferFactory(contact=contact),
        "limit_reached": IssuedOfferFactory(contact=contact, offer__redemptions_per_contact=1),
    }
    services.issued_offer_lock(
        issued_offer_id=cases["locked_by_another_transaction"].pk, transaction_id="OTHER", context=None
    )
    OfferContactUsage.objects.create(offer=cases["limit_reached"].offer, contact=contact, redeemed_count=1)

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}, "basket": basket(), "explain": True})

    assert response.status_code == 200, response.json()
    by_id = {entry["issued_offer"]["id"]: entry for entry in response.json()["offers"]}
    assert by_id[str(applies.pk)]["applicable"] is True
    assert by_id[str(applies.pk)]["reasons"] == []
    for reason, issued in cases.items():
        entry = by_id[str(issued.pk)]
        assert entry["applicable"] is False, reason
        assert entry["reasons"] == [reason]
        assert entry["discount"] is None
    assert response.json()["best_combination"]["issued_offer_ids"] == [str(applies.pk)]


def test_best_combination_stacks_combinable_offers_on_what_is_left_of_each_line(client_test):
    contact = ContactFactory()
    ten_percent = IssuedOfferFactory(contact=contact, offer__priority=10)
    one_euro = IssuedOfferFactory(
        contact=contact, offer__benefit_type=Offer.Benefit.AMOUNT_OFF, offer__benefit_value=1, offer__priority=5
    )

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}, "basket": basket()})

    assert response.json()["best_combination"] == {
        "issued_offer_ids": [str(ten_percent.pk), str(one_euro.pk)],
        "discount": "1.50",
    }


def test_best_combination_takes_an_exclusive_offer_alone_when_it_gives_more(client_test):
    contact = ContactFactory()
    IssuedOfferFactory(contact=contact, offer__priority=10)
    IssuedOfferFactory(contact=contact, offer__benefit_type=Offer.Benefit.AMOUNT_OFF, offer__benefit_value=1)
    half_price = IssuedOfferFactory(contact=contact, offer__benefit_value=50, offer__is_exclusive=True)

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}, "basket": basket()})

    assert response.json()["best_combination"] == {"issued_offer_ids": [str(half_price.pk)], "discount": "2.50"}


def test_best_combination_keeps_combinable_offers_when_an_exclusive_one_gives_less(client_test):
    contact = ContactFactory()
    ten_percent = IssuedOfferFactory(contact=contact, offer__priority=10)
    one_euro = IssuedOfferFactory(
        contact=contact, offer__benefit_type=Offer.Benefit.AMOUNT_OFF, offer__benefit_value=1, offer__priority=5
    )
    IssuedOfferFactory(contact=contact, offer__benefit_value=20, offer__is_exclusive=True)

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}, "basket": basket()})

    assert response.json()["best_combination"] == {
        "issued_offer_ids": [str(ten_percent.pk), str(one_euro.pk)],
        "discount": "1.50",
    }


def test_best_combination_names_each_of_two_copies_of_one_offer_once(client_test):
    contact = ContactFactory()
    offer = OfferFactory()
    first = IssuedOfferFactory(contact=contact, offer=offer)
    second = IssuedOfferFactory(contact=contact, offer=offer)

    response = post(client_test, LOOKUP, {"contact": {"id": str(contact.pk)}, "basket": basket()})

    combination = response.json()["best_combination"]
    assert sorted(combination["issued_offer_ids"]) == sorted([str(first.pk), str(second.pk)])
    assert combination["discount"] == "0.95"  # 10 % of 5.00, then 10 % of the 4.50 left


def test_lookup_by_match_key_finds_the_contact(client_test):
    issued = IssuedOfferFactory()
    reference = {"match_key": issued.contact.member_number, "match_key_type": "member_number"}

    response = post(client_test, LOOKUP, {"contact": reference, "basket": basket()})

    assert response.status_code == 200, response.json()
    assert [entry["issued_offer"]["id"] for entry in response.json()["offers"]] == [str(issued.pk)]


def test_lookup_with_the_lock_holders_transaction_counts_its_own_lock_as_free(client_test):
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=None)
    contact = {"id": str(issued.contact_id)}

    holder = post(client_test, LOOKUP, {"contact": contact, "basket": basket(), "transaction_id": "T1"})
    other = post(client_test, LOOKUP, {"contact": contact, "basket": basket(), "transaction_id": "T2"})

    assert [entry["issued_offer"]["id"] for entry in holder.json()["offers"]] == [str(issued.pk)]
    assert other.json()["offers"] == []


def _lookup_fixture(offer_count: int, line_count: int) -> tuple[dict, dict]:
    venue = VenueFactory()
    contact = ContactFactory()
    for index in range(offer_count):
        issued = IssuedOfferFactory(contact=contact, offer__priority=index)
        OfferRestriction.objects.create(offer=issued.offer, kind="family", value="dairy")
        OfferRestriction.objects.create(offer=issued.offer, mode="exclude", kind="sku", value="NOT-THIS")
        issued.offer.venues.add(venue)
    products = [ProductFactory(sku=f"L{offer_count}-{index}") for index in range(min(line_count, 20))]
    items = [
        {"sku": products[index % len(products)].sku, "quantity": 1, "amount": "1.00", "family": "dairy"}
        for index in range(line_count)
    ]
    body = {"contact": {"id": str(contact.pk)}, "basket": basket(*items, venue=str(venue.pk)), "explain": True}
    return body, {"offers": offer_count}


def test_lookup_query_count_does_not_grow_with_lines_or_offers(client_test):
    small, small_expect = _lookup_fixture(offer_count=2, line_count=5)
    large, large_expect = _lookup_fixture(offer_count=40, line_count=500)
    # The key's first use writes its last-used time (a contact without offers: nothing else is cached).
    post(client_test, LOOKUP, {"contact": {"id": str(ContactFactory().pk)}})

    def queries(body) -> tuple[list[str], dict]:
        with CaptureQueriesContext(connection) as captured:
            response = post(client_test, LOOKUP, body)
        assert response.status_code == 200, response.json()
        return [query["sql"][:150] for query in captured], response.json()

    # Measured on first and on repeated lookups (offer definitions may be cached in between).
    small_first, _ = queries(small)
    large_first, large_body = queries(large)
    small_again, small_body = queries(small)
    large_again, _ = queries(large)

    assert len(small_body["offers"]) == small_expect["offers"]
    assert len(large_body["offers"]) == large_expect["offers"]
    assert all(entry["applicable"] for entry in large_body["offers"])
    assert large_body["offers"][0]["discount"] == "50.00"  # 10 % of 500 lines at 1.00
    assert len(large_first) == len(small_first), large_first
    assert len(large_again) == len(small_again), large_again
    # The first time: the offers' definitions, restrictions and venues too.
    assert len(large_first) <= 6, large_first
    # Once the key and the offer definitions are cached: the contact with its issued offers, their
    # offers' state and the contact's usage (one query), the venue, the catalogue classification.
    assert len(large_again) <= 3, large_again


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({**MILK, "unit_price": "-1.50", "amount": None}, "basket.items.0.unit_price"),
        ({**MILK, "amount": "-3.00"}, "basket.items.0.amount"),
        ({**MILK, "quantity": -2}, "basket.items.0.quantity"),
        ({**MILK, "quantity": 0}, "basket.items.0.quantity"),
    ],
)
def test_lookup_refuses_negative_lines_naming_the_field(client_test, item, field):
    issued = IssuedOfferFactory()

    response = post(client_test, LOOKUP, {"contact": {"id": str(issued.contact_id)}, "basket": basket(item)})

    assert_error(response, 400, "VALIDATION_ERROR", field)


def test_lookup_refuses_more_than_1000_lines(client_test):
    issued = IssuedOfferFactory()
    items = [{"sku": f"S{index}", "amount": "1.00"} for index in range(1001)]

    response = post(client_test, LOOKUP, {"contact": {"id": str(issued.contact_id)}, "basket": basket(*items)})

    assert_error(response, 400, "LIMIT_EXCEEDED", "basket.items", "limit", "1000")


def test_lookup_accepts_exactly_1000_lines(client_test):
    issued = IssuedOfferFactory()
    items = [{"sku": f"S{index}", "amount": "1.00"} for index in range(1000)]

    response = post(client_test, LOOKUP, {"contact": {"id": str(issued.contact_id)}, "basket": basket(*items)})

    assert response.status_code == 200, response.json()
    assert response.json()["offers"][0]["discount"] == "100.00"


def test_lookup_of_an_unknown_contact_is_not_found(client_test):
    response = post(client_test, LOOKUP, {"contact": {"id": UNKNOWN_ID}})

    assert_error(response, 404, "NOT_FOUND", "id", UNKNOWN_ID)


def test_lookup_of_an_unknown_contact_is_not_found_whatever_the_basket_holds(client_test):
    response = post(client_test, LOOKUP, {"contact": {"id": UNKNOWN_ID}, "basket": basket({**MILK, "amount": "-3.00"})})

    assert_error(response, 404, "NOT_FOUND", "id", UNKNOWN_ID)


def test_lookup_sees_an_offer_edited_and_its_limits_moved_though_definitions_are_cached(client_test):
    issued = IssuedOfferFactory()
    body = {"contact": {"id": str(issued.contact_id)}, "basket": basket(), "explain": True}
    assert post(client_test, LOOKUP, body).json()["offers"][0]["discount"] == "0.50"

    definitions.offer_update(
        offer=Offer.objects.get(pk=issued.offer_id),
        name="Half price milk",
        benefit_value=Decimal(50),
        restrictions=[{"kind": "sku", "value": "MILK"}],
    )
    edited = post(client_test, LOOKUP, body).json()["offers"][0]
    # Limits and counters are changed by UPDATEs that make no new definition.
    Offer.objects.filter(pk=issued.offer_id).update(budget_count=1, redeemed_count=1)
    exhausted = post(client_test, LOOKUP, body).json()["offers"][0]

    assert (edited["issued_offer"]["offer"]["name"], edited["discount"]) == ("Half price milk", "1.50")
    assert (exhausted["applicable"], exhausted["reasons"]) == (False, ["budget_exhausted"])


# --- the contact's wallet ---------------------------------------------------------------------


def test_contact_offers_lists_issued_unexpired_offers_including_locked_ones(client_test):
    contact = ContactFactory()
    available = IssuedOfferFactory(contact=contact, offer__priority=9)
    locked = IssuedOfferFactory(contact=contact)
    services.issued_offer_lock(issued_offer_id=locked.pk, transaction_id="T1", context=None)
    redeemed = IssuedOfferFactory(contact=contact)
    services.issued_offer_redeem(issued_offer_id=redeemed.pk)
    IssuedOfferFactory(contact=contact, status=Status.EXPIRED)
    IssuedOfferFactory(contact=contact, status=Status.REVOKED)
    IssuedOfferFactory(contact=contact, expires_at=timezone.now() - timedelta(minutes=1))
    IssuedOfferFactory()

    response = client_test.get(f"/api/v1/contacts/{contact.pk}/offers")

    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert [item["id"] for item in results] == [str(available.pk), str(locked.pk)]
    assert results[1]["status"] == "locked" and results[1]["locked_transaction_id"] == "T1"
    assert results[0]["offer"]["name"] == available.offer.name


def test_contact_offers_of_an_unknown_contact_is_not_found(client_test):
    assert_error(client_test.get(f"/api/v1/contacts/{UNKNOWN_ID}/offers"), 404, "NOT_FOUND", "id", UNKNOWN_ID)


# --- issue ------------------------------------------------------------------------------------


def test_issue_returns_the_issued_offer(client_test):
    offer = OfferFactory()
    contact = ContactFactory()

    response = post(client_test, f"{OFFERS}/{offer.pk}/issue", {"contact": {"id": str(contact.pk)}})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "available"
    assert (body["contact_id"], body["offer"]["id"], body["livemode"]) == (str(contact.pk), str(offer.pk), False)
    assert IssuedOffer.objects.get(pk=body["id"]).contact_id == contact.pk
    offer.refresh_from_db()
    assert offer.issued_count == 1


def test_issue_with_an_idempotency_key_replays_the_first_response(client_test):
    offer = OfferFactory()
    body = {"contact": {"id": str(ContactFactory().pk)}, "external_reference": "EXT-1"}

    first = post(client_test, f"{OFFERS}/{offer.pk}/issue", body, HTTP_IDEMPOTENCY_KEY="issue-1")
    replay = post(client_test, f"{OFFERS}/{offer.pk}/issue", body, HTTP_IDEMPOTENCY_KEY="issue-1")

    assert first.status_code == 201, first.json()
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert IssuedOffer.objects.count() == 1
    offer.refresh_from_db()
    assert offer.issued_count == 1


def test_issue_with_a_reused_idempotency_key_and_another_body_is_a_mismatch(client_test):
    offer = OfferFactory()
    post(
        client_test,
        f"{OFFERS}/{offer.pk}/issue",
        {"contact": {"id": str(ContactFactory().pk)}},
        HTTP_IDEMPOTENCY_KEY="k",
    )

    response = post(
        client_test,
        f"{OFFERS}/{offer.pk}/issue",
        {"contact": {"id": str(ContactFactory().pk)}},
        HTTP_IDEMPOTENCY_KEY="k",
    )

    assert_error_body(response, 409, "IDEMPOTENCY_MISMATCH")
    assert IssuedOffer.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("offer_status", "reason"), [(Offer.Status.PAUSED, "offer_paused"), (Offer.Status.ARCHIVED, "offer_not_active")]
)
def test_issue_of_an_offer_that_is_not_active_is_refused(client_test, offer_status, reason):
    offer = OfferFactory(status=offer_status)

    response = post(client_test, f"{OFFERS}/{offer.pk}/issue", {"contact": {"id": str(ContactFactory().pk)}})

    assert_error(response, 409, "OFFER_NOT_AVAILABLE", "offer_id", str(offer.pk), "reasons", reason)
    assert not IssuedOffer.objects.exists()


def test_issue_of_an_ended_offer_is_refused(client_test):
    offer = OfferFactory(valid_from=timezone.now() - timedelta(days=2), valid_until=timezone.now() - timedelta(days=1))

    response = post(client_test, f"{OFFERS}/{offer.pk}/issue", {"contact": {"id": str(ContactFactory().pk)}})

    assert_error(response, 409, "OFFER_NOT_AVAILABLE", "offer_id", str(offer.pk), "reasons", "offer_ended")


def test_issue_with_a_used_external_reference_is_a_conflict(client_test):
    offer = OfferFactory()
    IssuedOfferFactory(offer=offer, external_reference="EXT-1")
    contact = ContactFactory()

    response = post(
        client_test, f"{OFFERS}/{offer.pk}/issue", {"contact": {"id": str(contact.pk)}, "external_reference": "EXT-1"}
    )

    assert_error(response, 409, "CONFLICT", "external_reference", "EXT-1")
    assert not IssuedOffer.objects.filter(contact=contact).exists()


def test_issue_of_an_unknown_offer_or_to_an_unknown_contact_is_not_found(client_test):
    offer = OfferFactory()

    unknown_offer = post(client_test, f"{OFFERS}/{UNKNOWN_ID}/issue", {"contact": {"id": str(ContactFactory().pk)}})
    unknown_contact = post(client_test, f"{OFFERS}/{offer.pk}/issue", {"contact": {"id": UNKNOWN_ID}})

    assert_error(unknown_offer, 404, "NOT_FOUND", "offer_id", UNKNOWN_ID)
    assert_error(unknown_contact, 404, "NOT_FOUND", "id", UNKNOWN_ID)
    assert not IssuedOffer.objects.exists()


# --- lock, unlock, redeem, reinstate ----------------------------------------------------------


def test_lock_binds_the_offer_and_returns_its_discount_with_the_default_ttl(client_test, time_machine):
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    issued = IssuedOfferFactory()

    response = lock(client_test, issued)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["locked_transaction_id"], body["discount"]) == ("locked", "T1", "0.50")
    assert parse_datetime(body["locked_until"]) == timezone.now() + timedelta(seconds=900)
    assert IssuedOffer.objects.get(pk=issued.pk).status == Status.LOCKED


def test_lock_with_a_ttl_sets_that_deadline(client_test, time_machine):
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    issued = IssuedOfferFactory()

    response = lock(client_test, issued, ttl_seconds=60)

    assert parse_datetime(response.json()["locked_until"]) == timezone.now() + timedelta(seconds=60)


def test_lock_repeated_by_the_same_transaction_reprices(client_test):
    issued = IssuedOfferFactory()
    lock(client_test, issued)

    response = post(
        client_test, issued_url(issued, "lock"), {"transaction_id": "T1", "basket": basket(MILK, BREAD, CHEESE)}
    )

    assert response.status_code == 200, response.json()
    assert response.json()["discount"] == "1.50"
    assert IssuedOffer.objects.get(pk=issued.pk).locked_discount == 150


def test_lock_by_another_transaction_is_refused_with_offer_locked(client_test, time_machine):
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    issued = IssuedOfferFactory()
    locked_until = lock(client_test, issued).json()["locked_until"]
    before = state(issued)

    response = lock(client_test, issued, transaction_id="T2")

    body = assert_error_body(response, 409, "OFFER_LOCKED")
    assert body["parameters"][:3] == ["id", str(issued.pk), "locked_until"]
    assert parse_datetime(body["parameters"][3]) == parse_datetime(locked_until)
    assert state(issued) == before


def test_after_the_ttl_another_transaction_locks_and_the_first_ones_redeem_is_refused(client_test, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    assert lock(client_test, issued, ttl_seconds=60).status_code == 200
    time_machine.shift(timedelta(seconds=61))

    second = lock(client_test, issued, transaction_id="T2")
    redeem = post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T1"})

    assert second.status_code == 200, second.json()
    assert_error_body(redeem, 409, "OFFER_LOCKED")
    issued.refresh_from_db()
    assert (issued.status, issued.locked_transaction_id) == (Status.LOCKED, "T2")


def test_lock_of_a_basket_the_offer_does_not_apply_to_is_refused(client_test):
    issued = IssuedOfferFactory(offer__min_spend=10_000)
    before = state(issued)

    response = lock(client_test, issued)

    assert_error(response, 409, "OFFER_NOT_APPLICABLE", "basket", "reasons", "min_spend_not_met")
    assert state(issued) == before


def test_unlock_releases_the_lock(client_test):
    issued = IssuedOfferFactory()
    lock(client_test, issued)

    response = post(client_test, issued_url(issued, "unlock"), {"transaction_id": "T1"})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["locked_transaction_id"]) == ("available", None)
    assert lock(client_test, issued, transaction_id="T2").status_code == 200


def test_unlock_by_another_transaction_is_refused(client_test):
    issued = IssuedOfferFactory()
    lock(client_test, issued)
    before = state(issued)

    response = post(client_test, issued_url(issued, "unlock"), {"transaction_id": "T2"})

    assert_error_body(response, 409, "OFFER_LOCKED")
    assert state(issued) == before


def test_lock_and_redeem_take_a_bounded_number_of_queries(client_test, django_assert_max_num_queries):
    issued = IssuedOfferFactory(offer__redemptions_per_contact=2)
    contact = {"id": str(issued.contact_id)}
    assert lock(client_test, issued).status_code == 200  # caches the key and the offer spec

    # The basket's classification; then in a transaction the offer with the contact's usage,
    # read once under its row lock (its mode and contact checked there, no read before it), and
    # its new state with the history row and the outbox event in one statement.
    with django_assert_max_num_queries(5):
        assert lock(client_test, issued, contact=contact).status_code == 200
    # The row lock; the offer's counters with the contact's usage; state, history and outbox.
    with django_assert_max_num_queries(5):
        response = post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T1", "contact": contact})
        assert response.status_code == 200

    assert OfferContactUsage.objects.get(offer_id=issued.offer_id, contact_id=issued.contact_id).redeemed_count == 1


def test_redeem_with_a_basket_returns_the_discount(client_test):
    issued = IssuedOfferFactory()

    response = post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T1", "basket": basket()})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["redeemed_transaction_id"], body["discount"]) == ("redeemed", "T1", "0.50")
    assert body["redeemed_at"] is not None
    assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 1


def test_redeem_without_transaction_or_basket_is_an_immediate_redemption(client_test):
    issued = IssuedOfferFactory()

    response = post(client_test, issued_url(issued, "redeem"), {})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["discount"]) == ("redeemed", None)


def test_redeem_through_the_lock_holder_is_allowed_and_by_another_transaction_refused(client_test):
    issued = IssuedOfferFactory()
    lock(client_test, issued)

    other = post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T2"})
    anonymous = post(client_test, issued_url(issued, "redeem"), {})
    holder = post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T1"})

    assert_error_body(other, 409, "OFFER_LOCKED")
    assert_error_body(anonymous, 409, "OFFER_LOCKED")
    assert holder.status_code == 200, holder.json()
    assert IssuedOffer.objects.get(pk=issued.pk).redeemed_discount == 50


def test_second_redeem_is_refused_with_offer_not_available(client_test):
    issued = IssuedOfferFactory()
    post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T1"})
    before = state(issued)

    response = post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T2"})

    assert_error(response, 409, "OFFER_NOT_AVAILABLE", "id", str(issued.pk), "status", "redeemed")
    assert state(issued) == before


def test_redeem_beyond_the_budget_is_refused_with_limit_exceeded(client_test):
    offer = OfferFactory(budget_count=1)
    first, second = IssuedOfferFactory(offer=offer), IssuedOfferFactory(offer=offer)
    post(client_test, issued_url(first, "redeem"), {})
    before = state(second)

    response = post(client_test, issued_url(second, "redeem"), {})

    assert_error(response, 409, "LIMIT_EXCEEDED", "offer_id", str(offer.pk), "reason", "budget_exhausted")
    assert state(second) == before


def test_redeem_naming_the_right_contact_is_allowed(client_test):
    issued = IssuedOfferFactory()
    reference = {"match_key": issued.contact.email.upper(), "match_key_type": "email"}

    response = post(client_test, issued_url(issued, "redeem"), {"contact": reference})

    assert response.status_code == 200, response.json()


def test_reinstate_undoes_a_redemption(client_test):
    issued = IssuedOfferFactory()
    post(client_test, issued_url(issued, "redeem"), {"transaction_id": "T1", "basket": basket()})

    response = post(client_test, issued_url(issued, "reinstate"), {"reason": "customer returned the goods"})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["redeemed_at"]) == ("available", None)
    offer = Offer.objects.get(pk=issued.offer_id)
    assert (offer.redeemed_count, offer.discount_given) == (0, 0)
    assert IssuedOfferTransition.objects.filter(issued_offer=issued).last().actor.startswith("api-key:")
    assert post(client_test, issued_url(issued, "redeem"), {}).status_code == 200


def test_reinstate_of_an_offer_that_is_not_redeemed_is_refused(client_test):
    issued = IssuedOfferFactory()
    before = state(issued)

    response = post(client_test, issued_url(issued, "reinstate"), {})

    assert_error(response, 409, "OFFER_NOT_AVAILABLE", "id", str(issued.pk), "status", "available")
    assert state(issued) == before


# --- bad input on lock and redeem: the precise error, and nothing changed ---------------------


BAD_BASKETS = [
    pytest.param(basket({**MILK, "unit_price": "-1.50", "amount": None}), "basket.items.0.unit_price", id="neg-price"),
    pytest.param(basket(MILK, {**BREAD, "amount": "-2.00"}), "basket.items.1.amount", id="neg-amount"),
    pytest.param(basket({**MILK, "quantity": -1}), "basket.items.0.quantity", id="neg-quantity"),
    pytest.param(basket({**MILK, "quantity": "0"}), "basket.items.0.quantity", id="zero-quantity"),
]


@pytest.mark.parametrize("action", ["lock", "redeem"])
@pytest.mark.parametrize(("bad_basket", "field"), BAD_BASKETS)
def test_negative_basket_lines_are_refused_naming_the_field_and_nothing_changes(client_test, action, bad_basket, field):
    issued = IssuedOfferFactory()
    before = state(issued)

    response = post(client_test, issued_url(issued, action), {"transaction_id": "T1", "basket": bad_basket})

    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert state(issued) == before


@pytest.mark.parametrize("action", ["lock", "redeem"])
def test_more_than_1000_basket_lines_are_refused_and_nothing_changes(client_test, action):
    issued = IssuedOfferFactory()
    before = state(issued)
    items = [{"sku": f"S{index}", "amount": "1.00"} for index in range(1001)]

    response = post(client_test, issued_url(issued, action), {"transaction_id": "T1", "basket": basket(*items)})

    assert_error(response, 400, "LIMIT_EXCEEDED", "basket.items", "limit", "1000")
    assert state(issued) == before


@pytest.mark.parametrize("action", ["lock", "unlock", "redeem", "reinstate"])
@pytest.mark.parametrize("issued_id", [UNKNOWN_ID, "not-a-uuid"])
def test_unknown_issued_offer_is_not_found(client_test, action, issued_id):
    body = {"transaction_id": "T1", "basket": basket()} if action == "lock" else {}

    response = post(client_test, issued_url(issued_id, action), body)

    assert_error(response, 404, "NOT_FOUND", "id", issued_id)


@pytest.mark.parametrize("action", ["lock", "redeem"])
@pytest.mark.parametrize("bad_basket", [None, basket({**MILK, "amount": "-3.00"})], ids=["basket-ok", "basket-bad"])
def test_naming_an_unknown_contact_is_not_found_before_anything_else_and_nothing_changes(
    client_test, action, bad_basket
):
    issued = IssuedOfferFactory()
    before = state(issued)
    body = {"transaction_id": "T1", "contact": {"id": UNKNOWN_ID}, "basket": bad_basket or basket()}

    response = post(client_test, issued_url(issued, action), body)

    assert_error(response, 404, "NOT_FOUND", "id", UNKNOWN_ID)
    assert state(issued) == before


@pytest.mark.parametrize("action", ["lock", "unlock", "redeem", "reinstate"])
def test_offer_of_another_contact_is_not_found_and_nothing_changes(client_test, action):
    issued = IssuedOfferFactory()
    if action == "unlock":
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=None)
    if action == "reinstate":
        services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1")
    before = state(issued)
    body = {"contact": {"id": str(ContactFactory().pk)}}
    if action in ("lock", "unlock", "redeem"):
        body["transaction_id"] = "T1"
    if action == "lock":
        body["basket"] = basket()

    response = post(client_test, issued_url(issued, action), body)

    assert_error(response, 404, "NOT_FOUND", "id", str(issued.pk))
    assert state(issued) == before


@pytest.mark.parametrize("ttl_seconds", [0, 29, 86_401])
def test_lock_ttl_out_of_range_is_refused_and_nothing_changes(client_test, ttl_seconds):
    issued = IssuedOfferFactory()
    before = state(issued)

    response = lock(client_test, issued, ttl_seconds=ttl_seconds)

    assert_error(response, 400, "VALIDATION_ERROR", "ttl_seconds")
    assert state(issued) == before


@pytest.mark.parametrize("ttl_seconds", ["soon", 1.5, None])
def test_lock_ttl_that_is_not_a_whole_number_is_refused(client_test, ttl_seconds):
    issued = IssuedOfferFactory()

    response = lock(client_test, issued, ttl_seconds=ttl_seconds)

    assert_error(response, 400, "VALIDATION_ERROR", "ttl_seconds")
    assert state(issued)[0] == Status.AVAILABLE


@pytest.mark.parametrize("body", [{"basket": basket()}, {"transaction_id": "", "basket": basket()}])
def test_lock_without_a_transaction_id_is_refused_and_nothing_changes(client_test, body):
    issued = IssuedOfferFactory()
    before = state(issued)

    response = post(client_test, issued_url(issued, "lock"), body)

    assert_error(response, 400, "VALIDATION_ERROR", "transaction_id")
    assert state(issued) == before


def test_lock_without_a_basket_is_refused(client_test):
    issued = IssuedOfferFactory()

    response = post(client_test, issued_url(issued, "lock"), {"transaction_id": "T1"})

    assert_error(response, 400, "VALIDATION_ERROR", "basket")
    assert state(issued)[0] == Status.AVAILABLE


def test_unknown_field_in_a_redeem_is_refused(client_test):
    issued = IssuedOfferFactory()

    response = post(client_test, issued_url(issued, "redeem"), {"transaction": "T1"})

    assert_error(response, 400, "VALIDATION_ERROR", "transaction")
    assert state(issued)[0] == Status.AVAILABLE


# --- external redemptions ---------------------------------------------------------------------


def test_external_redemption_by_id_is_created_then_repeated_idempotently(client_test):
    issued = IssuedOfferFactory(offer__is_external=True)
    body = {"issued_offer_id": str(issued.pk), "transaction_id": "EXT-1", "redeemed_at": "2025-03-01T12:00:00+01:00"}

    first = post(client_test, EXTERNAL, body)
    repeat = post(client_test, EXTERNAL, body)

    assert first.status_code == 201, first.json()
    assert (first.json()["status"], first.json()["redeemed_transaction_id"]) == ("redeemed", "EXT-1")
    assert parse_datetime(first.json()["redeemed_at"]) == parse_datetime("2025-03-01T12:00:00+01:00")
    assert repeat.status_code == 200, repeat.json()
    assert repeat.json() == first.json()
    assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 1


def test_external_redemption_by_external_reference(client_test):
    issued = IssuedOfferFactory(offer__is_external=True, external_reference="VENDOR-1")

    response = post(client_test, EXTERNAL, {"external_reference": "VENDOR-1", "transaction_id": "EXT-1"})

    assert response.status_code == 201, response.json()
    assert response.json()["id"] == str(issued.pk)


def test_external_redemption_with_an_idempotency_key_replays(client_test):
    issued = IssuedOfferFactory(external_reference="VENDOR-1")
    body = {"external_reference": "VENDOR-1", "transaction_id": "EXT-1"}

    first = post(client_test, EXTERNAL, body, HTTP_IDEMPOTENCY_KEY="ext-1")
    replay = post(client_test, EXTERNAL, body, HTTP_IDEMPOTENCY_KEY="ext-1")

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay["Idempotent-Replayed"] == "true"
    assert IssuedOfferTransition.objects.filter(issued_offer=issued, action="redeem").count() == 1


def test_external_redemption_of_an_unknown_offer_is_not_found(client_test):
    by_id = post(client_test, EXTERNAL, {"issued_offer_id": UNKNOWN_ID, "transaction_id": "EXT-1"})
    by_reference = post(client_test, EXTERNAL, {"external_reference": "NOPE", "transaction_id": "EXT-1"})

    assert_error(by_id, 404, "NOT_FOUND", "issued_offer_id", UNKNOWN_ID)
    assert_error(by_reference, 404, "NOT_FOUND", "external_reference", "NOPE")


def test_external_redemption_of_an_offer_redeemed_elsewhere_is_a_conflict(client_test):
    issued = IssuedOfferFactory(external_reference="VENDOR-1")
    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="POS-1")
    before = state(issued)

    response = post(client_test, EXTERNAL, {"external_reference": "VENDOR-1", "transaction_id": "EXT-1"})

    assert_error(response, 409, "OFFER_NOT_AVAILABLE", "transaction_id", "POS-1")
    assert state(issued) == before


@pytest.mark.parametrize(
    "body",
    [{"transaction_id": "EXT-1"}, {"issued_offer_id": UNKNOWN_ID, "external_reference": "X", "transaction_id": "E"}],
)
def test_external_redemption_needs_exactly_one_of_id_or_reference(client_test, body):
    assert_error(post(client_test, EXTERNAL, body), 400, "VALIDATION_ERROR", "issued_offer_id")


# --- management of offer definitions ----------------------------------------------------------


def offer_body(**overrides) -> dict:
    return {
        "name": "10 % dairy",
        "benefit_type": "percent_off",
        "benefit_value": "10",
        "status": "active",
        "restrictions": [{"kind": "family", "value": "dairy"}],
        **overrides,
    }


def test_management_creates_lists_reads_and_updates_offers(management_client):
    venue = VenueFactory()

    created = post(management_client, OFFERS, offer_body(venues=[str(venue.pk)], budget_count=100))
    assert created.status_code == 201, created.json()
    offer_id = created.json()["id"]
    listed = management_client.get(OFFERS)
    read = management_client.get(f"{OFFERS}/{offer_id}")
    patched = management_client.patch(
        f"{OFFERS}/{offer_id}",
        {"status": "paused", "restrictions": [{"mode": "exclude", "kind": "sku", "value": "TOBACCO"}]},
        format="json",
    )

    assert created.json()["restrictions"] == [{"mode": "include", "kind": "family", "value": "dairy"}]
    assert created.json()["venues"] == [str(venue.pk)]
    assert created.json()["counters"] == {"issued": 0, "redeemed": 0, "discount_given": 0}
    assert [item["id"] for item in listed.json()["results"]] == [offer_id]
    assert read.json() == created.json()
    assert patched.status_code == 200, patched.json()
    assert patched.json()["status"] == "paused"
    assert patched.json()["restrictions"] == [{"mode": "exclude", "kind": "sku", "value": "TOBACCO"}]
    assert patched.json()["budget_count"] == 100
    assert list(Offer.objects.get(pk=offer_id).restrictions.values_list("value", flat=True)) == ["TOBACCO"]


def test_management_create_with_an_idempotency_key_replays_the_first_response(management_client):
    first = post(
        management_client, OFFERS, offer_body(valid_until="2030-01-01T00:00:00.123456Z"), HTTP_IDEMPOTENCY_KEY="o1"
    )
    replay = post(
        management_client, OFFERS, offer_body(valid_until="2030-01-01T00:00:00.123456Z"), HTTP_IDEMPOTENCY_KEY="o1"
    )

    assert first.status_code == 201, first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert Offer.objects.count() == 1


def test_management_refuses_51_restrictions_with_limit_exceeded(management_client):
    restrictions = [{"kind": "sku", "value": f"SKU{index}"} for index in range(51)]

    response = post(management_client, OFFERS, offer_body(restrictions=restrictions))

    assert_error(response, 400, "LIMIT_EXCEEDED", "restrictions", "limit", "50")
    assert not Offer.objects.exists()


def test_management_accepts_50_restrictions(management_client):
    restrictions = [{"kind": "sku", "value": f"SKU{index}"} for index in range(50)]

    response = post(management_client, OFFERS, offer_body(restrictions=restrictions))

    assert response.status_code == 201, response.json()
    assert len(response.json()["restrictions"]) == 50


def test_management_patch_with_51_restrictions_is_refused_and_keeps_the_old_ones(management_client):
    offer_id = post(management_client, OFFERS, offer_body()).json()["id"]
    restrictions = [{"kind": "sku", "value": f"SKU{index}"} for index in range(51)]

    response = management_client.patch(f"{OFFERS}/{offer_id}", {"restrictions": restrictions}, format="json")

    assert_error(response, 400, "LIMIT_EXCEEDED", "restrictions", "limit", "50")
    assert list(Offer.objects.get(pk=offer_id).restrictions.values_list("value", flat=True)) == ["dairy"]


def test_management_refuses_an_invalid_benefit_naming_the_field(management_client):
    response = post(management_client, OFFERS, offer_body(benefit_value="150"))

    assert_error(response, 400, "VALIDATION_ERROR", "benefit_value")
    assert not Offer.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", OFFERS, None),
        ("post", OFFERS, offer_body()),
        ("get", f"{OFFERS}/{UNKNOWN_ID}", None),
        ("patch", f"{OFFERS}/{UNKNOWN_ID}", {"name": "x"}),
    ],
)
def test_integration_key_is_refused_on_offer_management(client_test, method, path, body):
    response = getattr(client_test, method)(path, body, format="json") if body else client_test.get(path)

    assert_error_body(response, 403, "PERMISSION_DENIED")
    assert not Offer.objects.exists()


def test_management_cannot_read_an_offer_of_the_other_mode(management_client):
    live_offer = OfferFactory(livemode=True)

    response = management_client.get(f"{OFFERS}/{live_offer.pk}")

    assert_error(response, 404, "NOT_FOUND", "id", str(live_offer.pk))
    assert management_client.get(OFFERS).json()["results"] == []


# --- mode isolation ---------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["lock", "unlock", "redeem", "reinstate"])
def test_live_key_cannot_touch_a_test_mode_issued_offer(client_live, action):
    issued = IssuedOfferFactory()
    before = state(issued)
    body = {"transaction_id": "T1", "basket": basket()} if action == "lock" else {}

    response = post(client_live, issued_url(issued, action), body)

    assert_error(response, 404, "NOT_FOUND", "id", str(issued.pk))
    assert state(issued) == before


def test_live_key_sees_neither_test_contacts_offers_nor_test_offer_definitions(client_live):
    issued = IssuedOfferFactory(external_reference="VENDOR-1")
    contact_id = str(issued.contact_id)

    lookup = post(client_live, LOOKUP, {"contact": {"id": contact_id}})
    wallet = client_live.get(f"/api/v1/contacts/{contact_id}/offers")
    issue = post(client_live, f"{OFFERS}/{issued.offer_id}/issue", {"contact": {"id": contact_id}})
    external = post(client_live, EXTERNAL, {"external_reference": "VENDOR-1", "transaction_id": "E"})

    assert_error(lookup, 404, "NOT_FOUND", "id", contact_id)
    assert_error(wallet, 404, "NOT_FOUND", "id", contact_id)
    assert_error(issue, 404, "NOT_FOUND", "offer_id", str(issued.offer_id))
    assert_error(external, 404, "NOT_FOUND", "external_reference", "VENDOR-1")
    assert IssuedOffer.objects.get(pk=issued.pk).status == Status.AVAILABLE


def test_live_offer_cannot_be_issued_to_a_test_contact(client_live):
    offer = OfferFactory(livemode=True)
    test_contact = ContactFactory(livemode=False)

    response = post(client_live, f"{OFFERS}/{offer.pk}/issue", {"contact": {"id": str(test_contact.pk)}})

    assert_error(response, 404, "NOT_FOUND", "id", str(test_contact.pk))
    assert not IssuedOffer.objects.exists()


def test_live_key_works_on_live_data(client_live):
    issued = IssuedOfferFactory(offer__livemode=True)

    response = post(client_live, issued_url(issued, "redeem"), {"transaction_id": "T1", "basket": basket()})

    assert response.status_code == 200, response.json()
    assert response.json()["livemode"] is True


def test_request_without_a_key_is_unauthenticated(client):
    issued = IssuedOfferFactory()

    response = client.post(issued_url(issued, "redeem"), {}, content_type="application/json")

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert state(issued)[0] == Status.AVAILABLE


def test_issued_offer_ids_in_responses_are_uuids(client_test):
    issued = IssuedOfferFactory()

    response = post(client_test, issued_url(issued, "redeem"), {})

    assert uuid.UUID(response.json()["id"]) == issued.pk
