"""External offers: `offer.issued` carries the message rendered from the offer's message variant;
the variant is validated the same way in the admin and the management API; issued external
offers that were never reconciled show up in the admin."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.exceptions import ValidationError
from core.models import MessageVariant, OutboxEvent
from core.services import message_variant_create
from core.tests.assertions import assert_error_body
from loyalty.tests.factories import ContactFactory
from offers import selectors
from offers.admin import OfferForm
from offers.models import IssuedOffer, Offer
from offers.services import definitions, issued
from offers.tests.factories import IssuedOfferFactory, OfferFactory

pytestmark = pytest.mark.django_db

OFFERS = "/api/v1/offers"
SMS = {
    "to": "{{ contact.mobile_phone }}",
    "member": "{{ contact.member_number }}",
    "text": "Hi {{ contact.first_name }}: {{ offer.name }} ({{ offer.benefit_value }} %) "
    "until {{ issued_offer.expires_at }}",
    "code": "{{ issued_offer.external_reference }}",
    "offer": {"id": "{{ offer.id }}", "image": "{{ offer.image_url }}"},
    "unknown": "{{ campaign.name }}",
}


@pytest.fixture
def sms_variant():
    return message_variant_create(livemode=False, name="sms", template=SMS)


# --- offer.issued carries the message ------------------------------------------------------------


def test_issuing_an_external_offer_with_a_variant_sends_the_rendered_message(sms_variant):
    offer = OfferFactory(name="Coffee", benefit_value=Decimal("10.0000"), is_external=True, message_variant=sms_variant)
    contact = ContactFactory(first_name="Ana", mobile_phone="+46707234567")
    expires_at = timezone.now() + timedelta(days=30)

    issued_offer = issued.issued_offer_issue(
        offer=offer, contact=contact, expires_at=expires_at, external_reference="VENDOR-9"
    )

    payload = OutboxEvent.objects.get(event_type="offer.issued").payload
    assert payload["issued_offer_id"] == str(issued_offer.pk)
    assert payload["message"] == {
        "to": "+46707234567",
        "member": contact.member_number,
        "text": f"Hi Ana: Coffee (10 %) until {expires_at.isoformat()}",
        "code": "VENDOR-9",
        "offer": {"id": str(offer.pk), "image": ""},
        "unknown": None,  # a fact the event does not have renders as null
    }


def test_an_external_offer_without_a_variant_is_announced_without_a_message():
    offer = OfferFactory(is_external=True)

    issued.issued_offer_issue(offer=offer, contact=ContactFactory())

    assert "message" not in OutboxEvent.objects.get(event_type="offer.issued").payload


def test_the_message_follows_the_variant_as_it_is_at_issue_time(sms_variant):
    offer = OfferFactory(is_external=True, message_variant=sms_variant)
    MessageVariant.objects.filter(pk=sms_variant.pk).update(template={"hello": "{{ contact.last_name }}"})
    offer.refresh_from_db()
    contact = ContactFactory(last_name="Lind")

    issued.issued_offer_issue(offer=offer, contact=contact)

    assert OutboxEvent.objects.get(event_type="offer.issued").payload["message"] == {"hello": "Lind"}


# --- the variant is validated ---------------------------------------------------------------------


def test_only_external_offers_take_a_message_variant(sms_variant):
    offer = OfferFactory.build(is_external=False, message_variant=sms_variant)

    with pytest.raises(ValidationError) as refused:
        definitions.check_offer(offer)

    assert refused.value.parameters[0]["name"] == "message_variant"


def test_a_variant_of_the_other_mode_is_refused():
    live_variant = message_variant_create(livemode=True, name="sms", template=SMS)

    with pytest.raises(ValidationError) as refused:
        definitions.offer_create(
            livemode=False,
            name="Coffee",
            benefit_type="percent_off",
            benefit_value=Decimal(10),
            is_external=True,
            message_variant=live_variant.pk,
        )

    assert refused.value.parameters[0]["name"] == "message_variant"
    assert not Offer.objects.exists()


def test_turning_an_offer_with_a_variant_internal_is_refused_and_changes_nothing(sms_variant):
    offer = OfferFactory(is_external=True, message_variant=sms_variant)

    with pytest.raises(ValidationError):
        definitions.offer_update(offer=Offer.objects.get(pk=offer.pk), is_external=False)

    assert Offer.objects.get(pk=offer.pk).is_external is True


def test_management_sets_changes_and_clears_an_offers_variant_by_id(management_client, sms_variant):
    body = {"name": "Coffee", "benefit_type": "percent_off", "benefit_value": "10", "is_external": True}

    created = management_client.post(OFFERS, {**body, "message_variant": str(sms_variant.pk)}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["message_variant"] == str(sms_variant.pk)
    detail = f"{OFFERS}/{created.json()['id']}"

    other = message_variant_create(livemode=False, name="push", template={"title": "{{ offer.name }}"})
    assert management_client.patch(detail, {"message_variant": str(other.pk)}, format="json").json()[
        "message_variant"
    ] == str(other.pk)
    assert management_client.patch(detail, {"name": "Tea"}, format="json").json()["message_variant"] == str(other.pk)
    assert management_client.patch(detail, {"message_variant": None}, format="json").json()["message_variant"] is None


def test_management_refuses_an_unknown_or_other_mode_variant_with_a_400(management_client):
    live_variant = message_variant_create(livemode=True, name="sms", template=SMS)
    body = {"name": "Coffee", "benefit_type": "percent_off", "benefit_value": "10", "is_external": True}

    unknown = management_client.post(
        OFFERS, {**body, "message_variant": "6f1c1d2e-8a55-4a4e-9f57-1f0d3c6b2a10"}, format="json"
    )
    other_mode = management_client.post(OFFERS, {**body, "message_variant": str(live_variant.pk)}, format="json")
    malformed = management_client.post(OFFERS, {**body, "message_variant": "sms"}, format="json")

    assert_error_body(unknown, 400, "VALIDATION_ERROR", ["message_variant", "6f1c1d2e-8a55-4a4e-9f57-1f0d3c6b2a10"])
    assert_error_body(other_mode, 400, "VALIDATION_ERROR", ["message_variant", str(live_variant.pk)])
    assert_error_body(malformed, 400, "VALIDATION_ERROR", ["message_variant"])
    assert not Offer.objects.exists()


def test_management_refuses_a_variant_on_an_offer_that_is_not_external(management_client, sms_variant):
    body = {"name": "Coffee", "benefit_type": "percent_off", "benefit_value": "10"}

    response = management_client.post(OFFERS, {**body, "message_variant": str(sms_variant.pk)}, format="json")

    assert_error_body(response, 400, "VALIDATION_ERROR", ["message_variant"])


def _offer_form(**fields) -> OfferForm:
    data = {
        "name": "Coffee",
        "status": "active",
        "benefit_type": "percent_off",
        "benefit_value": "10",
        "applies_to": "qualifying_items",
        "min_spend": "0",
        "min_quantity": "0",
        "priority": "0",
        **fields,
    }
    return OfferForm(data={key: value for key, value in data.items() if value is not None})


def test_the_admin_form_takes_a_variant_of_the_offers_mode_for_an_external_offer(sms_variant):
    form = _offer_form(is_external="on", message_variant=str(sms_variant.pk))

    assert form.is_valid(), form.errors
    assert form.save().message_variant == sms_variant


@pytest.mark.parametrize("case", ["not_external", "other_mode"])
def test_the_admin_form_refuses_a_variant_the_api_would_refuse(sms_variant, case):
    fields = {"message_variant": str(sms_variant.pk)}
    fields.update({"is_external": "on", "livemode": "on"} if case == "other_mode" else {})

    form = _offer_form(**fields)

    assert not form.is_valid()
    assert "message variant" in str(form.errors).lower()


def test_a_variant_an_offer_uses_cannot_be_deleted(management_client, sms_variant):
    OfferFactory(is_external=True, message_variant=sms_variant)

    response = management_client.delete(f"/api/v1/message-variants/{sms_variant.pk}")

    body = assert_error_body(response, 409, "CONFLICT")
    assert body["parameters"][:2] == ["id", str(sms_variant.pk)]
    assert MessageVariant.objects.filter(pk=sms_variant.pk).exists()


# --- unreconciled external offers -----------------------------------------------------------------


def _issued_days_ago(days: float, **fields) -> IssuedOffer:
    return IssuedOfferFactory(issued_at=timezone.now() - timedelta(days=days), **fields)


@pytest.fixture
def reconciliation_cases():
    external = OfferFactory(is_external=True)
    internal = OfferFactory()
    return {
        "overdue": _issued_days_ago(8, offer=external),
        "overdue_locked": _issued_days_ago(
            9,
            offer=external,
            status=IssuedOffer.Status.LOCKED,
            locked_transaction_id="T1",
            locked_until=timezone.now() - timedelta(days=8),
        ),
        "recent": _issued_days_ago(6, offer=external),
        "reconciled": _issued_days_ago(
            10, offer=external, status=IssuedOffer.Status.REDEEMED, redeemed_at=timezone.now()
        ),
        "expired": _issued_days_ago(10, offer=external, status=IssuedOffer.Status.EXPIRED),
        "internal": _issued_days_ago(10, offer=internal),
    }


def test_external_offers_still_in_the_wallet_after_the_threshold_are_unreconciled(reconciliation_cases):
    cases = reconciliation_cases

    unreconciled = list(selectors.external_offers_unreconciled())

    assert selectors.UNRECONCILED_EXTERNAL_OFFER_DAYS == 7
    assert unreconciled == [cases["overdue_locked"], cases["overdue"]]  # oldest first


def test_an_external_redemption_reconciles_an_overdue_offer(client_test):
    overdue = _issued_days_ago(8, offer=OfferFactory(is_external=True), external_reference="VENDOR-1")

    response = client_test.post(
        "/api/v1/external-redemptions", {"external_reference": "VENDOR-1", "transaction_id": "E-1"}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert overdue not in selectors.external_offers_unreconciled()


def test_the_threshold_can_be_given(reconciliation_cases):
    cases = reconciliation_cases

    unreconciled = set(selectors.external_offers_unreconciled(older_than_days=5))

    assert unreconciled == {cases["overdue"], cases["overdue_locked"], cases["recent"]}


def test_the_admin_lists_unreconciled_external_offers_with_a_filter(admin_client, reconciliation_cases):
    cases = reconciliation_cases

    response = admin_client.get("/admin/offers/issuedoffer/", {"reconciliation": "overdue"})

    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == {cases["overdue"], cases["overdue_locked"]}
    assert "External, not reconciled after 7 days" in response.content.decode()
    unfiltered = admin_client.get("/admin/offers/issuedoffer/")
    assert len(unfiltered.context["cl"].result_list) == len(cases)
