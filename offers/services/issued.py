"""Issued offers: issuing, and the one guarded state machine behind lock, unlock, redeem,
reinstate, expiry and revocation.

Every change takes the issued offer's row lock (`SELECT … FOR UPDATE`), checks the transition
table and the guards, writes the new state and a history row, all in one transaction. Counters
and limits are then moved with conditional updates in a fixed order (issued offer → offer →
per-contact usage), so 50 parallel redemptions of one offer give exactly one success, and
budgets hold under any concurrency. An expired lock counts as no lock at all, at once: no sweep
is needed for another transaction to lock or redeem.

At the checkout every round trip counts: on PostgreSQL the locked row comes with its offer and
the contact's usage, a redemption's counters move in one statement, and the new state, its
history row and its outbox event are written by another. The ORM does the same step by step on
other databases (SQLite).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.exceptions import Conflict, NotFound, ValidationError
from core.messages import message_render
from core.rows import model_from_row
from core.services import outbox_emit, outbox_emitted, outbox_insert_sql
from loyalty.models import Contact
from offers.exceptions import OfferLimitReached, OfferLocked, OfferNotApplicable, OfferNotAvailable
from offers.models import IssuedOffer, IssuedOfferTransition, Offer, OfferContactUsage
from offers.selectors import limit_reasons, offer_spec, offer_state_reasons
from offers.services.engine import BasketContext, Evaluation, evaluate

Status = IssuedOffer.Status

# action: (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "lock": (frozenset({Status.AVAILABLE, Status.LOCKED}), Status.LOCKED),
    "unlock": (frozenset({Status.LOCKED}), Status.AVAILABLE),
    "release": (frozenset({Status.LOCKED}), Status.AVAILABLE),  # the lock's time ran out
    "redeem": (frozenset({Status.AVAILABLE, Status.LOCKED}), Status.REDEEMED),
    "reinstate": (frozenset({Status.REDEEMED}), Status.AVAILABLE),
    "expire": (frozenset({Status.AVAILABLE, Status.LOCKED}), Status.EXPIRED),
    "revoke": (frozenset({Status.AVAILABLE, Status.LOCKED}), Status.REVOKED),
}

MIN_LOCK_TTL = 30
MAX_LOCK_TTL = 24 * 3600


def _lock_is_live(issued: IssuedOffer, now: datetime) -> bool:
    return issued.status == Status.LOCKED and issued.locked_until is not None and issued.locked_until > now


def _not_available(issued: IssuedOffer, reason: str) -> OfferNotAvailable:
    return OfferNotAvailable(
        f"The issued offer is {reason}.",
        parameters=[OfferNotAvailable.parameter("id", value=str(issued.pk), status=issued.status)],
    )


def _locked_by_other(issued: IssuedOffer) -> OfferLocked:
    return OfferLocked(
        f"The issued offer is locked by another transaction until {issued.locked_until.isoformat()}.",
        parameters=[OfferLocked.parameter("id", value=str(issued.pk), locked_until=issued.locked_until.isoformat())],
    )


def issued_offer_transition(
    *,
    issued: IssuedOffer,
    action: str,
    now: datetime,
    transaction_id: str = "",
    discount: int = 0,
    actor: str = "",
    event_type: str | None = None,
    event_data: dict | None = None,
    **changes,
) -> IssuedOffer:
    """Apply one transition to a row the caller holds locked; refuses what the table forbids.
    (The guards particular to each action are checked by its service before this.) With
    `event_type`, the outbox event reporting it (`event_data` added to the issued offer's facts)
    is written with it, in the same statement on PostgreSQL."""
    allowed_from, to_status = TRANSITIONS[action]
    effective = Status.AVAILABLE if issued.status == Status.LOCKED and not _lock_is_live(issued, now) else issued.status
    if issued.status not in allowed_from and effective not in allowed_from:
        raise _not_available(issued, issued.status)
    from_status = issued.status
    fields = {"status": to_status, **changes}
    if to_status != Status.LOCKED:
        fields.update(locked_transaction_id="", locked_at=None, locked_until=None, locked_discount=0)
    history = {
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "transaction_id": transaction_id,
        "discount": discount,
        "actor": actor,
        "created_at": now,
    }
    for name, value in fields.items():
        setattr(issued, name, value)
    fields["updated_at"] = now
    payload = _event_payload(issued, **(event_data or {})) if event_type else None
    if connection.vendor == "postgresql":
        moved = _transition_in_one_statement(issued, from_status, fields, history, event_type, payload)
    else:
        moved = IssuedOffer.objects.filter(pk=issued.pk, status=from_status).update(**fields)
        if moved:
            IssuedOfferTransition.objects.create(issued_offer=issued, **history)
    if not moved:  # cannot happen under the caller's row lock; never write over a change unseen
        raise _not_available(issued, f"{from_status} no longer")
    if event_type and connection.vendor == "postgresql":
        outbox_emitted(livemode=issued.livemode, event_type=event_type, payload=payload)  # written above
    elif event_type:
        outbox_emit(livemode=issued.livemode, event_type=event_type, payload=payload)
    return issued


_ISSUED = IssuedOffer._meta.db_table
_HISTORY_COLUMNS = ("action", "from_status", "to_status", "transaction_id", "discount", "actor", "created_at")
# The new state, its history row and (when the action is reported) its outbox event, in one
# round trip. The UPDATE is guarded on the status read under the row lock; the inserts take
# their row from it, so nothing is recorded unless the state moved.
_TRANSITION_SQL = (
    "WITH moved AS (UPDATE {issued} SET {assignments} WHERE id = %s AND status = %s RETURNING id), "
    "history AS (INSERT INTO {history} (issued_offer_id, {history_columns}) SELECT id, {history_values} FROM moved) "
    "{tail}"
)


def _transition_in_one_statement(
    issued: IssuedOffer, from_status: str, fields: dict, history: dict, event_type: str | None, payload: dict | None
) -> int:
    assignments = ", ".join(f"{IssuedOffer._meta.get_field(name).column} = %s" for name in fields)
    params = [*fields.values(), issued.pk, from_status, *(history[column] for column in _HISTORY_COLUMNS)]
    tail = "SELECT id FROM moved"
    if event_type:
        tail, event_params = outbox_insert_sql(
            livemode=issued.livemode, event_type=event_type, payload=payload, source="moved"
        )
        params += event_params
    sql = _TRANSITION_SQL.format(
        issued=_ISSUED,
        assignments=assignments,
        history=IssuedOfferTransition._meta.db_table,
        history_columns=", ".join(_HISTORY_COLUMNS),
        history_values=", ".join(["%s"] * len(_HISTORY_COLUMNS)),
        tail=tail,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _locked_row(issued_offer_id, *, livemode: bool | None = None, contact_id=None) -> IssuedOffer:
    """The issued offer with its row lock, its offer, and the contact's redemptions of that offer
    as `used_by_contact`. With `livemode` (and `contact_id`), one of another mode (or contact),
    or none at all, is NotFound — the API's answer, read under the lock rather than by a
    separate query before it."""
    try:
        if connection.vendor == "postgresql":
            issued = _locked_row_in_one_statement(uuid.UUID(str(issued_offer_id)), livemode)
        else:
            issued = _locked_row_portable(issued_offer_id, livemode)
    except (IssuedOffer.DoesNotExist, DjangoValidationError, ValueError):
        if livemode is None:
            raise
        issued = None
    if issued is None:
        raise NotFound(
            f"No issued offer '{issued_offer_id}' in this mode.",
            parameters=[NotFound.parameter("id", value=str(issued_offer_id))],
        )
    if contact_id is not None and issued.contact_id != contact_id:
        raise NotFound(
            "This contact has no such issued offer.",
            parameters=[NotFound.parameter("id", value=str(issued_offer_id))],
        )
    return issued


_ISSUED_FIELDS = IssuedOffer._meta.concrete_fields
_OFFER_FIELDS = Offer._meta.concrete_fields
_USAGE = OfferContactUsage._meta.db_table
# Every column of both rows (callers get whole model instances) and the usage, in one round trip.
# Only the issued offer's row is locked: the offer's counters move by conditional UPDATEs.
_LOCKED_ROW_SQL = (
    f"SELECT {', '.join(f'issued.{field.column}' for field in _ISSUED_FIELDS)}, "
    f"{', '.join(f'offer.{field.column}' for field in _OFFER_FIELDS)}, usage.redeemed_count "
    f"FROM {_ISSUED} AS issued JOIN {Offer._meta.db_table} AS offer ON offer.id = issued.offer_id "
    f"LEFT JOIN {_USAGE} AS usage ON usage.offer_id = issued.offer_id AND usage.contact_id = issued.contact_id "
    "WHERE issued.id = %s{mode} FOR UPDATE OF issued"
)


def _locked_row_in_one_statement(issued_offer_id: uuid.UUID, livemode: bool | None) -> IssuedOffer:
    params = [issued_offer_id] if livemode is None else [issued_offer_id, livemode]
    with connection.cursor() as cursor:
        cursor.execute(_LOCKED_ROW_SQL.format(mode="" if livemode is None else " AND issued.livemode = %s"), params)
        row = cursor.fetchone()
    if row is None:
        raise IssuedOffer.DoesNotExist(f"No issued offer {issued_offer_id}.")
    issued = model_from_row(IssuedOffer, _ISSUED_FIELDS, row[: len(_ISSUED_FIELDS)])
    issued.offer = model_from_row(Offer, _OFFER_FIELDS, row[len(_ISSUED_FIELDS) : -1])
    issued.used_by_contact = row[-1] or 0
    return issued


def _locked_row_portable(issued_offer_id, livemode: bool | None) -> IssuedOffer:
    """_locked_row through the ORM (SQLite)."""
    used = OfferContactUsage.objects.filter(offer_id=OuterRef("offer_id"), contact_id=OuterRef("contact_id"))
    rows = (
        IssuedOffer.objects.select_for_update(of=("self",))
        .select_related("offer")
        .annotate(used_by_contact=Coalesce(Subquery(used.values("redeemed_count")), 0))
    )
    if livemode is not None:
        rows = rows.filter(livemode=livemode)
    return rows.get(pk=issued_offer_id)


def _event_payload(issued: IssuedOffer, **extra) -> dict:
    return {
        "issued_offer_id": str(issued.pk),
        "offer_id": str(issued.offer_id),
        "contact_id": str(issued.contact_id),
        "status": issued.status,
        "is_external": issued.offer.is_external,
        "external_reference": issued.external_reference,
        **extra,
    }


def _event(issued: IssuedOffer, event_type: str, **extra) -> None:
    outbox_emit(livemode=issued.livemode, event_type=event_type, payload=_event_payload(issued, **extra))


# --- issuing ----------------------------------------------------------------------------------


@transaction.atomic
def issued_offer_issue(
    *,
    offer: Offer,
    contact: Contact,
    expires_at: datetime | None = None,
    external_reference: str | None = None,
    source: str = "api",
    actor: str = "",
) -> IssuedOffer:
    """Put an active offer in the contact's wallet (counted in `issued_count`; `offer.issued`
    goes to the outbox, which is how an external offer system hears of it). Raises
    OfferNotAvailable (offer not active or ended), ValidationError, Conflict (external ref)."""
    now = timezone.now()
    if offer.livemode != contact.livemode:
        raise NotFound("No such contact in this mode.", parameters=[NotFound.parameter("contact")])
    reasons = offer_state_reasons(offer, now)
    reasons = [reason for reason in reasons if reason != "not_yet_valid"]  # may be issued ahead of time
    if reasons:
        raise OfferNotAvailable(
            f"The offer cannot be issued: {', '.join(reasons)}.",
            parameters=[OfferNotAvailable.parameter("offer_id", value=str(offer.pk), reasons=reasons)],
        )
    expires_at = expires_at or offer.valid_until
    if offer.valid_until and expires_at and expires_at > offer.valid_until:
        expires_at = offer.valid_until
    if expires_at and expires_at <= now:
        raise ValidationError.for_field("expires_at", "The expiry must be in the future.")
    try:
        with transaction.atomic():
            issued = IssuedOffer.objects.create(
                livemode=offer.livemode,
                offer=offer,
                contact=contact,
                issued_at=now,
                expires_at=expires_at,
                external_reference=external_reference or None,
                source=source,
            )
    except IntegrityError:
        raise Conflict(
            "That external reference is already used by another issued offer.",
            parameters=[Conflict.parameter("external_reference", value=external_reference)],
        ) from None
    Offer.objects.filter(pk=offer.pk).update(issued_count=F("issued_count") + 1)
    IssuedOfferTransition.objects.create(
        issued_offer=issued, action="issue", from_status="", to_status=Status.AVAILABLE, actor=actor, created_at=now
    )
    extra = {"expires_at": expires_at.isoformat() if expires_at else None}
    if offer.is_external and offer.message_variant_id:
        # The external system gets the message in the shape it asked for, filled in now: the
        # facts are those of this moment, whatever changes later.
        extra["message"] = message_render(offer.message_variant.template, issue_message_facts(issued, contact))
    _event(issued, "offer.issued", **extra)
    return issued


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def issue_message_facts(issued: IssuedOffer, contact: Contact) -> dict:
    """The facts an external offer's message variant is rendered with (docs/WEBHOOKS.md)."""
    offer = issued.offer
    return {
        "contact": {
            "id": str(contact.pk),
            "member_number": contact.member_number,
            "email": contact.email,
            "mobile_phone": contact.mobile_phone,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
        },
        "offer": {
            "id": str(offer.pk),
            "name": offer.name,
            "description": offer.description,
            "image_url": offer.image_url,
            "terms": offer.terms,
            "benefit_type": offer.benefit_type,
            # Fixed-point text: a bare normalize() would write 10.0000 as "1E+1".
            "benefit_value": format(Decimal(offer.benefit_value).normalize(), "f"),
            "currency": offer.currency or None,
            "valid_from": _iso(offer.valid_from),
            "valid_until": _iso(offer.valid_until),
        },
        "issued_offer": {
            "id": str(issued.pk),
            "external_reference": issued.external_reference,
            "issued_at": _iso(issued.issued_at),
            "expires_at": _iso(issued.expires_at),
        },
    }


# --- lock, unlock, redeem, reinstate ----------------------------------------------------------


def _priced(issued: IssuedOffer, context: BasketContext | None) -> Evaluation | None:
    if context is None:
        return None
    evaluation = evaluate(offer_spec(issued.offer), context)
    if not evaluation.applicable:
        raise OfferNotApplicable(
            f"The offer does not apply: {', '.join(evaluation.reasons)}.",
            parameters=[OfferNotApplicable.parameter("basket", reasons=evaluation.reasons)],
        )
    return evaluation


def _check_offer_usable(issued: IssuedOffer, now: datetime) -> None:
    if issued.expires_at is not None and issued.expires_at <= now:
        raise _not_available(issued, "expired")
    reasons = offer_state_reasons(issued.offer, now)
    if reasons:
        raise OfferNotAvailable(
            f"The offer cannot be used now: {', '.join(reasons)}.",
            parameters=[OfferNotAvailable.parameter("id", value=str(issued.pk), reasons=reasons)],
        )


def issued_offer_lock(
    *,
    issued_offer_id,
    transaction_id: str,
    context: BasketContext | None,
    ttl_seconds: int | None = None,
    actor: str = "",
    livemode: bool | None = None,
    contact_id=None,
) -> tuple[IssuedOffer, Evaluation | None]:
    """Bind the offer to `transaction_id` for `ttl_seconds` and price it on the basket. The same
    transaction may lock again (re-pricing, new deadline); another gets OfferLocked until the
    lock's time runs out. Raises OfferLocked, OfferNotAvailable, OfferNotApplicable,
    ValidationError; NotFound for an offer outside `livemode` / `contact_id` when given."""
    if not transaction_id:
        raise ValidationError.for_field("transaction_id", "A lock needs the transaction it binds to.")
    ttl = settings.OFFER_LOCK_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    if not MIN_LOCK_TTL <= ttl <= MAX_LOCK_TTL:
        raise ValidationError.for_field("ttl_seconds", f"Between {MIN_LOCK_TTL} and {MAX_LOCK_TTL} seconds.")
    with transaction.atomic():
        issued = _locked_row(issued_offer_id, livemode=livemode, contact_id=contact_id)
        now = timezone.now()
        if _lock_is_live(issued, now) and issued.locked_transaction_id != transaction_id:
            raise _locked_by_other(issued)
        if issued.status not in (Status.AVAILABLE, Status.LOCKED):
            raise _not_available(issued, issued.status)
        _check_offer_usable(issued, now)
        _check_limits_not_reached(issued)
        evaluation = _priced(issued, context)
        discount = evaluation.discount if evaluation else 0
        locked_until = now + timedelta(seconds=ttl)
        issued_offer_transition(
            issued=issued,
            action="lock",
            now=now,
            transaction_id=transaction_id,
            discount=discount,
            actor=actor,
            event_type="offer.locked",
            event_data={"transaction_id": transaction_id, "locked_until": locked_until.isoformat()},
            locked_transaction_id=transaction_id,
            locked_at=now,
            locked_until=locked_until,
            locked_discount=discount,
        )
    return issued, evaluation


def issued_offer_unlock(*, issued_offer_id, transaction_id: str | None = None, actor: str = "") -> IssuedOffer:
    """Release a lock (by its transaction when given). Unlocking an offer that is already free
    is a no-op. Raises OfferLocked (another transaction's live lock), OfferNotAvailable."""
    with transaction.atomic():
        issued = _locked_row(issued_offer_id)
        now = timezone.now()
        if issued.status == Status.AVAILABLE:
            return issued
        if issued.status != Status.LOCKED:
            raise _not_available(issued, issued.status)
        if transaction_id and issued.locked_transaction_id != transaction_id and _lock_is_live(issued, now):
            raise _locked_by_other(issued)
        return issued_offer_transition(
            issued=issued, action="unlock", now=now, transaction_id=issued.locked_transaction_id, actor=actor
        )


def contact_offer_locks_release(*, contact_id, actor: str = "erasure") -> int:
    """Release every lock held on the contact's issued offers (a checkout that was pricing them
    can no longer redeem them); returns how many. Safe to retry: a free offer stays free."""
    locked_ids = list(
        IssuedOffer.objects.filter(contact_id=contact_id, status=Status.LOCKED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    released = 0
    for issued_offer_id in locked_ids:
        try:
            issued_offer_unlock(issued_offer_id=issued_offer_id, actor=actor)
        except OfferNotAvailable:
            continue  # redeemed or expired meanwhile: no lock left to release
        released += 1
    return released


def _check_limits_not_reached(issued: IssuedOffer) -> None:
    """A lock promises a discount: refuse it when the redeem would be refused for the limits
    (the redeem still enforces them with conditional updates)."""
    reasons = limit_reasons(issued.offer, issued.used_by_contact)
    if reasons:
        raise OfferLimitReached(
            f"The offer cannot be used again: {', '.join(reasons)}.",
            parameters=[OfferLimitReached.parameter("offer_id", value=str(issued.offer_id), reason=reasons[0])],
        )


def _count_redemption(issued: IssuedOffer, discount: int) -> None:
    """Move the offer's counters and the contact's usage within their limits, or refuse."""
    offer = issued.offer
    limit = offer.redemptions_per_contact
    may_use = limit is None or limit >= 1
    if connection.vendor == "postgresql":
        counted, used = _count_in_one_statement(offer.pk, issued.contact_id, discount, limit, may_use)
    else:
        counted = _count_offer_use(offer.pk, discount)
        used = counted and may_use and _count_contact_use(offer, issued.contact_id)
    if not counted:
        raise OfferLimitReached(
            "The offer's total budget is used up.",
            parameters=[OfferLimitReached.parameter("offer_id", value=str(offer.pk), reason="budget_exhausted")],
        )
    if not used:
        raise OfferLimitReached(
            f"The contact has redeemed this offer {offer.redemptions_per_contact} time(s), the limit.",
            parameters=[OfferLimitReached.parameter("offer_id", value=str(offer.pk), reason="limit_reached")],
        )


_OFFER = Offer._meta.db_table
# One round trip for both counts, in the lock order of every redemption (offer, then usage: the
# usage row is written from the counted offer row, so not at all when the budget refused). The
# offer moves only within its budgets; the usage row is created or moved under its unique
# constraint with the per-contact limit as the update's condition. No row from a step: refused.
_COUNT_SQL = f"""
WITH counted AS (
    UPDATE {_OFFER} SET redeemed_count = redeemed_count + 1, discount_given = discount_given + %(discount)s
    WHERE id = %(offer_id)s AND (budget_count IS NULL OR redeemed_count < budget_count)
        AND (budget_amount IS NULL OR budget_amount >= discount_given + %(discount)s)
    RETURNING id
), used AS (
    INSERT INTO {_USAGE} (offer_id, contact_id, redeemed_count)
    SELECT id, %(contact_id)s, 1 FROM counted WHERE %(may_use)s
    ON CONFLICT (offer_id, contact_id) DO UPDATE SET redeemed_count = {_USAGE}.redeemed_count + 1 {{guard}}
    RETURNING offer_id
)
SELECT (SELECT count(*) FROM counted), (SELECT count(*) FROM used)
"""


def _count_in_one_statement(offer_id, contact_id, discount: int, limit: int | None, may_use: bool) -> tuple[int, int]:
    guard = f"WHERE {_USAGE}.redeemed_count < %(limit)s" if limit is not None else ""
    params = {"offer_id": offer_id, "contact_id": contact_id, "discount": discount, "limit": limit, "may_use": may_use}
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL.format(guard=guard), params)
        return cursor.fetchone()


def _count_offer_use(offer_id, discount: int) -> bool:
    """One more redemption of the offer giving `discount`, unless that passes a budget."""
    within_budget = Q(budget_count__isnull=True) | Q(redeemed_count__lt=F("budget_count"))
    within_money = Q(budget_amount__isnull=True) | Q(budget_amount__gte=F("discount_given") + discount)
    return bool(
        Offer.objects.filter(within_budget & within_money, pk=offer_id).update(
            redeemed_count=F("redeemed_count") + 1, discount_given=F("discount_given") + discount
        )
    )


def _count_contact_use(offer: Offer, contact_id) -> bool:
    """One more use of the offer by the contact, unless that passes `redemptions_per_contact`."""
    OfferContactUsage.objects.get_or_create(offer=offer, contact_id=contact_id)
    usage = OfferContactUsage.objects.filter(offer=offer, contact_id=contact_id)
    if offer.redemptions_per_contact is not None:
        usage = usage.filter(redeemed_count__lt=offer.redemptions_per_contact)
    return bool(usage.update(redeemed_count=F("redeemed_count") + 1))


def issued_offer_redeem(
    *,
    issued_offer_id,
    transaction_id: str | None = None,
    context: BasketContext | None = None,
    actor: str = "",
    at: datetime | None = None,
    livemode: bool | None = None,
    contact_id=None,
) -> tuple[IssuedOffer, Evaluation | None]:
    """Redeem for good (until reinstated): directly, or through the transaction holding its lock.
    With a basket the discount is recomputed; without one, a lock's price is used. Never twice:
    the row lock and the transition table make exactly one of any number of parallel calls win.
    Raises OfferNotAvailable, OfferLocked, OfferNotApplicable, OfferLimitReached; NotFound for an
    offer outside `livemode` / `contact_id` when given."""
    with transaction.atomic():
        issued = _locked_row(issued_offer_id, livemode=livemode, contact_id=contact_id)
        now = timezone.now()
        if issued.status not in (Status.AVAILABLE, Status.LOCKED):
            raise _not_available(issued, issued.status)
        if _lock_is_live(issued, now) and issued.locked_transaction_id != (transaction_id or ""):
            raise _locked_by_other(issued)
        _check_offer_usable(issued, now)
        evaluation = _priced(issued, context)
        if evaluation is not None:
            discount = evaluation.discount
        elif _lock_is_live(issued, now):
            discount = issued.locked_discount
        else:
            discount = 0
        _count_redemption(issued, discount)
        issued_offer_transition(
            issued=issued,
            action="redeem",
            now=now,
            transaction_id=transaction_id or "",
            discount=discount,
            actor=actor,
            event_type="offer.redeemed",
            event_data={"transaction_id": transaction_id, "discount": discount},
            redeemed_transaction_id=transaction_id or "",
            redeemed_at=at or now,
            redeemed_discount=discount,
        )
    return issued, evaluation


def issued_offer_reinstate(*, issued_offer_id, actor: str = "", reason: str = "") -> IssuedOffer:
    """Undo a redemption: the offer is available again and its counters give back the use —
    only while the offer itself could still be used. Raises OfferNotAvailable."""
    with transaction.atomic():
        issued = _locked_row(issued_offer_id)
        now = timezone.now()
        if issued.status != Status.REDEEMED:
            raise _not_available(issued, f"{issued.status}, not redeemed")
        _check_offer_usable(issued, now)
        Offer.objects.filter(pk=issued.offer_id).update(
            redeemed_count=F("redeemed_count") - 1, discount_given=F("discount_given") - issued.redeemed_discount
        )
        OfferContactUsage.objects.filter(
            offer_id=issued.offer_id, contact_id=issued.contact_id, redeemed_count__gt=0
        ).update(redeemed_count=F("redeemed_count") - 1)
        issued_offer_transition(
            issued=issued,
            action="reinstate",
            now=now,
            transaction_id=issued.redeemed_transaction_id,
            discount=-issued.redeemed_discount,
            actor=actor or reason,
            event_type="offer.reinstated",
            redeemed_transaction_id="",
            redeemed_at=None,
            redeemed_discount=0,
        )
    return issued


def issued_offer_revoke(*, issued_offer_id, actor: str = "") -> IssuedOffer:
    with transaction.atomic():
        issued = _locked_row(issued_offer_id)
        return issued_offer_transition(issued=issued, action="revoke", now=timezone.now(), actor=actor)


# --- sweeps -----------------------------------------------------------------------------------


def _sweep(action: str, due: Q, now: datetime, batch_size: int) -> int:
    done = 0
    while True:
        with transaction.atomic():
            batch = list(
                IssuedOffer.objects.filter(due).select_for_update(skip_locked=True).order_by("pk")[:batch_size]
            )
            if not batch:
                return done
            _, to_status = TRANSITIONS[action]
            extra = {"locked_transaction_id": "", "locked_at": None, "locked_until": None, "locked_discount": 0}
            IssuedOffer.objects.filter(pk__in=[issued.pk for issued in batch]).update(
                status=to_status, updated_at=now, **extra
            )
            IssuedOfferTransition.objects.bulk_create(
                IssuedOfferTransition(
                    issued_offer=issued,
                    action=action,
                    from_status=issued.status,
                    to_status=to_status,
                    transaction_id=issued.locked_transaction_id,
                    actor="system",
                    created_at=now,
                )
                for issued in batch
            )
            done += len(batch)


def issued_offer_locks_release(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Bulk release of locks whose time ran out (they already count as free; this tidies up)."""
    now = now or timezone.now()
    return _sweep("release", Q(status=Status.LOCKED, locked_until__lte=now), now, batch_size)


def issued_offers_expire_due(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Expire issued offers past their date that were not redeemed (a live lock keeps its offer
    until the lock ends)."""
    now = now or timezone.now()
    due = Q(expires_at__lte=now) & (Q(status=Status.AVAILABLE) | Q(status=Status.LOCKED, locked_until__lte=now))
    return _sweep("expire", due, now, batch_size)


# --- external systems -------------------------------------------------------------------------


def external_redemption_record(
    *,
    livemode: bool,
    issued_offer_id=None,
    external_reference: str | None = None,
    redeemed_at: datetime | None = None,
    transaction_id: str = "",
    actor: str = "",
) -> tuple[IssuedOffer, bool]:
    """An external offer system reports that it redeemed one of its offers: reconcile it.
    Returns (issued offer, created) — a repeat of the same report is a no-op. Raises NotFound,
    OfferNotAvailable (redeemed elsewhere: by another transaction, or revoked/expired)."""
    lookup = IssuedOffer.objects.filter(livemode=livemode)
    lookup = (
        lookup.filter(pk=issued_offer_id) if issued_offer_id else lookup.filter(external_reference=external_reference)
    )
    issued = lookup.first()
    if issued is None:
        name, value = (
            ("issued_offer_id", issued_offer_id) if issued_offer_id else ("external_reference", external_reference)
        )
        raise NotFound("No such issued offer.", parameters=[NotFound.parameter(name, value=str(value))])
    # The row lock is held from the repeat check through the redemption: a repeat of the report
    # arriving meanwhile waits, then finds it redeemed by the same transaction (not a conflict).
    with transaction.atomic():
        issued = _locked_row(issued.pk)
        if issued.status == Status.REDEEMED:
            if issued.redeemed_transaction_id == (transaction_id or ""):
                return issued, False
            raise OfferNotAvailable(
                "This offer was already redeemed by another transaction.",
                parameters=[OfferNotAvailable.parameter("transaction_id", value=issued.redeemed_transaction_id)],
            )
        issued, _ = issued_offer_redeem(
            issued_offer_id=issued.pk,
            transaction_id=transaction_id or "",
            actor=actor or "external",
            at=redeemed_at,
        )
    return issued, True
