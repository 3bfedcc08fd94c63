"""Offer definitions: the same validation for the admin and the management API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from catalogue.selectors import venues_in_mode
from catalogue.services import restrictions_check
from core.exceptions import ValidationError
from core.models import MessageVariant
from core.money import check_currency
from offers.models import Offer, OfferRestriction

OFFER_FIELDS = (
    "name",
    "description",
    "image_url",
    "terms",
    "status",
    "valid_from",
    "valid_until",
    "benefit_type",
    "benefit_value",
    "currency",
    "applies_to",
    "cap_amount",
    "min_spend",
    "min_quantity",
    "channels",
    "days_of_week",
    "hour_from",
    "hour_until",
    "redemptions_per_contact",
    "budget_count",
    "budget_amount",
    "priority",
    "is_exclusive",
    "is_external",
)


def check_offer(offer: Offer) -> None:
    """Raise ValidationError naming the first field that makes no sense for the offer."""
    if not (offer.name or "").strip():
        raise ValidationError.for_field("name", "An offer needs a name.")
    if offer.benefit_type not in Offer.Benefit.values:
        raise ValidationError.for_field("benefit_type", f"Use one of {', '.join(Offer.Benefit.values)}.")
    value = Decimal(offer.benefit_value or 0)
    if value < 0:
        raise ValidationError.for_field("benefit_value", "Cannot be negative.")
    if offer.benefit_type == Offer.Benefit.PERCENT_OFF and not 0 < value <= 100:
        raise ValidationError.for_field("benefit_value", "A percentage between 0 and 100.")
    if offer.benefit_type in (Offer.Benefit.AMOUNT_OFF, Offer.Benefit.BONUS_POINTS) and value <= 0:
        raise ValidationError.for_field("benefit_value", "Must be positive.")
    if offer.benefit_type == Offer.Benefit.POINTS_MULTIPLIER and value <= 1:
        raise ValidationError.for_field("benefit_value", "A multiplier above 1.")
    if offer.benefit_type == Offer.Benefit.BONUS_POINTS and value != value.to_integral_value():
        raise ValidationError.for_field("benefit_value", "Bonus points are whole numbers.")
    if offer.benefit_type in (Offer.Benefit.AMOUNT_OFF, Offer.Benefit.FIXED_PRICE):
        offer.currency = check_currency(offer.currency or "")
    elif offer.currency:
        offer.currency = check_currency(offer.currency)
    if offer.applies_to not in Offer.AppliesTo.values:
        raise ValidationError.for_field("applies_to", "Use basket or qualifying_items.")
    for name in ("cap_amount", "min_spend", "budget_amount"):
        if getattr(offer, name) is not None and getattr(offer, name) < 0:
            raise ValidationError.for_field(name, "Cannot be negative.")
    if offer.min_quantity is not None and offer.min_quantity < 0:
        raise ValidationError.for_field("min_quantity", "Cannot be negative.")
    unknown_channels = set(offer.channels or []) - set(Offer.Channel.values)
    if unknown_channels:
        raise ValidationError.for_field("channels", f"Unknown channel(s): {', '.join(sorted(unknown_channels))}.")
    if any(not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 7 for day in offer.days_of_week or []):
        raise ValidationError.for_field("days_of_week", "ISO weekdays 1 (Monday) to 7 (Sunday).")
    if offer.hour_from and offer.hour_until and offer.hour_until <= offer.hour_from:
        raise ValidationError.for_field("hour_until", "Must be after hour_from.")
    if offer.valid_from and offer.valid_until and offer.valid_until <= offer.valid_from:
        raise ValidationError.for_field("valid_until", "Must be after valid_from.")
    if offer.message_variant_id is not None:
        if not offer.is_external:
            # Only external offers announce themselves with a message: a variant on another
            # offer would never be sent, which the marketer wants to hear now.
            raise ValidationError.for_field("message_variant", "Only external offers carry a message variant.")
        if offer.message_variant.livemode != offer.livemode:
            raise ValidationError.for_field("message_variant", "The message variant belongs to the other mode.")


def _restrictions(restrictions: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return restrictions_check(restrictions, owner="offer")


def _message_variant(livemode: bool, variant_id) -> MessageVariant | None:
    """The variant an API request names by id, in the offer's mode (another mode's is unknown)."""
    if variant_id is None:
        return None
    variant = MessageVariant.objects.filter(livemode=livemode, pk=variant_id).first()
    if variant is None:
        raise ValidationError.for_field(
            "message_variant", "Unknown message variant in this mode.", value=str(variant_id)
        )
    return variant


def _save(offer: Offer, restrictions: list[dict] | None, venue_ids: list | None) -> Offer:
    check_offer(offer)
    triples = _restrictions(restrictions) if restrictions is not None else None
    venues = venues_in_mode(livemode=offer.livemode, venue_ids=venue_ids) if venue_ids is not None else None
    offer.save()
    if triples is not None:
        offer.restrictions.all().delete()
        OfferRestriction.objects.bulk_create(
            OfferRestriction(offer=offer, mode=mode, kind=kind, value=value) for mode, kind, value in triples
        )
    if venues is not None:
        offer.venues.set(venues)
    return offer


@transaction.atomic
def offer_create(
    *, livemode: bool, restrictions: list[dict] | None = None, venues: list | None = None, **fields: Any
) -> Offer:
    """`message_variant` is a variant id (or None). Raises ValidationError, LimitExceeded (more
    than 50 restrictions)."""
    offer = Offer(livemode=livemode, **{key: value for key, value in fields.items() if key in OFFER_FIELDS})
    offer.message_variant = _message_variant(livemode, fields.get("message_variant"))
    return _save(offer, restrictions or [], venues or [])


@transaction.atomic
def offer_update(
    *, offer: Offer, restrictions: list[dict] | None = None, venues: list | None = None, **fields: Any
) -> Offer:
    """Change fields; `restrictions` and `venues`, when given, replace the lists;
    `message_variant`, when given, is a variant id or None (no message)."""
    for key, value in fields.items():
        if key in OFFER_FIELDS:
            setattr(offer, key, value)
    if "message_variant" in fields:
        offer.message_variant = _message_variant(offer.livemode, fields["message_variant"])
    return _save(offer, restrictions, venues)
