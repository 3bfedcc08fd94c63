"""Receipt codes: the QR and barcode payloads answered for a purchase sent without a contact,
and GET /transactions/{id}/receipt-code.svg|png rendering them for the till."""

from __future__ import annotations

import pytest

from catalogue.tests.factories import MerchantFactory, VenueFactory
from core.tests.assertions import assert_error_body
from loyalty.tests.factories import ContactFactory
from transactions.models import Transaction
from transactions.tests.factories import base_rule, purchase_payload

pytestmark = pytest.mark.django_db

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def venue():
    return VenueFactory(merchant=MerchantFactory(number="M-7"), number="V-3")


@pytest.fixture
def send(client_test, django_capture_on_commit_callbacks):
    def post(payload, client=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (client or client_test).post("/api/v1/transactions", payload, format="json")

    return post


def at_venue(venue) -> dict:
    return {"merchant_number": venue.merchant.number, "number": venue.number}


def anonymous_purchase(send, venue, external_id="T-1", **extra):
    """30.00 of goods less a 5.00 discount: a net amount of 2500 minor units."""
    payload = purchase_payload(
        external_id, venue=at_venue(venue), receipt_number="R-100", discounts=[{"amount": "5.00"}], **extra
    )
    response = send(payload)
    assert response.status_code == 202, response.json()
    return response


# --- the answer to POST /transactions ----------------------------------------------------------


def test_a_purchase_without_contact_is_answered_its_qr_and_barcode_payloads_of_the_net_amount(send, venue):
    response = anonymous_purchase(send, venue)

    assert response.json()["receipt_code"] == {"qr": "R-100;M-7;V-3;2500", "barcode": "M-7;R-100;2500;V-3"}
    assert Transaction.objects.get().response["receipt_code"]["qr"] == "R-100;M-7;V-3;2500"


def test_a_replayed_purchase_answers_the_same_receipt_code(send, venue):
    first = anonymous_purchase(send, venue)

    again = anonymous_purchase(send, venue)

    assert again.json()["receipt_code"] == first.json()["receipt_code"] is not None


def test_a_purchase_with_a_contact_has_no_receipt_code(send, venue):
    contact = ContactFactory()
    base_rule()

    response = anonymous_purchase(send, venue, contact={"id": str(contact.pk)})

    assert response.json()["receipt_code"] is None


def test_a_purchase_waiting_for_an_unknown_identifier_has_no_receipt_code(send, venue):
    reference = {"match_key": "+46700000999", "match_key_type": "mobile_phone"}

    response = anonymous_purchase(send, venue, contact=reference)

    assert response.json()["receipt_code"] is None


@pytest.mark.parametrize("missing", ["venue", "receipt_number"])
def test_a_purchase_without_venue_or_receipt_number_has_no_receipt_code(send, venue, missing):
    payload = purchase_payload(venue=at_venue(venue), receipt_number="R-100")
    del payload[missing]

    response = send(payload)

    assert response.status_code == 202 and response.json()["receipt_code"] is None


# --- GET /transactions/{id}/receipt-code.svg|png -----------------------------------------------


def test_the_qr_code_is_rendered_as_svg_by_default(send, venue, client_test):
    anonymous_purchase(send, venue)

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.svg")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg") and b"segno" in response.content


def test_the_barcode_is_rendered_as_svg_carrying_its_payload(send, venue, client_test):
    anonymous_purchase(send, venue)

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.svg?format=barcode")

    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
    assert b"M-7;R-100;2500;V-3" in response.content  # the human-readable line under the bars


@pytest.mark.parametrize("code_format", ["qr", "barcode"])
def test_either_code_is_rendered_as_png(send, venue, client_test, code_format):
    anonymous_purchase(send, venue)

    response = client_test.get(f"/api/v1/transactions/T-1/receipt-code.png?format={code_format}")

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)


def test_a_till_asking_for_an_image_gets_it(send, venue, client_test):
    anonymous_purchase(send, venue)

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.png", HTTP_ACCEPT="image/png")

    assert response.status_code == 200 and response.content.startswith(PNG_MAGIC)


def test_the_receipt_code_of_an_unknown_purchase_is_a_json_404(client_test):
    response = client_test.get("/api/v1/transactions/NOPE/receipt-code.svg", HTTP_ACCEPT="image/svg+xml")

    assert_error_body(response, 404, "NOT_FOUND", ["id", "NOPE"])


def test_another_modes_purchase_has_no_receipt_code_here(send, venue, client_live):
    anonymous_purchase(send, venue)

    response = client_live.get("/api/v1/transactions/T-1/receipt-code.png")

    assert_error_body(response, 404, "NOT_FOUND", ["id", "T-1"])


def test_a_purchase_with_a_contact_has_no_receipt_code_to_render(send, venue, client_test):
    base_rule()
    anonymous_purchase(send, venue, contact={"id": str(ContactFactory().pk)})

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.svg")

    assert_error_body(response, 409, "NO_RECEIPT_CODE", ["id", "T-1"])


def test_a_purchase_without_receipt_number_has_no_receipt_code_to_render(send, venue, client_test):
    send(purchase_payload(venue=at_venue(venue)))

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.png?format=barcode")

    assert_error_body(response, 409, "NO_RECEIPT_CODE", ["id", "T-1"])


def test_an_unknown_code_format_is_a_validation_error(send, venue, client_test):
    anonymous_purchase(send, venue)

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.svg?format=ean13")

    assert_error_body(response, 400, "VALIDATION_ERROR", ["format", "ean13"])


def test_an_unknown_image_type_is_a_validation_error(send, venue, client_test):
    anonymous_purchase(send, venue)

    response = client_test.get("/api/v1/transactions/T-1/receipt-code.gif")

    assert_error_body(response, 400, "VALIDATION_ERROR", ["extension", "gif"])


def test_the_receipt_code_needs_an_api_key(send, venue, client):
    anonymous_purchase(send, venue)

    response = client.get("/api/v1/transactions/T-1/receipt-code.svg")

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")
