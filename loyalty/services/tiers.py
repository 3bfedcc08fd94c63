"""Tiers: qualification over a rolling window, immediate upgrades, downgrades by policy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from core.exceptions import ValidationError
from core.selectors import config_cached
from core.services import outbox_emit
from loyalty.exceptions import DuplicateTier
from loyalty.models import Contact, ContactChange, ContactTier, LedgerEntry, Program, Tier, TierHistory
from loyalty.services.changes import contact_change_record
from loyalty.services.wallets import program_for

TIER_FIELDS = ("name", "rank", "threshold", "multiplier", "description", "is_active")


def _qualifying_column(program: Program) -> str:
    return "qualifying_points" if program.tier_basis == Program.TierBasis.POINTS else "qualifying_spend"


def qualifying_value(*, contact: Contact, program: Program, now: datetime) -> int:
    """Points earned (or money spent, in minor units) within the program's rolling window."""
    since = now - relativedelta(months=program.tier_window_months)
    entries = LedgerEntry.objects.filter(contact=contact, occurred_at__gt=since, occurred_at__lte=now)
    total = entries.aggregate(total=Sum(_qualifying_column(program)))["total"]
    return total or 0


def _record(contact: Contact, status: ContactTier, new_tier: Tier | None, value: int, reason: str, now: datetime):
    old_tier = status.tier
    TierHistory.objects.create(
        livemode=contact.livemode,
        contact=contact,
        from_tier=old_tier,
        to_tier=new_tier,
        qualifying_value=value,
        reason=reason,
        created_at=now,
    )
    contact_change_record(livemode=contact.livemode, contact_id=contact.pk, kind=ContactChange.Kind.TIER_CHANGED)
    outbox_emit(
        livemode=contact.livemode,
        event_type="tier.changed",
        payload={
            "contact_id": str(contact.pk),
            "from_tier": old_tier.name if old_tier else None,
            "to_tier": new_tier.name if new_tier else None,
            "from_tier_id": old_tier.pk if old_tier else None,
            "to_tier_id": new_tier.pk if new_tier else None,
            "reason": reason,
            "qualifying_value": value,
        },
    )


def active_tiers(*, livemode: bool) -> list[Tier]:
    """Active tiers of a mode, lowest first (cached per process for a few seconds)."""
    return config_cached(
        ("tiers", livemode), lambda: list(Tier.objects.filter(livemode=livemode, is_active=True).order_by("rank"))
    )


def _locked_status(contact: Contact, program: Program | None = None, now: datetime | None = None) -> ContactTier:
    """The contact's tier row, locked; with `program`, carrying the qualifying value at `now`
    (`status.value`), read in the same statement."""
    if program is not None and connection.vendor == "postgresql":
        status = _locked_status_with_value(contact, program, now)
        if status is not None:
            return status
    locked = ContactTier.objects.select_for_update(of=("self",)).select_related("tier")
    status = locked.filter(contact=contact).first()
    if status is None:
        ContactTier.objects.get_or_create(contact=contact)
        status = locked.get(contact=contact)
    if program is not None:
        status.value = qualifying_value(contact=contact, program=program, now=now)
    return status


def _locked_status_with_value(contact: Contact, program: Program, now: datetime) -> ContactTier | None:
    """One statement at every earning (the ORM's version of it costs more to build than to
    run); None when the contact has no tier row yet."""
    since = now - relativedelta(months=program.tier_window_months)
    column, entries, statuses = _qualifying_column(program), LedgerEntry._meta.db_table, ContactTier._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status.tier_id, status.achieved_at, status.period_ends_at, status.below_threshold_since, "
            f"status.updated_at, COALESCE((SELECT SUM(entry.{column}) FROM {entries} AS entry "
            "WHERE entry.contact_id = status.contact_id AND entry.occurred_at > %s AND entry.occurred_at <= %s), 0) "
            f"FROM {statuses} AS status WHERE status.contact_id = %s FOR UPDATE OF status",
            [since, now, contact.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    tier_id, achieved_at, period_ends_at, below_threshold_since, updated_at, value = row
    status = ContactTier(
        contact_id=contact.pk,
        achieved_at=achieved_at,
        period_ends_at=period_ends_at,
        below_threshold_since=below_threshold_since,
        updated_at=updated_at,
    )
    status.tier = tier_by_id(livemode=contact.livemode, tier_id=tier_id)
    status._state.adding = False
    status._state.db = connection.alias
    status.value = value
    return status


def tier_by_id(*, livemode: bool, tier_id: int | None) -> Tier | None:
    """A tier by id, from the cached active tiers when it is one of them (no query)."""
    if tier_id is None:
        return None
    return next((tier for tier in active_tiers(livemode=livemode) if tier.pk == tier_id), None) or Tier.objects.get(
        pk=tier_id
    )


@transaction.atomic(savepoint=False)
def tier_evaluate(*, contact: Contact, now: datetime | None = None) -> Tier | None:
    """Bring the contact's tier in line with its qualifying value: an upgrade takes effect at
    once; a downgrade follows the program's policy. Safe to call any time, from any number of
    workers (the contact's tier row is locked). Returns the tier the contact is in afterwards."""
    now = now or timezone.now()
    program = program_for(livemode=contact.livemode)
    tiers = active_tiers(livemode=contact.livemode)
    status = _locked_status(contact, program if tiers else None, now)
    if not tiers and status.tier is None:
        return None  # no tier program: nothing to qualify for
    value = status.value if tiers else qualifying_value(contact=contact, program=program, now=now)
    target = next((tier for tier in reversed(tiers) if tier.threshold <= value), None)
    current = status.tier
    current_rank = current.rank if current else -1
    target_rank = target.rank if target else -1
    period = relativedelta(months=program.tier_window_months)
    before = (status.tier_id, status.achieved_at, status.period_ends_at, status.below_threshold_since)
    if target_rank > current_rank:
        _record(contact, status, target, value, "upgrade", now)
        status.tier, status.achieved_at, status.period_ends_at, status.below_threshold_since = (
            target,
            now,
            now + period,
            None,
        )
    elif target_rank == current_rank:
        status.below_threshold_since = None
        if current and status.period_ends_at and status.period_ends_at <= now:
            status.period_ends_at = now + period  # re-qualified: a new period starts
    else:
        policy = program.tier_downgrade_policy
        status.below_threshold_since = status.below_threshold_since or now
        due = (
            policy == Program.DowngradePolicy.PERIOD_END and status.period_ends_at and status.period_ends_at <= now
        ) or (
            policy == Program.DowngradePolicy.AFTER_GRACE
            and (now - status.below_threshold_since).days >= program.tier_downgrade_grace_days
        )
        if due:
            _record(contact, status, target, value, "downgrade", now)
            status.tier = target
            status.achieved_at = now if target else None
            status.period_ends_at = now + period if target else None
            status.below_threshold_since = None
    if (status.tier_id, status.achieved_at, status.period_ends_at, status.below_threshold_since) != before:
        status.save()
    return status.tier


def tiers_review(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Re-evaluate every contact holding a tier (the beat task): downgrades come due with time
    even when nothing happens. Returns how many contacts changed tier."""
    now = now or timezone.now()
    changed, last_pk = 0, None
    while True:
        statuses = ContactTier.objects.filter(tier__isnull=False).order_by("contact_id")
        if last_pk is not None:
            statuses = statuses.filter(contact_id__gt=last_pk)
        batch = list(statuses.select_related("contact", "tier")[:batch_size])
        if not batch:
            return changed
        for status in batch:
            before = status.tier_id
            after = tier_evaluate(contact=status.contact, now=now)
            changed += (after.pk if after else None) != before
        last_pk = batch[-1].contact_id


def _check_tier(tier: Tier) -> None:
    if tier.threshold is None or tier.threshold < 0:
        raise ValidationError.for_field("threshold", "The threshold cannot be negative.")
    if tier.multiplier is None or tier.multiplier < 0:
        raise ValidationError.for_field("multiplier", "The multiplier cannot be negative.")
    if not (tier.name or "").strip():
        raise ValidationError.for_field("name", "A tier needs a name.")


def _save_tier(tier: Tier) -> Tier:
    _check_tier(tier)
    try:
        with transaction.atomic():
            tier.save()
    except IntegrityError:
        raise DuplicateTier(
            parameters=[DuplicateTier.parameter("rank", value=tier.rank), DuplicateTier.parameter("name")]
        ) from None
    return tier


def tier_create(*, livemode: bool, **fields: Any) -> Tier:
    """Raises ValidationError, DuplicateTier (rank or name taken in this mode)."""
    return _save_tier(Tier(livemode=livemode, **{key: value for key, value in fields.items() if key in TIER_FIELDS}))


def tier_update(*, tier: Tier, **fields: Any) -> Tier:
    for key, value in fields.items():
        if key in TIER_FIELDS:
            setattr(tier, key, value)
    return _save_tier(tier)
