"""POST /claims: a contact claims a receipt by its QR or barcode payload — reclaim of a stored
anonymous purchase, self-service purchase from the payload alone — and the rules: once per
receipt, within the claim window, a daily cap per contact, amounts that must agree."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from catalogue.tests.factories import MerchantFactory, VenueFactory
from core.selectors import config_cache_clear
from core.tests.assertions import assert_error_body
from loyalty.models import LedgerEntry, Program
from loyalty.services.wallets import program_for
from loyalty.tests.factories import ContactFactory
from transactions.models import Claim, Transaction, TransactionItem
from transactions.services.claims import anonymous_purchase_attach, receipt_code_readings
from transactions.tests.factories import base_rule, purchase_payload

pytestmark = pytest.mark.django_db

QR = "R-100;M-7;V-3;2500"
BARCODE = "M-7;R-100;2500;V-3"


@pytest.fixture(autouse=True)
def rule():
    return base_rule()  # 1 point per 1.00 EUR


@pytest.fixture
def venue():
    return VenueFactory(merchant=MerchantFactory(number="M-7"), number="V-3")


@pytest.fixture
def contact():
    return ContactFactory()


@pytest.fixture
def send(client_test, django_capture_on_commit_callbacks):
    def post(payload):
        with django_capture_on_commit_callbacks(execute=True):
            return client_test.post("/api/v1/transactions", payload, format="json")

    return post


@pytest.fixture
def claim(client_test, django_capture_on_commit_callbacks, contact):
    """POST /claims for `contact` (or another), processing what it queues in-process."""

    def post(code, *, by=None, client=None, **headers):
        body = {"contact": {"id": str((by or contact).pk)}, "code": code}
        with django_capture_on_commit_callbacks(execute=True):
            return (client or client_test).post("/api/v1/claims", body, format="json", **headers)

    return post


def anonymous_purchase(send, venue, *, occurred_at=None, receipt_number="R-100"):
    """30.00 of goods less a 5.00 discount (net 2500), sent without a contact."""
    payload = purchase_payload(
        venue={"merchant_number": venue.merchant.number, "number": venue.number},
        receipt_number=receipt_number,
        discounts=[{"amount": "5.00"}],
        occurred_at=(occurred_at or timezone.now()).isoformat(),
    )
    assert send(payload).status_code == 202
    txn = Transaction.objects.get(external_id="T-1")
    assert txn.status == "anonymous"
    return txn


def set_program(**fields) -> None:
    program_for(livemode=False)
    Program.objects.filter(livemode=False).update(**fields)
    config_cache_clear()


# --- reclaim -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "code_format"), [(QR, "qr"), (BARCODE, "barcode")])
def test_a_contact_reclaims_an_anonymous_purchase_by_either_code(send, claim, venue, contact, code, code_format):
    txn = anonymous_purchase(send, venue)

    response = claim(code)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["format"], body["amount"], body["currency"]) == ("reclaim", code_format, "25.00", "EUR")
    assert body["transaction"] == {"id": "T-1", "transaction_id": str(txn.pk), "status": "queued"}
    txn.refresh_from_db()
    assert (txn.status, txn.contact_id, txn.points_earned) == ("processed", contact.pk, 25)
    assert LedgerEntry.objects.get(contact=contact, kind="earn").amount == 25
    assert txn.events.filter(kind="attached").exists()


def test_a_reclaimed_purchase_is_awarded_as_of_its_own_date(send, claim, venue, contact):
    occurred_at = timezone.now() - timedelta(days=3)
    anonymous_purchase(send, venue, occurred_at=occurred_at)

    claim(QR)

    entry = LedgerEntry.objects.get(contact=contact, kind="earn")
    assert entry.occurred_at == Transaction.objects.get().occurred_at


def test_a_purchase_is_reclaimed_only_within_the_claim_window(send, claim, venue):
    set_program(claim_window_days=30)
    anonymous_purchase(send, venue)

    with time_machine.travel(timezone.now() + timedelta(days=31)):
        response = claim(QR)

    assert_error_body(response, 409, "CLAIM_WINDOW_CLOSED", ["code", "R-100", "days", "30"])
    assert Transaction.objects.get().status == "anonymous" and not Claim.objects.exists()


def test_a_purchase_is_reclaimable_until_its_window_closes(send, claim, venue):
    set_program(claim_window_days=30)
    anonymous_purchase(send, venue)

    with time_machine.travel(timezone.now() + timedelta(days=29)):
        response = claim(QR)

    assert response.status_code == 201, response.json()


def test_a_code_whose_amount_differs_from_the_stored_purchase_is_an_amount_mismatch(send, claim, venue):
    anonymous_purchase(send, venue)

    response = claim("R-100;M-7;V-3;3000")

    assert_error_body(response, 409, "AMOUNT_MISMATCH", ["code", "3000"])
    assert Transaction.objects.count() == 1 and not Claim.objects.exists()


def test_a_purchase_sent_with_a_contact_cannot_be_claimed_again(send, claim, venue):
    payload = purchase_payload(
        venue={"merchant_number": "M-7", "number": "V-3"},
        receipt_number="R-100",
        discounts=[{"amount": "5.00"}],
        contact={"id": str(ContactFactory().pk)},
    )
    send(payload)

    response = claim(QR)

    assert_error_body(response, 409, "ALREADY_CLAIMED", ["code", "R-100"])


def test_a_voided_purchase_cannot_be_claimed(send, claim, venue, client_test):
    anonymous_purchase(send, venue)
    client_test.post("/api/v1/transactions/T-1/void", {}, format="json")

    response = claim(QR)

    assert_error_body(response, 409, "NOT_CLAIMABLE", ["code", "R-100", "status", "voided"])


def test_an_anonymous_purchase_is_attached_to_a_contact_once(send, venue, contact):
    txn = anonymous_purchase(send, venue)

    first = anonymous_purchase_attach(transaction_id=txn.pk, contact=contact)
    second = anonymous_purchase_attach(transaction_id=txn.pk, contact=ContactFactory())

    txn.refresh_from_db()
    assert (first, second, txn.contact_id, txn.status) == (True, False, contact.pk, "queued")


# --- self-service ------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "code_format"), [(QR, "qr"), (BARCODE, "barcode")])
def test_a_receipt_never_sent_is_recorded_from_the_code_and_awarded_at_the_base_rate(
    claim, venue, contact, code, code_format
):
    response = claim(code)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["format"], body["amount"]) == ("self_service", code_format, "25.00")
    txn = Transaction.objects.get()
    assert txn.external_id == "claim:M-7:V-3:R-100" == body["transaction"]["id"]
    assert (txn.contact_id, txn.venue_id, txn.receipt_number, txn.currency) == (contact.pk, venue.pk, "R-100", "EUR")
    assert list(TransactionItem.objects.values_list("sku", "amount")) == [("RECEIPT", 2500)]
    assert (txn.status, txn.points_earned) == ("processed", 25)


def test_a_self_service_purchase_is_in_the_programs_currency(claim, venue):
    set_program(currency="SEK")
    base_rule(currency="SEK", name="Base SEK")

    response = claim(QR)

    assert response.json()["currency"] == "SEK" and Transaction.objects.get().currency == "SEK"


def test_a_self_service_purchase_occurs_at_the_claim_time(claim, venue):
    moment = timezone.now() - timedelta(hours=2)

    with time_machine.travel(moment, tick=False):
        claim(QR)

    assert Transaction.objects.get().occurred_at == moment


def test_self_service_claims_are_refused_when_the_program_disallows_them(claim, venue):
    set_program(self_service_claims=False)

    response = claim(QR)

    assert_error_body(response, 409, "SELF_SERVICE_CLAIMS_DISABLED", ["code", "R-100"])
    assert not Transaction.objects.exists() and not Claim.objects.exists()


def test_reclaims_still_work_when_self_service_is_disallowed(send, claim, venue):
    set_program(self_service_claims=False)
    anonymous_purchase(send, venue)

    assert claim(QR).status_code == 201


# --- once per receipt, daily cap, idempotency --------------------------------------------------


@pytest.mark.parametrize("second_code", [QR, BARCODE])
def test_a_receipt_is_claimed_once_by_anyone(send, claim, venue, second_code):
    anonymous_purchase(send, venue)
    assert claim(QR).status_code == 201

    response = claim(second_code, by=ContactFactory())

    assert_error_body(response, 409, "ALREADY_CLAIMED", ["code", "R-100"])
    assert Claim.objects.count() == 1


def test_a_self_service_receipt_is_claimed_once(claim, venue, contact):
    assert claim(BARCODE).status_code == 201

    response = claim(QR)

    assert_error_body(response, 409, "ALREADY_CLAIMED", ["code", "R-100"])
    assert Transaction.objects.count() == 1 and LedgerEntry.objects.filter(kind="earn").count() == 1


def test_a_contact_claims_at_most_the_daily_cap_in_24_hours(claim, venue, contact):
    set_program(claims_per_day=2)
    assert claim("R-1;M-7;V-3;100").status_code == 201
    assert claim("R-2;M-7;V-3;100").status_code == 201

    refused = claim("R-3;M-7;V-3;100")
    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        next_day = claim("R-3;M-7;V-3;100")

    assert_error_body(refused, 409, "LIMIT_EXCEEDED", ["contact", str(contact.pk), "limit", "2"])
    assert next_day.status_code == 201, next_day.json()


def test_the_daily_cap_is_per_contact(claim, venue):
    set_program(claims_per_day=1)
    assert claim("R-1;M-7;V-3;100").status_code == 201

    assert claim("R-2;M-7;V-3;100", by=ContactFactory()).status_code == 201


def test_a_repeat_with_the_same_idempotency_key_gets_the_first_answer(claim, venue):
    first = claim(QR, HTTP_IDEMPOTENCY_KEY="claim-1")

    again = claim(QR, HTTP_IDEMPOTENCY_KEY="claim-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Claim.objects.count() == 1


# --- reading the code --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    ["", "R-100", "R-100;M-7;V-3", "R-100;M-7;V-3;25.00", "R-100;;V-3;2500", "R-100;M-7;V-3;2500;X", "a;b;c;d"],
)
def test_a_malformed_code_is_a_validation_error_naming_code(claim, venue, code):
    response = claim(code)

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert body["parameters"][0] == "code"
    assert not Claim.objects.exists()


def test_an_unknown_merchant_is_not_found(claim, venue):
    response = claim("R-100;M-404;V-3;2500")

    assert_error_body(response, 404, "NOT_FOUND", ["merchant_number", "M-404"])


def test_an_unknown_venue_of_a_known_merchant_is_not_found(claim, venue):
    response = claim("R-100;M-7;V-404;2500")

    assert_error_body(response, 404, "NOT_FOUND", ["venue_number", "V-404"])


def test_another_modes_venue_is_not_found(claim, venue, client_live):
    response = claim(QR, by=ContactFactory(livemode=True), client=client_live)

    assert_error_body(response, 404, "NOT_FOUND", ["merchant_number", "M-7"])


def test_an_unknown_contact_is_not_found(client_test, venue):
    body = {"contact": {"id": "0b0ca7e5-0000-4000-8000-000000000000"}, "code": QR}

    response = client_test.post("/api/v1/claims", body, format="json")

    assert response.status_code == 404 and not Claim.objects.exists()


def test_the_code_is_read_by_the_position_of_the_amount():
    qr_only, barcode_only = receipt_code_readings(code=QR), receipt_code_readings(code=BARCODE)

    assert [(r.code_format, r.receipt_number, r.amount) for r in qr_only] == [("qr", "R-100", 2500)]
    assert [(r.code_format, r.receipt_number, r.amount) for r in barcode_only] == [("barcode", "R-100", 2500)]


def test_a_code_readable_both_ways_is_read_as_the_one_naming_a_stored_purchase(send, claim, contact):
    # "33;11;22;2500" is QR receipt 33 at merchant 11 venue 22, or barcode receipt 11 at merchant
    # 33 venue 2500: both venues exist, only the barcode reading names a stored purchase.
    VenueFactory(merchant=MerchantFactory(number="11"), number="22")
    stored_venue = VenueFactory(merchant=MerchantFactory(number="33"), number="2500")
    anonymous_purchase(send, stored_venue, receipt_number="11")
    Transaction.objects.filter(external_id="T-1").update(amount=22, discount_total=0)

    response = claim("33;11;22;2500")

    assert response.status_code == 201, response.json()
    assert (response.json()["kind"], response.json()["format"]) == ("reclaim", "barcode")


def test_a_code_readable_both_ways_without_stored_purchase_is_read_as_qr(claim):
    VenueFactory(merchant=MerchantFactory(number="11"), number="22")
    VenueFactory(merchant=MerchantFactory(number="33"), number="2500")

    response = claim("33;11;22;2500")

    assert (response.json()["kind"], response.json()["format"]) == ("self_service", "qr")
    assert Transaction.objects.get().external_id == "claim:11:22:33"
