"""Reads of offers: specs for the engine, a contact's wallet, and the lookup against a basket.

The lookup runs a fixed number of queries whatever the number of lines and offers: issued
offers with their definitions and the contact's usage of each (1), restrictions (1) and venues
(1) when an offer's spec is not cached yet, and the catalogue classification of the basket (1).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from catalogue.models import Venue
from catalogue.selectors import basket_lines_classified
from core.baskets import BasketLine, with_classification
from core.exceptions import ValidationError
from loyalty.models import Contact
from offers.models import IssuedOffer, Offer, OfferContactUsage, OfferRestriction
from offers.services.engine import BasketContext, Evaluation, OfferSpec, best_combination, evaluate


def offer_spec(offer: Offer) -> OfferSpec:
    """The engine's view of one offer."""
    return offer_specs([offer])[offer.pk]


def _spec(offer: Offer, includes, excludes, venue_ids) -> OfferSpec:
    return OfferSpec(
        id=str(offer.pk),
        benefit_type=offer.benefit_type,
        benefit_value=offer.benefit_value,
        currency=offer.currency,
        applies_to=offer.applies_to,
        cap_amount=offer.cap_amount,
        includes=frozenset(includes),
        excludes=frozenset(excludes),
        min_spend=offer.min_spend,
        min_quantity=offer.min_quantity,
        channels=frozenset(offer.channels or []),
        venue_ids=frozenset(venue_ids),
        days_of_week=frozenset(offer.days_of_week or []),
        hour_from=offer.hour_from,
        hour_until=offer.hour_until,
        priority=offer.priority,
        is_exclusive=offer.is_exclusive,
    )


def offer_list(*, livemode: bool) -> QuerySet[Offer]:
    return Offer.objects.filter(livemode=livemode).prefetch_related("restrictions", "venues")


def issued_offers_of(*, contact: Contact, now: datetime | None = None) -> QuerySet[IssuedOffer]:
    """The contact's wallet: issued offers not redeemed, expired or revoked, and not past their
    date (a lock counts as the offer still being in the wallet)."""
    now = now or timezone.now()
    return (
        IssuedOffer.objects.filter(
            contact=contact, status__in=[IssuedOffer.Status.AVAILABLE, IssuedOffer.Status.LOCKED]
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("offer")
        .order_by("-offer__priority", "issued_at")
    )


# External offer systems report their redemptions through POST /external-redemptions. An
# external offer still in the wallet this many days after it was issued was probably redeemed
# without a report (or never reached the customer): the admin lists these for staff to chase.
UNRECONCILED_EXTERNAL_OFFER_DAYS = 7


def external_offers_unreconciled(
    *, queryset: QuerySet[IssuedOffer] | None = None, older_than_days: int | None = None, now: datetime | None = None
) -> QuerySet[IssuedOffer]:
    """Issued external offers never redeemed (still available, or locked: an old lock has lapsed
    and counts as available) and issued more than `older_than_days` (default
    UNRECONCILED_EXTERNAL_OFFER_DAYS) ago, oldest first. Expired and revoked ones are settled."""
    days = UNRECONCILED_EXTERNAL_OFFER_DAYS if older_than_days is None else older_than_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    queryset = IssuedOffer.objects.all() if queryset is None else queryset
    return queryset.filter(
        offer__is_external=True,
        status__in=[IssuedOffer.Status.AVAILABLE, IssuedOffer.Status.LOCKED],
        issued_at__lt=cutoff,
    ).order_by("issued_at", "pk")


# Offer definitions change rarely and are read at every checkout: their engine specs are kept
# per process, keyed by (id, updated_at) — every change of an offer or its conditions saves the
# offer, so a changed offer is a cache miss.
_SPEC_CACHE: dict[tuple, OfferSpec] = {}
_SPEC_CACHE_SIZE = 5000


def offer_specs(offers: list[Offer]) -> dict:
    """Engine specs for many offers: at most two queries (restrictions, venues), none when all
    are cached."""
    specs, missing = {}, []
    for offer in offers:
        spec = _SPEC_CACHE.get((offer.pk, offer.updated_at))
        if spec is None:
            missing.append(offer)
        else:
            specs[offer.pk] = spec
    if missing:
        ids = [offer.pk for offer in missing]
        restrictions: dict = {offer_id: ([], []) for offer_id in ids}
        for offer_id, mode, kind, value in OfferRestriction.objects.filter(offer_id__in=ids).values_list(
            "offer_id", "mode", "kind", "value"
        ):
            restrictions[offer_id][0 if mode == OfferRestriction.Mode.INCLUDE else 1].append((kind, value))
        venues: dict = {offer_id: [] for offer_id in ids}
        for offer_id, venue_id in Offer.venues.through.objects.filter(offer_id__in=ids).values_list(
            "offer_id", "venue_id"
        ):
            venues[offer_id].append(str(venue_id))
        if len(_SPEC_CACHE) > _SPEC_CACHE_SIZE:
            _SPEC_CACHE.clear()
        for offer in missing:
            includes, excludes = restrictions[offer.pk]
            spec = _spec(offer, includes, excludes, venues[offer.pk])
            _SPEC_CACHE[(offer.pk, offer.updated_at)] = spec
            specs[offer.pk] = spec
    return specs


def is_locked_by_other(issued: IssuedOffer, transaction_id: str | None, now: datetime) -> bool:
    return (
        issued.status == IssuedOffer.Status.LOCKED
        and issued.locked_until is not None
        and issued.locked_until > now
        and issued.locked_transaction_id != (transaction_id or "")
    )


def offer_state_reasons(offer: Offer, now: datetime) -> list[str]:
    reasons = []
    if offer.status == Offer.Status.PAUSED:
        reasons.append("offer_paused")
    elif offer.status != Offer.Status.ACTIVE:
        reasons.append("offer_not_active")
    if offer.valid_from and offer.valid_from > now:
        reasons.append("not_yet_valid")
    if offer.valid_until and offer.valid_until <= now:
        reasons.append("offer_ended")
    return reasons


def limit_reasons(offer: Offer, used_by_contact: int) -> list[str]:
    reasons = []
    if offer.redemptions_per_contact is not None and used_by_contact >= offer.redemptions_per_contact:
        reasons.append("limit_reached")
    if offer.budget_count is not None and offer.redeemed_count >= offer.budget_count:
        reasons.append("budget_exhausted")
    if offer.budget_amount is not None and offer.discount_given >= offer.budget_amount:
        reasons.append("budget_exhausted")
    return reasons


@dataclass
class LookupResult:
    issued: IssuedOffer
    applicable: bool
    evaluation: Evaluation | None = None
    reasons: list[str] = field(default_factory=list)


def classified_lines(*, livemode: bool, lines: list[BasketLine]) -> list[BasketLine]:
    """Fill family/brand from the catalogue where a line omits them (one query)."""
    if not lines:
        return lines
    return with_classification(
        lines, basket_lines_classified(livemode=livemode, lines=[line.as_dict() for line in lines])
    )


def offers_lookup(
    *,
    contact: Contact,
    context: BasketContext | None,
    transaction_id: str | None = None,
    now: datetime | None = None,
) -> tuple[list[LookupResult], list[Evaluation]]:
    """Every issued offer in the wallet with whether it can be used now, and with a basket what
    it gives and why not; plus the best combination under the stacking rules."""
    now = now or timezone.now()
    # The contact's use of each offer comes with its row (one query fewer at every checkout).
    used = OfferContactUsage.objects.filter(offer_id=OuterRef("offer_id"), contact_id=contact.pk)
    issued_offers = list(
        issued_offers_of(contact=contact, now=now).annotate(used_by_contact=Subquery(used.values("redeemed_count")))
    )
    specs = offer_specs([issued.offer for issued in issued_offers]) if context is not None else {}
    results, usable_specs = [], []
    for issued in issued_offers:
        offer = issued.offer
        reasons = offer_state_reasons(offer, now) + limit_reasons(offer, issued.used_by_contact or 0)
        if is_locked_by_other(issued, transaction_id, now):
            reasons.append("locked_by_another_transaction")
        evaluation = None
        if context is not None:
            spec = specs[offer.pk]
            evaluation = evaluate(spec, context)
            reasons += evaluation.reasons
            if not reasons:
                usable_specs.append(spec)
        results.append(LookupResult(issued=issued, applicable=not reasons, evaluation=evaluation, reasons=reasons))
    combination = best_combination(usable_specs, context) if context is not None else []
    return results, combination


def venue_resolve(*, livemode: bool, reference, field: str = "basket.venue") -> Venue | None:
    """A venue by id, or by `{"merchant_number", "number"}` as receipts print them."""
    if reference in (None, ""):
        return None
    venues = Venue.objects.filter(livemode=livemode).select_related("merchant")
    try:
        if isinstance(reference, dict):
            venue = venues.filter(
                merchant__number=reference.get("merchant_number"), number=reference.get("number")
            ).first()
        else:
            venue = venues.filter(pk=uuid.UUID(str(reference))).first()
    except (ValueError, TypeError):
        venue = None
    if venue is None:
        raise ValidationError.for_field(field, f"No venue {reference} in this mode.")
    return venue


def basket_context(
    *,
    livemode: bool,
    currency: str,
    lines: list[BasketLine],
    venue=None,
    channel: str | None = None,
    at: datetime | None = None,
) -> BasketContext:
    return BasketContext(
        lines=classified_lines(livemode=livemode, lines=lines),
        currency=currency,
        at=at or timezone.now(),
        channel=channel,
        venue_id=str(venue.pk) if venue else None,
        venue_time_zone=venue.time_zone if venue else settings.TIME_ZONE,
    )
