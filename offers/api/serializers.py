"""Input shapes of the offers API (baskets are parsed by core.baskets for speed) and the
functions that write responses."""

from __future__ import annotations

from datetime import tzinfo
from functools import lru_cache

from django.utils import timezone
from rest_framework import serializers

from core.api.formatting import api_datetime
from core.api.serializers import ContactReferenceSerializer, StrictCharField, StrictSerializer
from core.money import format_minor
from offers.models import IssuedOffer, Offer
from offers.selectors import OfferDefinition, WalletOffer


class BasketSerializer(StrictSerializer):
    """The envelope only: `items` are validated by core.baskets.parse_basket_lines."""

    currency = StrictCharField(max_length=3)
    items = serializers.ListField(
        child=serializers.JSONField(),
        help_text="Lines: sku, quantity, unit_price, amount, family?, brand?, tax_included?. At most 1,000.",
    )
    venue = serializers.JSONField(
        required=False, allow_null=True, help_text='A venue id, or {"merchant_number": "...", "number": "..."}.'
    )
    channel = serializers.ChoiceField(choices=Offer.Channel.values, required=False, allow_null=True)
    occurred_at = serializers.DateTimeField(required=False, allow_null=True)

    def to_internal_value(self, data):
        # Lines are checked in plain Python later; here only the envelope.
        items = data.get("items") if isinstance(data, dict) else None
        envelope = super().to_internal_value({**data, "items": []} if isinstance(data, dict) else data)
        envelope["items"] = items
        return envelope


class LookupInputSerializer(StrictSerializer):
    contact = ContactReferenceSerializer()
    basket = BasketSerializer(required=False, allow_null=True)
    explain = serializers.BooleanField(required=False, default=False)
    transaction_id = StrictCharField(
        required=False, max_length=100, help_text="Offers this transaction locked count as free."
    )


class IssueInputSerializer(StrictSerializer):
    contact = ContactReferenceSerializer()
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    external_reference = StrictCharField(required=False, allow_null=True, max_length=100)


class LockInputSerializer(StrictSerializer):
    transaction_id = StrictCharField(max_length=100)
    basket = BasketSerializer()
    ttl_seconds = serializers.IntegerField(required=False)
    contact = ContactReferenceSerializer(required=False, help_text="If given, the offer must be this contact's.")


class UnlockInputSerializer(StrictSerializer):
    transaction_id = StrictCharField(required=False, max_length=100)
    contact = ContactReferenceSerializer(required=False)


class RedeemInputSerializer(StrictSerializer):
    transaction_id = StrictCharField(required=False, max_length=100)
    basket = BasketSerializer(required=False, allow_null=True)
    contact = ContactReferenceSerializer(required=False)


class ReinstateInputSerializer(StrictSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=200)
    contact = ContactReferenceSerializer(required=False)


class ExternalRedemptionInputSerializer(StrictSerializer):
    issued_offer_id = serializers.UUIDField(required=False)
    external_reference = StrictCharField(required=False, max_length=100)
    redeemed_at = serializers.DateTimeField(required=False)
    transaction_id = StrictCharField(required=False, allow_blank=True, max_length=100)

    def validate(self, attrs):
        if bool(attrs.get("issued_offer_id")) == bool(attrs.get("external_reference")):
            raise serializers.ValidationError({"issued_offer_id": ["Give issued_offer_id or external_reference."]})
        return attrs


class RestrictionSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=["include", "exclude"], default="include")
    kind = serializers.ChoiceField(choices=["sku", "family", "brand"])
    value = StrictCharField(max_length=64)


class OfferInputSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True)
    image_url = serializers.URLField(required=False, allow_blank=True)
    terms = StrictCharField(required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=Offer.Status.values, required=False)
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)
    benefit_type = serializers.ChoiceField(choices=Offer.Benefit.values)
    benefit_value = serializers.DecimalField(max_digits=14, decimal_places=4, min_value=0)
    currency = StrictCharField(required=False, allow_blank=True, max_length=3)
    applies_to = serializers.ChoiceField(choices=Offer.AppliesTo.values, required=False)
    cap_amount = serializers.IntegerField(required=False, allow_null=True, min_value=0, help_text="Minor units.")
    min_spend = serializers.IntegerField(required=False, min_value=0, help_text="Minor units.")
    min_quantity = serializers.DecimalField(required=False, max_digits=10, decimal_places=3, min_value=0)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Offer.Channel.values), required=False)
    venues = serializers.ListField(child=serializers.UUIDField(), required=False)
    days_of_week = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=7), required=False)
    hour_from = serializers.TimeField(required=False, allow_null=True)
    hour_until = serializers.TimeField(required=False, allow_null=True)
    redemptions_per_contact = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    budget_count = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    budget_amount = serializers.IntegerField(required=False, allow_null=True, min_value=0, help_text="Minor units.")
    priority = serializers.IntegerField(required=False)
    is_exclusive = serializers.BooleanField(required=False)
    is_external = serializers.BooleanField(required=False)
    message_variant = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="External offers only: the id of the message variant (GET /message-variants) whose rendered "
        "message `offer.issued` carries; null for none.",
    )
    restrictions = RestrictionSerializer(many=True, required=False, help_text="At most 50.")


# Times are written as strings here, as DRF's fields write them: a response body with datetime
# objects renders with microseconds, but its stored Idempotency-Key replay (a JSONField, Django's
# encoder) would keep milliseconds only, and the replay must equal the first answer.
_drf_datetime = serializers.DateTimeField().to_representation
_time = serializers.TimeField().to_representation


def _datetime(value) -> str | None:
    # Most of an issued offer's times are empty: DRF's field gives None too, at a higher price.
    return None if value is None else _drf_datetime(value)


def offer_data(offer: Offer) -> dict:
    return {
        "id": str(offer.pk),
        "livemode": offer.livemode,
        "name": offer.name,
        "description": offer.description,
        "image_url": offer.image_url,
        "terms": offer.terms,
        "status": offer.status,
        "valid_from": _datetime(offer.valid_from),
        "valid_until": _datetime(offer.valid_until),
        "benefit_type": offer.benefit_type,
        "benefit_value": format(offer.benefit_value.normalize(), "f"),
        "currency": offer.currency or None,
        "applies_to": offer.applies_to,
        "cap_amount": offer.cap_amount,
        "min_spend": offer.min_spend,
        "min_quantity": format(offer.min_quantity.normalize(), "f"),
        "channels": offer.channels,
        "venues": [str(venue.pk) for venue in offer.venues.all()],
        "days_of_week": offer.days_of_week,
        "hour_from": _time(offer.hour_from),
        "hour_until": _time(offer.hour_until),
        "redemptions_per_contact": offer.redemptions_per_contact,
        "budget_count": offer.budget_count,
        "budget_amount": offer.budget_amount,
        "priority": offer.priority,
        "is_exclusive": offer.is_exclusive,
        "is_external": offer.is_external,
        "message_variant": str(offer.message_variant_id) if offer.message_variant_id else None,
        "restrictions": [{"mode": r.mode, "kind": r.kind, "value": r.value} for r in offer.restrictions.all()],
        "counters": {
            "issued": offer.issued_count,
            "redeemed": offer.redeemed_count,
            "discount_given": offer.discount_given,
        },
        "created_at": _datetime(offer.created_at),
        "updated_at": _datetime(offer.updated_at),
    }


def offer_summary(offer: Offer | OfferDefinition) -> dict:
    return {
        "id": str(offer.pk),
        "name": offer.name,
        "description": offer.description,
        "image_url": offer.image_url,
        "terms": offer.terms,
        "benefit_type": offer.benefit_type,
        "benefit_value": format(offer.benefit_value.normalize(), "f"),
        "valid_until": _datetime(offer.valid_until),
        "is_exclusive": offer.is_exclusive,
        "priority": offer.priority,
    }


@lru_cache(maxsize=5000)
def _definition_summary(definition: OfferDefinition) -> dict:
    """A cached definition's summary, formatted once (definitions are immutable: a changed offer
    is a new definition)."""
    return offer_summary(definition)


def issued_offer_data(issued: IssuedOffer | WalletOffer, zone: tzinfo | None = None) -> dict:
    """An issued offer as the API writes it; `zone`, the current time zone, is passed by callers
    that write many (looking it up costs more than writing a time)."""
    offer = issued.offer
    zone = zone or timezone.get_current_timezone()
    return {
        "id": str(issued.pk),
        "livemode": issued.livemode,
        "contact_id": str(issued.contact_id),
        "offer": dict(_definition_summary(offer)) if isinstance(offer, OfferDefinition) else offer_summary(offer),
        "status": issued.status,
        "issued_at": api_datetime(issued.issued_at, zone),
        "expires_at": api_datetime(issued.expires_at, zone),
        "locked_transaction_id": issued.locked_transaction_id or None,
        "locked_until": api_datetime(issued.locked_until, zone),
        "redeemed_transaction_id": issued.redeemed_transaction_id or None,
        "redeemed_at": api_datetime(issued.redeemed_at, zone),
        "external_reference": issued.external_reference,
    }


def evaluation_data(evaluation, currency: str | None) -> dict:
    if evaluation is None:
        return {"discount": None, "line_discounts": [], "bonus_points": 0, "points_multiplier": None}
    line_discounts = evaluation.line_discounts
    if currency:
        # A 1,000-line basket gives thousands of line amounts, most of them alike: each distinct
        # amount is formatted once, and the lines only look their text up.
        texts = {amount: format_minor(amount, currency) for amount in {amount for _, amount in line_discounts}}
        discount = format_minor(evaluation.discount, currency)
        lines = [{"line": index, "amount": texts[amount]} for index, amount in line_discounts]
    else:
        discount = evaluation.discount
        lines = [{"line": index, "amount": amount} for index, amount in line_discounts]
    return {
        "discount": discount,
        "line_discounts": lines,
        "bonus_points": evaluation.bonus_points,
        "points_multiplier": str(evaluation.points_multiplier) if evaluation.points_multiplier else None,
    }
