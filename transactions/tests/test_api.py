"""The Transactions section of the contract over HTTP: POST /transactions (202 `queued`,
idempotent on `id`, limits, no negative amounts, finalize, spend), GET /transactions/{id},
POST /transactions/{id}/void, POST /returns, unmatched purchases collected through
POST/PATCH /contacts, and mode isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from catalogue.tests.factories import VenueFactory
from core.models import OutboxEvent
from core.tests.assertions import assert_error_body
from loyalty.models import Account, LedgerEntry, Payout, SpendToken
from loyalty.services.ledger import Cause
from loyalty.services.wallets import money_credit, program_for, spend_token_issue
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer
from offers.tests.factories import IssuedOfferFactory
from transactions.models import Return, Transaction, TransactionDiscount, TransactionItem
from transactions.tests.factories import base_rule, locked_offer, purchase_payload

pytestmark = pytest.mark.django_db

UNKNOWN_ID = "0b0ca7e5-0000-4000-8000-000000000000"


@pytest.fixture
def rule():
    return base_rule()


@pytest.fixture
def contact():
    return ContactFactory(livemode=False)


@pytest.fixture
def send(client_test, django_capture_on_commit_callbacks):
    """POST /transactions with the test key, processing what it queues in-process."""

    def post(payload, client=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (client or client_test).post("/api/v1/transactions", payload, format="json")

    return post


def by_id(contact) -> dict:
    return {"id": str(contact.pk)}


def open_balance(contact, amount=5000) -> None:
    money_credit(contact=contact, kind="open", currency="EUR", amount=amount, cause=Cause("system", "s", "seed"))


def assert_nothing_stored() -> None:
    assert not Transaction.objects.exists()
    assert not TransactionItem.objects.exists()
    assert not TransactionDiscount.objects.exists()
    assert not LedgerEntry.objects.filter(source_type="transaction").exists()
    assert not Payout.objects.exists()


# --- POST /transactions -----------------------------------------------------------------------


def test_a_purchase_is_answered_202_queued_then_processed(send, client_test, contact, rule):
    response = send(purchase_payload(contact=by_id(contact)))

    assert response.status_code == 202, response.json()
    body = response.json()
    txn = Transaction.objects.get()
    assert body == {
        "id": "T-1",
        "transaction_id": str(txn.pk),
        "status": "queued",
        "livemode": False,
        "contact_id": str(contact.pk),
        "spend": None,
        "redeemed_offers": [],
        "receipt_code": None,
    }
    assert txn.status == "processed" and txn.points_earned == 30
    assert txn.tax_total == 600 and txn.payments == [{"method": "card", "amount": 3000}]


def test_a_repeat_of_the_same_purchase_gets_the_first_answer(send, contact, rule):
    first = send(purchase_payload(contact=by_id(contact)))

    again = send(purchase_payload(contact=by_id(contact)))

    assert again.status_code == 202 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Transaction.objects.count() == 1
    assert LedgerEntry.objects.filter(contact=contact).count() == 1


def test_the_same_id_with_another_payload_is_409_idempotency_mismatch(send, contact, rule):
    send(purchase_payload(contact=by_id(contact)))

    other = send(purchase_payload(contact=by_id(contact), tax_total="5.00"))

    assert_error_body(other, 409, "IDEMPOTENCY_MISMATCH", ["id", "T-1"])
    assert Transaction.objects.get().tax_total == 600


def test_a_purchase_needs_an_api_key(client, contact):
    response = client.post(
        "/api/v1/transactions", purchase_payload(contact=by_id(contact)), content_type="application/json"
    )

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert_nothing_stored()


def test_an_unknown_contact_id_is_404_and_nothing_is_stored(send):
    response = send(purchase_payload(contact={"id": UNKNOWN_ID}))

    assert_error_body(response, 404, "NOT_FOUND", ["id", UNKNOWN_ID])
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "id"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"currency": "XXX"}, "currency"),
        ({"items": None}, "items"),
        ({"channel": "fax"}, "channel"),
        ({"colour": "red"}, "colour"),
        ({"items": [{"sku": "A", "amount": "1.00", "colour": "red"}]}, "items.0.colour"),
        ({"items": [{"sku": "A", "amount": "1.001"}]}, "items.0.amount"),
        ({"items": [{"sku": "A\x00B", "amount": "1.00"}]}, "items.0.sku"),
        ({"discounts": [{"amount": "1.00", "issued_offer_id": "nope"}]}, "discounts.0.issued_offer_id"),
        ({"custom": ["not", "an", "object"]}, "custom"),
        ({"venue": UNKNOWN_ID}, "venue"),
        ({"venue": {"merchant_number": "M1", "number": "V9"}}, "venue"),
    ],
)
def test_an_invalid_purchase_is_400_naming_the_field_and_nothing_is_stored(send, contact, change, field):
    response = send(purchase_payload(contact=by_id(contact), **change))

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert body["parameters"][0] == field, body
    assert_nothing_stored()


def test_a_purchase_names_its_venue_by_id_or_by_the_numbers_on_the_receipt(send, contact):
    venue = VenueFactory()
    by_numbers = {"merchant_number": venue.merchant.number, "number": venue.number}

    first = send(purchase_payload("T-1", contact=by_id(contact), venue=str(venue.pk)))
    second = send(purchase_payload("T-2", contact=by_id(contact), venue=by_numbers))

    assert (first.status_code, second.status_code) == (202, 202)
    assert set(Transaction.objects.values_list("venue_id", flat=True)) == {venue.pk}


# --- limits and negative amounts --------------------------------------------------------------


def items(count):
    return [{"sku": f"S{n}", "amount": "1.00"} for n in range(count)]


def custom(elements):
    return {f"key{n}": n for n in range(elements)}


@pytest.mark.parametrize(
    ("field", "limit", "make"),
    [
        ("items", 1000, lambda n: {"items": items(n), "payments": [], "tax_total": "0"}),
        ("discounts", 100, lambda n: {"items": items(200), "discounts": [{"amount": "0.01"}] * n}),
        ("payments", 100, lambda n: {"payments": [{"method": "card", "amount": "0.01"}] * n}),
        ("custom", 1000, lambda n: {"custom": custom(n)}),
    ],
)
def test_a_purchase_over_a_limit_is_400_limit_exceeded_naming_the_field(send, contact, field, limit, make):
    over = send(purchase_payload("OVER", contact=by_id(contact), **make(limit + 1)))

    assert_error_body(over, 400, "LIMIT_EXCEEDED", [field, "limit", str(limit)])
    assert_nothing_stored()
    at_limit = send(purchase_payload("AT-LIMIT", contact=by_id(contact), **make(limit)))
    assert at_limit.status_code == 202, at_limit.json()


def test_nested_custom_data_counts_every_element(send, contact):
    nested = {"lines": [{"a": 1, "b": 2}] * 334}  # 1 + 334 + 668 elements

    response = send(purchase_payload(contact=by_id(contact), custom=nested))

    assert_error_body(response, 400, "LIMIT_EXCEEDED", ["custom", "limit", "1000"])


def negative_line(index, name):
    lines = items(5)
    lines[index] = {**lines[index], name: "-1.00"}
    return {"items": lines}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (negative_line(3, "amount"), "items.3.amount"),
        (negative_line(0, "unit_price"), "items.0.unit_price"),
        (negative_line(1, "tax_included"), "items.1.tax_included"),
        ({"discounts": [{"amount": "-1.00"}]}, "discounts.0.amount"),
        ({"discounts": [{"amount": "1.00"}, {"amount": -2}]}, "discounts.1.amount"),
        ({"payments": [{"method": "card", "amount": "-30.00"}]}, "payments.0.amount"),
        ({"tax_total": "-0.01"}, "tax_total"),
        ({"spend": {"amount": "-5.00", "reduction": "front_end"}}, "spend.amount"),
        ({"spend": {"amount": "0.00", "reduction": "front_end"}}, "spend.amount"),
    ],
)
def test_a_negative_amount_anywhere_is_400_naming_the_field(send, contact, change, field):
    response = send(purchase_payload(contact=by_id(contact), **change))

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert body["parameters"] == [field], body
    assert_nothing_stored()


def test_discounts_larger_than_the_purchase_are_400(send, contact):
    response = send(purchase_payload(contact=by_id(contact), lines=1, discounts=[{"amount": "10.01"}]))

    assert_error_body(response, 400, "VALIDATION_ERROR", ["discounts"])
    assert_nothing_stored()


def test_a_thousand_line_purchase_takes_a_bounded_number_of_queries(
    client_test, contact, django_assert_max_num_queries
):
    payload = purchase_payload(contact=by_id(contact), items=items(1000), payments=[], tax_total="0")

    with django_assert_max_num_queries(15):
        response = client_test.post("/api/v1/transactions", payload, format="json")

    assert response.status_code == 202
    assert TransactionItem.objects.count() == 1000


def test_a_plain_purchase_is_stored_with_its_lines_and_history_by_one_statement(
    client_test, contact, django_assert_num_queries
):
    """The lines travel as one JSON document in the purchase's own INSERT: every value arrives
    as sent (quantities as decimals, prices in minor units, no unit price as NULL), and the
    queries are the contact's read and that statement."""
    lines = [
        {"sku": "A", "quantity": 2, "unit_price": "1.25", "amount": "2.50", "tax_included": "0.50"},
        {"sku": "B", "quantity": "0.5", "amount": "3.00", "family": "dairy", "brand": "Arla"},
        {"sku": "C", "amount": "1.00"},
    ]
    client_test.post("/api/v1/transactions", purchase_payload(id="T-warm", contact=by_id(contact)), format="json")
    with django_assert_num_queries(2):
        response = client_test.post(
            "/api/v1/transactions",
            purchase_payload(id="T-plain", contact=by_id(contact), items=lines, payments=[], tax_total="0"),
            format="json",
        )

    assert response.status_code == 202, response.json()
    stored = Transaction.objects.get(external_id="T-plain")
    assert list(stored.events.values_list("kind", flat=True)) == ["received"]
    assert [
        (i.line_number, i.sku, i.quantity, i.unit_price, i.amount, i.tax_included, i.family, i.brand)
        for i in stored.items.order_by("line_number")
    ] == [
        (0, "A", Decimal(2), 125, 250, 50, "", ""),
        (1, "B", Decimal("0.5"), None, 300, 0, "dairy", "Arla"),
        (2, "C", Decimal(1), None, 100, 0, "", ""),
    ]
    assert stored.amount == 650


# --- finalize ---------------------------------------------------------------------------------


def test_a_discount_naming_an_offer_this_transaction_locked_over_the_api_redeems_it(send, client_test, contact, rule):
    issued = IssuedOfferFactory(contact=contact)
    lock = client_test.post(
        f"/api/v1/issued-offers/{issued.pk}/lock",
        {"transaction_id": "T-1", "basket": {"currency": "EUR", "items": [{"sku": "SKU0", "amount": "10.00"}]}},
        format="json",
    )
    assert lock.status_code == 200, lock.json()

    response = send(
        purchase_payload(
            contact=by_id(contact), lines=1, discounts=[{"amount": "1.00", "issued_offer_id": str(issued.pk)}]
        )
    )

    assert response.status_code == 202, response.json()
    assert response.json()["redeemed_offers"] == [str(issued.pk)]
    issued.refresh_from_db()
    assert issued.status == "redeemed" and issued.redeemed_transaction_id == "T-1"
    assert Transaction.objects.get().points_earned == 9


def test_an_offer_locked_by_another_transaction_is_409_and_nothing_is_stored(send, contact):
    open_balance(contact)
    issued, _ = locked_offer(contact=contact, transaction_id="OTHER")

    response = send(
        purchase_payload(
            contact=by_id(contact),
            lines=1,
            discounts=[{"amount": "1.00", "issued_offer_id": str(issued.pk)}],
            spend={"amount": "2.00", "reduction": "front_end"},
        )
    )

    assert_error_body(response, 409, "OFFER_LOCKED", ["discounts.0.issued_offer_id", str(issued.pk)])
    assert_nothing_stored()
    assert IssuedOffer.objects.get().status == "locked"
    assert Account.objects.get(contact=contact, kind="open").balance == 5000


def test_an_offer_whose_lock_expired_is_409_and_nothing_is_stored(send, contact):
    issued, _ = locked_offer(contact=contact, transaction_id="T-1", ttl_seconds=30)

    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        response = send(
            purchase_payload(
                contact=by_id(contact), lines=1, discounts=[{"amount": "1.00", "issued_offer_id": str(issued.pk)}]
            )
        )

    body = assert_error_body(response, 409, "OFFER_NOT_AVAILABLE")
    assert body["parameters"][:2] == ["discounts.0.issued_offer_id", str(issued.pk)]
    assert_nothing_stored()
    assert not OutboxEvent.objects.filter(event_type="offer.redeemed").exists()


# --- spend ------------------------------------------------------------------------------------


def test_a_front_end_spend_is_answered_with_the_approved_amount(send, client_test, contact, rule):
    open_balance(contact, 700)

    response = send(purchase_payload(contact=by_id(contact), spend={"amount": "10.00", "reduction": "front_end"}))

    assert response.status_code == 202, response.json()
    spend = response.json()["spend"]
    assert (spend["requested"], spend["approved"], spend["currency"], spend["payout_id"]) == (
        "10.00",
        "7.00",
        "EUR",
        None,
    )
    detail = client_test.get("/api/v1/transactions/T-1").json()
    assert detail["spend"] == {"requested": "10.00", "approved": "7.00", "reduction": "front_end"}
    assert [(entry["kind"], entry["amount"]) for entry in detail["spends"]] == [("spend", "-7.00")]


def test_a_back_end_spend_is_answered_with_its_pending_payout(send, contact, rule):
    open_balance(contact)

    response = send(purchase_payload(contact=by_id(contact), spend={"amount": "12.00", "reduction": "back_end"}))

    payout = Payout.objects.get()
    assert response.json()["spend"]["payout_id"] == str(payout.pk) and payout.status == "pending"


def test_a_wrong_otp_is_400_counts_the_attempt_and_stores_nothing(send, contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    open_balance(contact)
    token, code = spend_token_issue(contact=contact)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    response = send(
        purchase_payload(contact=by_id(contact), spend={"amount": "5.00", "otp": wrong, "reduction": "front_end"})
    )

    assert_error_body(response, 400, "OTP_INVALID", ["spend.otp", "attempts_left", "4"])
    assert SpendToken.objects.get(pk=token.pk).attempts == 1
    assert_nothing_stored()


def test_a_spend_without_otp_is_400_when_the_program_requires_one(send, contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    open_balance(contact)

    response = send(purchase_payload(contact=by_id(contact), spend={"amount": "5.00", "reduction": "front_end"}))

    assert_error_body(response, 400, "OTP_REQUIRED", ["spend.otp"])
    assert_nothing_stored()


def test_a_spend_with_the_right_otp_is_approved(send, contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    open_balance(contact)
    _, code = spend_token_issue(contact=contact)

    response = send(
        purchase_payload(contact=by_id(contact), spend={"amount": "5.00", "otp": code, "reduction": "front_end"})
    )

    assert response.status_code == 202 and response.json()["spend"]["approved"] == "5.00"


@pytest.mark.parametrize("contact_reference", [None, {"match_key": "+46709999999", "match_key_type": "mobile_phone"}])
def test_a_spend_without_a_known_contact_is_400(send, contact_reference):
    payload = purchase_payload(spend={"amount": "5.00", "reduction": "front_end"})
    if contact_reference:
        payload["contact"] = contact_reference

    assert_error_body(send(payload), 400, "VALIDATION_ERROR", ["spend"])
    assert_nothing_stored()


# --- GET /transactions/{id} and void ----------------------------------------------------------


def test_get_a_transaction_shows_status_awards_and_spends(send, client_test, contact, rule):
    send(purchase_payload(contact=by_id(contact)))

    response = client_test.get("/api/v1/transactions/T-1")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["points_earned"], body["amount"]) == ("T-1", "processed", 30, "30.00")
    assert [(award["kind"], award["account"], award["amount"]) for award in body["awards"]] == [("earn", "points", 30)]
    assert body["spends"] == []


def test_get_an_unknown_transaction_is_404(client_test):
    assert_error_body(client_test.get("/api/v1/transactions/NOPE"), 404, "NOT_FOUND", ["id", "NOPE"])


def test_void_over_the_api_reverses_everything_and_answers_the_same_when_repeated(
    send, client_test, contact, rule, django_capture_on_commit_callbacks
):
    open_balance(contact)
    send(purchase_payload(contact=by_id(contact), spend={"amount": "5.00", "reduction": "front_end"}))

    first = client_test.post("/api/v1/transactions/T-1/void", {"reason": "till error"}, format="json")
    again = client_test.post("/api/v1/transactions/T-1/void", {}, format="json")

    assert first.status_code == 200 and first.json()["status"] == "voided"
    assert again.status_code == 200 and again.json() == first.json()
    assert Account.objects.get(contact=contact, kind="points").balance == 0
    assert Account.objects.get(contact=contact, kind="open").balance == 5000
    assert OutboxEvent.objects.filter(event_type="transaction.voided").count() == 1


def test_void_of_an_unknown_transaction_is_404(client_test):
    assert_error_body(client_test.post("/api/v1/transactions/NOPE/void", {}, format="json"), 404, "NOT_FOUND")


# --- mode isolation ---------------------------------------------------------------------------


def test_a_live_key_cannot_see_void_or_return_a_test_transaction(send, client_live, contact, rule):
    send(purchase_payload(contact=by_id(contact)))

    assert_error_body(client_live.get("/api/v1/transactions/T-1"), 404, "NOT_FOUND", ["id", "T-1"])
    void = client_live.post("/api/v1/transactions/T-1/void", {}, format="json")
    assert_error_body(void, 404, "NOT_FOUND", ["id", "T-1"])
    returned = client_live.post(
        "/api/v1/returns", {"id": "R-1", "transaction_id": "T-1", "items": [{"sku": "SKU0"}]}, format="json"
    )
    assert_error_body(returned, 404, "NOT_FOUND", ["transaction_id", "T-1"])
    txn = Transaction.objects.get()
    assert txn.status == "processed" and not txn.items.filter(returned_quantity__gt=0).exists()


def test_the_same_id_sent_with_a_live_key_is_a_separate_live_purchase(send, client_live, contact, rule):
    send(purchase_payload(contact=by_id(contact)))

    live = send(purchase_payload(lines=1), client=client_live)

    assert live.status_code == 202 and live.json()["livemode"] is True
    assert sorted(Transaction.objects.values_list("livemode", flat=True)) == [False, True]


def test_a_live_key_cannot_name_a_test_contact(send, client_live, contact):
    response = send(purchase_payload(contact=by_id(contact)), client=client_live)

    assert_error_body(response, 404, "NOT_FOUND", ["id", str(contact.pk)])


# --- late purchases ---------------------------------------------------------------------------


def test_a_late_purchase_is_processed_under_the_rules_in_force_when_it_occurred(send, contact):
    now = timezone.now()
    base_rule(name="Old", points_per_unit="1", valid_until=now - timedelta(hours=6))
    base_rule(name="New", points_per_unit="2", valid_from=now - timedelta(hours=6))

    send(purchase_payload("LATE", contact=by_id(contact), occurred_at=(now - timedelta(hours=30)).isoformat()))
    send(purchase_payload("FRESH", contact=by_id(contact), occurred_at=now.isoformat()))

    earned = dict(Transaction.objects.values_list("external_id", "points_earned"))
    assert earned == {"LATE": 30, "FRESH": 60}


# --- returns ----------------------------------------------------------------------------------


def test_a_return_against_a_purchase_is_201_and_idempotent_on_its_id(send, client_test, contact, rule):
    send(purchase_payload(contact=by_id(contact)))
    payload = {"id": "R-1", "transaction_id": "T-1", "items": [{"sku": "SKU1", "quantity": 1}]}

    first = client_test.post("/api/v1/returns", payload, format="json")
    again = client_test.post("/api/v1/returns", payload, format="json")
    other = client_test.post("/api/v1/returns", {**payload, "items": [{"sku": "SKU2", "quantity": 1}]}, format="json")

    assert first.status_code == 201, first.json()
    body = first.json()
    assert (body["id"], body["transaction_id"], body["amount"], body["points_reversed"]) == ("R-1", "T-1", "10.00", 10)
    assert again.status_code == 200 and again.json() == body
    assert_error_body(other, 409, "IDEMPOTENCY_MISMATCH", ["id", "R-1"])
    assert Return.objects.count() == 1
    assert Account.objects.get(contact=contact, kind="points").balance == 20


def test_a_return_of_more_than_was_bought_is_400(send, client_test, contact, rule):
    send(purchase_payload(contact=by_id(contact)))

    response = client_test.post(
        "/api/v1/returns",
        {"id": "R-1", "transaction_id": "T-1", "items": [{"sku": "SKU1", "quantity": 2}]},
        format="json",
    )

    assert_error_body(response, 400, "VALIDATION_ERROR", ["items.0.quantity"])
    assert not Return.objects.exists()


def test_an_ad_hoc_return_is_201_at_the_base_rate(client_test, contact, rule):
    from loyalty.services.wallets import points_earn

    points_earn(contact=contact, points=100, cause=Cause("system", "seed", "seed"))

    response = client_test.post(
        "/api/v1/returns",
        {"id": "R-1", "contact": by_id(contact), "amount": "12.50", "currency": "EUR"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert (response.json()["points_reversed"], response.json()["amount"]) == (12, "12.50")
    assert response.json()["transaction_id"] is None


@pytest.mark.parametrize(
    ("payload", "status", "code", "parameters"),
    [
        ({"id": "R-1", "amount": "5.00"}, 400, "VALIDATION_ERROR", ["currency"]),
        ({"id": "R-1", "amount": "-5.00", "currency": "EUR"}, 400, "VALIDATION_ERROR", ["amount"]),
        (
            {"id": "R-1", "transaction_id": "NOPE", "items": [{"sku": "A"}]},
            404,
            "NOT_FOUND",
            ["transaction_id", "NOPE"],
        ),
        (
            {"id": "R-1", "transaction_id": "T-1", "items": [{"sku": "SKU0", "quantity": 0}]},
            400,
            "VALIDATION_ERROR",
            ["items.0.quantity"],
        ),
    ],
)
def test_an_invalid_return_is_refused_naming_the_field(
    send, client_test, contact, rule, payload, status, code, parameters
):
    send(purchase_payload(contact=by_id(contact)))

    response = client_test.post("/api/v1/returns", payload, format="json")

    assert_error_body(response, status, code, parameters)
    assert not Return.objects.exists()


# --- unmatched purchases collected through the contacts API ----------------------------------


def test_an_unmatched_purchase_is_processed_once_the_contact_registers_with_that_email(
    send, client_test, rule, django_capture_on_commit_callbacks
):
    send(purchase_payload(contact={"match_key": "New.Member@Example.com", "match_key_type": "email"}))
    assert Transaction.objects.get().status == "unmatched"

    with django_capture_on_commit_callbacks(execute=True):
        created = client_test.post("/api/v1/contacts", {"email": "new.member@example.com"}, format="json")

    assert created.status_code == 201, created.json()
    txn = Transaction.objects.get()
    assert (txn.status, str(txn.contact_id), txn.points_earned) == ("processed", created.json()["id"], 30)


def test_an_unmatched_purchase_is_processed_once_a_contact_patches_in_that_phone(
    send, client_test, contact, rule, django_capture_on_commit_callbacks
):
    send(purchase_payload(contact={"match_key": "+46 70 123 45 67", "match_key_type": "mobile_phone"}))

    with django_capture_on_commit_callbacks(execute=True):
        patched = client_test.patch(f"/api/v1/contacts/{contact.pk}", {"mobile_phone": "0701234567"}, format="json")

    assert patched.status_code == 200, patched.json()
    txn = Transaction.objects.get()
    assert (txn.status, txn.contact_id) == ("processed", contact.pk)
    assert LedgerEntry.objects.filter(contact=contact, kind="earn").count() == 1


def test_an_unmatched_purchase_is_processed_once_a_contact_patches_in_that_external_id(
    send, client_test, contact, rule, django_capture_on_commit_callbacks
):
    send(purchase_payload(contact={"match_key": "W-77", "match_key_type": "external_id", "source": "web"}))

    with django_capture_on_commit_callbacks(execute=True):
        patched = client_test.patch(
            f"/api/v1/contacts/{contact.pk}", {"external_ids": [{"source": "web", "id": "W-77"}]}, format="json"
        )
    with django_capture_on_commit_callbacks(execute=True):
        client_test.patch(f"/api/v1/contacts/{contact.pk}", {"first_name": "Again"}, format="json")

    assert patched.status_code == 200, patched.json()
    txn = Transaction.objects.get()
    assert (txn.status, txn.contact_id) == ("processed", contact.pk)
    assert LedgerEntry.objects.filter(contact=contact, kind="earn").count() == 1
    assert OutboxEvent.objects.filter(event_type="transaction.processed").count() == 1


def test_an_anonymous_purchase_is_accepted_and_earns_nothing(send, client_test, rule):
    response = send(purchase_payload(occurred_at=datetime(2026, 1, 2, 9, 30, tzinfo=UTC).isoformat()))

    assert response.status_code == 202 and response.json()["contact_id"] is None
    assert client_test.get("/api/v1/transactions/T-1").json()["status"] == "anonymous"
    assert not LedgerEntry.objects.exists()
