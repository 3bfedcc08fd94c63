"""Reads of offers: specs for the engine, a contact's wallet, and the lookup against a basket.

The lookup runs a fixed number of queries whatever the number of lines and offers: the contact
with its issued offers, their offers' current state and the contact's usage of each (1; on
PostgreSQL only the columns the lookup needs), the offers' definitions (1), restrictions (1) and
venues (1) when they are not cached yet, and the catalogue classification of the basket (1).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from catalogue.models import Venue
from catalogue.selectors import product_classifications
from core.baskets import BasketLine
from core.exceptions import ValidationError
from loyalty.models import Contact
from offers.models import IssuedOffer, Offer, OfferContactUsage, OfferRestriction
from offers.services.engine import BasketContext, Evaluation, OfferSpec, best_combination, evaluate


def offer_spec(offer: Offer) -> OfferSpec:
    """The engine's view of one offer."""
    return offer_specs([offer])[offer.pk]


def offer_specs(offers: list[Offer]) -> dict:
    """Engine specs for many offers, by offer id (see offer_definitions)."""
    return {offer_id: definition.spec for offer_id, definition in offer_definitions(offers).items()}


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
    return _wallet_of(contact.pk, now or timezone.now())


def _wallet_of(contact_id, now: datetime) -> QuerySet[IssuedOffer]:
    return (
        IssuedOffer.objects.filter(
            contact_id=contact_id, status__in=[IssuedOffer.Status.AVAILABLE, IssuedOffer.Status.LOCKED]
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


@dataclass(frozen=True, eq=False)
class OfferDefinition:
    """What an offer says as of `updated_at`: its engine spec and what the API shows of it (the
    attributes `offer_summary` reads). Whether it can be used now (status, validity, limits,
    counters) is never taken from here: see OfferState. Compared by identity: each is built
    once and kept (see _DEFINITION_CACHE)."""

    pk: uuid.UUID
    updated_at: datetime
    name: str
    description: str
    image_url: str
    terms: str
    benefit_type: str
    benefit_value: Decimal
    valid_until: datetime | None
    is_exclusive: bool
    priority: int
    spec: OfferSpec


# Offer definitions change rarely and are read at every checkout: they are kept per process,
# keyed by (id, updated_at). Every change of an offer or its conditions saves the offer (the
# definitions service and the admin; counters move by UPDATE but are not part of a definition),
# so a changed offer is a cache miss.
_DEFINITION_CACHE: dict[tuple, OfferDefinition] = {}
_DEFINITION_CACHE_SIZE = 5000


def offer_definitions(offers: list[Offer]) -> dict:
    """Definitions of many offers, by offer id: at most two queries (restrictions, venues), none
    when all are cached."""
    definitions, missing = {}, []
    for offer in offers:
        definition = _DEFINITION_CACHE.get((offer.pk, offer.updated_at))
        if definition is None:
            missing.append(offer)
        else:
            definitions[offer.pk] = definition
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
        if len(_DEFINITION_CACHE) > _DEFINITION_CACHE_SIZE:
            _DEFINITION_CACHE.clear()
        for offer in missing:
            includes, excludes = restrictions[offer.pk]
            definition = OfferDefinition(
                pk=offer.pk,
                updated_at=offer.updated_at,
                name=offer.name,
                description=offer.description,
                image_url=offer.image_url,
                terms=offer.terms,
                benefit_type=offer.benefit_type,
                benefit_value=offer.benefit_value,
                valid_until=offer.valid_until,
                is_exclusive=offer.is_exclusive,
                priority=offer.priority,
                spec=_spec(offer, includes, excludes, venues[offer.pk]),
            )
            _DEFINITION_CACHE[(offer.pk, offer.updated_at)] = definition
            definitions[offer.pk] = definition
    return definitions


def is_locked_by_other(issued: IssuedOffer | WalletOffer, transaction_id: str | None, now: datetime) -> bool:
    return (
        issued.status == IssuedOffer.Status.LOCKED
        and issued.locked_until is not None
        and issued.locked_until > now
        and issued.locked_transaction_id != (transaction_id or "")
    )


def offer_state_reasons(offer: Offer | OfferState, now: datetime) -> list[str]:
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


def limit_reasons(offer: Offer | OfferState, used_by_contact: int) -> list[str]:
    reasons = []
    if offer.redemptions_per_contact is not None and used_by_contact >= offer.redemptions_per_contact:
        reasons.append("limit_reached")
    if offer.budget_count is not None and offer.redeemed_count >= offer.budget_count:
        reasons.append("budget_exhausted")
    if offer.budget_amount is not None and offer.discount_given >= offer.budget_amount:
        reasons.append("budget_exhausted")
    return reasons


class OfferState(NamedTuple):
    """An offer's status, validity, limits and counters as read now (what offer_state_reasons and
    limit_reasons look at), never taken from a cache."""

    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    redemptions_per_contact: int | None
    budget_count: int | None
    redeemed_count: int
    budget_amount: int | None
    discount_given: int


@dataclass(slots=True)
class WalletOffer:
    """One issued offer of a contact's wallet as the lookup reads it: the issued offer's own
    columns (the attributes issued_offer_data reads), its offer's current state, the contact's
    redemptions of that offer, and the offer's (cached) definition as `offer`."""

    pk: uuid.UUID
    livemode: bool
    contact_id: uuid.UUID
    offer_id: uuid.UUID
    status: str
    issued_at: datetime
    expires_at: datetime | None
    locked_transaction_id: str
    locked_until: datetime | None
    redeemed_transaction_id: str
    redeemed_at: datetime | None
    external_reference: str | None
    offer_state: OfferState
    used_by_contact: int
    offer: OfferDefinition


@dataclass
class Wallet:
    """A contact's usable issued offers, highest priority first, as read at `read_at`."""

    contact_id: uuid.UUID
    read_at: datetime
    offers: list[WalletOffer]


def _utc_text(column: str) -> str:
    """A timestamptz column as ISO text in UTC, for datetime.fromisoformat (C): the driver's
    loader for timestamptz is Python code (Django's, for the connection's time zone), and with
    two times per issued offer it took more than half the wallet query's CPU."""
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_ISSUED = IssuedOffer._meta.db_table
_OFFER = Offer._meta.db_table
_USAGE = OfferContactUsage._meta.db_table
# One round trip: the contact (no row at all when the id names no contact of this mode), and
# left-joined to it the issued offers still in the wallet with only the columns the lookup uses.
# An offer's definition is identified by (id, updated_at) and read from the cache.
_WALLET_SQL = f"""
SELECT issued.id, issued.livemode, issued.contact_id, issued.offer_id, issued.status,
    {_utc_text("issued.issued_at")}, {_utc_text("issued.expires_at")}, issued.locked_transaction_id,
    {_utc_text("issued.locked_until")}, issued.redeemed_transaction_id, {_utc_text("issued.redeemed_at")},
    issued.external_reference, {_utc_text("offer.updated_at")},
    offer.status, {_utc_text("offer.valid_from")}, {_utc_text("offer.valid_until")}, offer.redemptions_per_contact,
    offer.budget_count, offer.redeemed_count, offer.budget_amount, offer.discount_given,
    usage.redeemed_count
FROM {Contact._meta.db_table} AS contact
LEFT JOIN ({_ISSUED} AS issued
    JOIN {_OFFER} AS offer ON offer.id = issued.offer_id
    LEFT JOIN {_USAGE} AS usage ON usage.offer_id = issued.offer_id AND usage.contact_id = issued.contact_id)
ON issued.contact_id = %(contact_id)s AND issued.status IN ('available', 'locked')
    AND (issued.expires_at IS NULL OR issued.expires_at > %(now)s)
WHERE contact.id = %(contact_id)s AND contact.livemode = %(livemode)s
ORDER BY offer.priority DESC, issued.issued_at
"""


def offers_wallet(*, livemode: bool, contact_id: uuid.UUID, now: datetime | None = None) -> Wallet | None:
    """The contact's wallet as the checkout lookup needs it (issued_offers_of, with the offers'
    state and the contact's usage), or None when no contact of this mode has that id: the
    contact's existence is checked in the same query."""
    now = now or timezone.now()
    if connection.vendor != "postgresql":
        return _offers_wallet_portable(livemode=livemode, contact_id=contact_id, now=now)
    with connection.cursor() as cursor:
        cursor.execute(_WALLET_SQL, {"contact_id": contact_id, "livemode": livemode, "now": now})
        rows = cursor.fetchall()
    if not rows:
        return None
    rows = [row for row in rows if row[0] is not None]  # a contact without offers: one empty row
    definitions = _cached_definitions((row[3], _utc(row[12])) for row in rows)
    return Wallet(contact_id=contact_id, read_at=now, offers=[_wallet_offer(row, definitions) for row in rows])


def _wallet_offer(row: tuple, definitions: dict) -> WalletOffer:
    """One row of _WALLET_SQL."""
    (pk, livemode, contact_id, offer_id, status, issued_at, expires_at, locked_transaction_id, locked_until) = row[:9]
    (redeemed_transaction_id, redeemed_at, external_reference, _, offer_status, valid_from, valid_until) = row[9:16]
    return WalletOffer(
        pk=pk,
        livemode=livemode,
        contact_id=contact_id,
        offer_id=offer_id,
        status=status,
        issued_at=_utc(issued_at),
        expires_at=_utc(expires_at),
        locked_transaction_id=locked_transaction_id,
        locked_until=_utc(locked_until),
        redeemed_transaction_id=redeemed_transaction_id,
        redeemed_at=_utc(redeemed_at),
        external_reference=external_reference,
        offer_state=OfferState(offer_status, _utc(valid_from), _utc(valid_until), *row[16:21]),
        used_by_contact=row[21] or 0,
        offer=definitions[offer_id],
    )


def _cached_definitions(keys) -> dict:
    """Definitions by offer id for (offer id, updated_at) pairs: from the cache, the others read
    (one query, plus restrictions and venues). An offer saved since its key was read comes back
    in its newer definition."""
    definitions, missing = {}, []
    for offer_id, updated_at in keys:
        definition = _DEFINITION_CACHE.get((offer_id, updated_at))
        if definition is None:
            missing.append(offer_id)
        else:
            definitions[offer_id] = definition
    if missing:
        definitions.update(offer_definitions(list(Offer.objects.filter(pk__in=missing))))
    return definitions


def _offers_wallet_portable(*, livemode: bool, contact_id: uuid.UUID, now: datetime) -> Wallet | None:
    """offers_wallet through the ORM (SQLite)."""
    if not Contact.objects.filter(livemode=livemode, pk=contact_id).exists():
        return None
    used = OfferContactUsage.objects.filter(offer_id=OuterRef("offer_id"), contact_id=contact_id)
    issued_offers = list(_wallet_of(contact_id, now).annotate(used_by_contact=Subquery(used.values("redeemed_count"))))
    definitions = offer_definitions([issued.offer for issued in issued_offers])
    offers = []
    for issued in issued_offers:
        offer = issued.offer
        offers.append(
            WalletOffer(
                pk=issued.pk,
                livemode=issued.livemode,
                contact_id=issued.contact_id,
                offer_id=issued.offer_id,
                status=issued.status,
                issued_at=issued.issued_at,
                expires_at=issued.expires_at,
                locked_transaction_id=issued.locked_transaction_id,
                locked_until=issued.locked_until,
                redeemed_transaction_id=issued.redeemed_transaction_id,
                redeemed_at=issued.redeemed_at,
                external_reference=issued.external_reference,
                offer_state=OfferState(*(getattr(offer, name) for name in OfferState._fields)),
                used_by_contact=issued.used_by_contact or 0,
                offer=definitions[offer.pk],
            )
        )
    return Wallet(contact_id=contact_id, read_at=now, offers=offers)


@dataclass
class LookupResult:
    issued: WalletOffer
    applicable: bool
    evaluation: Evaluation | None = None
    reasons: list[str] = field(default_factory=list)


def classified_lines(*, livemode: bool, lines: list[BasketLine]) -> list[BasketLine]:
    """Fill family/brand from the catalogue where a line omits them (one query, none when every
    line names both). The catalogue answers once per SKU, and the lines are filled from that
    directly: a 1,000-line basket is not copied into dictionaries on the way."""
    wanted = {line.sku for line in lines if not (line.family and line.brand)}
    if not wanted:
        return lines
    known = {sku: (family, brand) for sku, family, brand in product_classifications(livemode=livemode, skus=wanted)}
    return [line.classified(*known.get(line.sku, (None, None))) for line in lines]


def offers_lookup(
    *, wallet: Wallet, context: BasketContext | None, transaction_id: str | None = None
) -> tuple[list[LookupResult], list[Evaluation]]:
    """Every issued offer in the wallet with whether it can be used now, and with a basket what
    it gives and why not; plus the best combination under the stacking rules."""
    now = wallet.read_at
    results, usable_specs, usable_evaluations = [], [], []
    for issued in wallet.offers:
        state = issued.offer_state
        reasons = offer_state_reasons(state, now) + limit_reasons(state, issued.used_by_contact)
        if is_locked_by_other(issued, transaction_id, now):
            reasons.append("locked_by_another_transaction")
        evaluation = None
        if context is not None:
            spec = issued.offer.spec
            evaluation = evaluate(spec, context)
            reasons += evaluation.reasons
            if not reasons:
                usable_specs.append(spec)
                usable_evaluations.append(evaluation)
        results.append(LookupResult(issued=issued, applicable=not reasons, evaluation=evaluation, reasons=reasons))
    combination = best_combination(usable_specs, context, usable_evaluations) if context is not None else []
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
