"""The ledger: every movement of points and money goes through here.

Guarantees, whatever the concurrency:
- an account's `balance` equals the sum of its entries: both are written in one database
  transaction while the account row is locked (`SELECT … FOR UPDATE`);
- a cause posts at most once: each entry has a unique idempotency key per mode; a repeat with
  the same account and amount returns the first entry, anything else is a conflict;
- every lot write happens under its account's lock, so lots and balances never disagree;
- available money never goes negative (a check constraint backs the Python check).

Lock order: when one operation touches several accounts it locks them in id order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from core.exceptions import Conflict, InsufficientBalance, ValidationError
from loyalty.models import Account, LedgerEntry, Lot, LotConsumption, PointsShortfall, Program

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_MISMATCH"
    default_message = "This idempotency key already posted a different movement."


@dataclass(frozen=True)
class Cause:
    """Why an entry is posted: its source, the key that makes it post once, and business time."""

    source_type: str
    source_id: str
    idempotency_key: str
    occurred_at: datetime | None = None
    reason: str = ""
    created_by_id: int | None = None


def account_get_or_create(*, contact, kind: str, currency: str = "") -> Account:
    """The contact's account of that kind and currency, created on first use (race-safe)."""
    currency = "" if kind == Account.Kind.POINTS else currency
    if connection.vendor != "postgresql":
        account = Account.objects.filter(contact_id=contact.pk, kind=kind, currency=currency).first()
    else:
        account = _account_read(contact.pk, kind, currency)
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(livemode=contact.livemode, contact=contact, kind=kind, currency=currency)
    except IntegrityError:
        return Account.objects.get(contact_id=contact.pk, kind=kind, currency=currency)


def _account_read(contact_id, kind: str, currency: str) -> Account | None:
    """Plain SQL: read at every earning and spend, and the ORM takes longer to build this query
    than the database takes to answer it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, livemode, balance, pending, updated_at FROM {Account._meta.db_table} "
            "WHERE contact_id = %s AND kind = %s AND currency = %s",
            [contact_id, kind, currency],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    account_id, livemode, balance, pending, updated_at = row
    account = Account(
        id=account_id,
        livemode=livemode,
        contact_id=contact_id,
        kind=kind,
        currency=currency,
        balance=balance,
        pending=pending,
        updated_at=updated_at,
    )
    account._state.adding = False
    account._state.db = connection.alias
    return account


def _lock(account_id: int) -> Account:
    return Account.objects.select_for_update().get(pk=account_id)


def _existing(account: Account, cause: Cause, amount: int) -> LedgerEntry | None:
    entry = LedgerEntry.objects.filter(livemode=account.livemode, idempotency_key=cause.idempotency_key).first()
    if entry is None:
        return None
    if entry.account_id != account.pk or entry.amount != amount:
        raise IdempotencyKeyReused(
            parameters=[IdempotencyKeyReused.parameter("idempotency_key", value=cause.idempotency_key)]
        )
    return entry


def _insert_entry(
    account: Account, *, kind: str, amount: int, balance_after: int, cause: Cause, **extra
) -> LedgerEntry:
    now = timezone.now()
    return LedgerEntry.objects.create(
        livemode=account.livemode,
        account=account,
        contact_id=account.contact_id,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        source_type=cause.source_type,
        source_id=cause.source_id,
        idempotency_key=cause.idempotency_key,
        reason=cause.reason,
        created_by_id=cause.created_by_id,
        occurred_at=cause.occurred_at or now,
        created_at=now,
        **extra,
    )


def _save_account(account: Account, balance: int, pending: int) -> None:
    Account.objects.filter(pk=account.pk).update(balance=balance, pending=pending, updated_at=timezone.now())
    account.balance, account.pending = balance, pending


def _check_positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationError.for_field("amount", "The amount must be a positive whole number of units.")


def ledger_credit(
    *,
    account: Account,
    amount: int,
    kind: str,
    cause: Cause,
    expires_at: datetime | None = None,
    pending_until: datetime | None = None,
    spend_condition_id: int | None = None,
    qualifying_points: int = 0,
    qualifying_spend: int = 0,
    reverses: LedgerEntry | None = None,
) -> LedgerEntry:
    """Add `amount` (points or minor units) to the account and open a lot for it.

    Safe to retry with the same cause (returns the first entry). A points debt is paid first:
    only what exceeds it becomes spendable. `pending_until` in the future holds the lot back.
    Raises ValidationError (amount), IdempotencyKeyReused.
    """
    _check_positive(amount)
    credit = _Credit(
        account_id=account.pk,
        amount=amount,
        kind=kind,
        cause=cause,
        expires_at=expires_at,
        pending_until=pending_until,
        spend_condition_id=spend_condition_id,
        qualifying_points=qualifying_points,
        qualifying_spend=qualifying_spend,
        reverses_id=reverses.pk if reverses else None,
    )
    if connection.vendor == "postgresql" and settings.LEDGER_SQL_FAST_PATH:
        entry = _credit_in_one_statement(credit)
        if entry is not None:
            return entry
        # Nothing was written: the key had posted before. Return that entry, or refuse a reuse.
        return _existing(Account.objects.get(pk=account.pk), cause, amount)
    with transaction.atomic():
        return _credit_step_by_step(credit)


@dataclass(frozen=True)
class _Credit:
    account_id: int
    amount: int
    kind: str
    cause: Cause
    expires_at: datetime | None
    pending_until: datetime | None
    spend_condition_id: int | None
    qualifying_points: int
    qualifying_spend: int
    reverses_id: int | None


def _credit_step_by_step(credit: _Credit) -> LedgerEntry:
    """The portable path (SQLite, or the fast path switched off): lock, check, write."""
    account = _lock(credit.account_id)
    existing = _existing(account, credit.cause, credit.amount)
    if existing is not None:
        return existing
    now = timezone.now()
    spendable = credit.amount - min(credit.amount, max(0, -account.balance))
    is_pending = credit.pending_until is not None and credit.pending_until > now and spendable > 0
    balance = account.balance + credit.amount
    pending = account.pending + (spendable if is_pending else 0)
    entry = _insert_entry(
        account,
        kind=credit.kind,
        amount=credit.amount,
        balance_after=balance,
        cause=credit.cause,
        qualifying_points=credit.qualifying_points,
        qualifying_spend=credit.qualifying_spend,
        reverses_id=credit.reverses_id,
    )
    _save_account(account, balance, pending)
    Lot.objects.create(
        account=account,
        entry=entry,
        amount=credit.amount,
        remaining=spendable,
        expires_at=credit.expires_at,
        pending_until=credit.pending_until if is_pending else None,
        is_pending=is_pending,
        spend_condition_id=credit.spend_condition_id,
        created_at=now,
    )
    return entry


# One round trip, atomic on its own: lock the account row, insert the entry (nothing at all
# happens when the idempotency key exists: ON CONFLICT DO NOTHING leaves the later CTEs without
# rows), move the balance and open the lot. Reading the locked row's values in `account` gives
# the balance as of the lock, so balance_after and the new balance are exact under concurrency.
_CREDIT_SQL = """
WITH account AS (
    SELECT id, livemode, contact_id, balance, pending FROM loyalty_account WHERE id = %(account_id)s FOR UPDATE
), entry AS (
    INSERT INTO loyalty_ledgerentry (livemode, account_id, contact_id, kind, amount, balance_after, source_type,
        source_id, idempotency_key, reverses_id, qualifying_points, qualifying_spend, reason, created_by_id,
        occurred_at, created_at)
    SELECT livemode, id, contact_id, %(kind)s, %(amount)s, balance + %(amount)s, %(source_type)s, %(source_id)s,
        %(idempotency_key)s, %(reverses_id)s, %(qualifying_points)s, %(qualifying_spend)s, %(reason)s,
        %(created_by_id)s, %(occurred_at)s, %(now)s
    FROM account
    ON CONFLICT (livemode, idempotency_key) DO NOTHING
    RETURNING id, livemode, contact_id, balance_after
), credit AS (
    SELECT entry.id AS entry_id, %(amount)s - LEAST(%(amount)s, GREATEST(0, -account.balance)) AS spendable
    FROM entry, account
), moved AS (
    UPDATE loyalty_account
    SET balance = account.balance + %(amount)s,
        pending = account.pending + CASE WHEN %(may_be_pending)s THEN credit.spendable ELSE 0 END,
        updated_at = %(now)s
    FROM account, credit
    WHERE loyalty_account.id = account.id
    RETURNING loyalty_account.id
), lot AS (
    INSERT INTO loyalty_lot (account_id, entry_id, amount, remaining, expires_at, pending_until, is_pending,
        spend_condition_id, created_at)
    SELECT %(account_id)s, entry_id, %(amount)s, spendable, %(expires_at)s,
        CASE WHEN %(may_be_pending)s AND spendable > 0 THEN %(pending_until)s::timestamptz END,
        %(may_be_pending)s AND spendable > 0, %(spend_condition_id)s, %(now)s
    FROM credit
    RETURNING id
)
SELECT entry.id, entry.livemode, entry.contact_id, entry.balance_after FROM entry
"""


def _credit_in_one_statement(credit: _Credit) -> LedgerEntry | None:
    now = timezone.now()
    cause = credit.cause
    occurred_at = cause.occurred_at or now
    may_be_pending = credit.pending_until is not None and credit.pending_until > now
    with connection.cursor() as cursor:
        cursor.execute(
            _CREDIT_SQL,
            {
                "account_id": credit.account_id,
                "kind": credit.kind,
                "amount": credit.amount,
                "source_type": cause.source_type,
                "source_id": cause.source_id,
                "idempotency_key": cause.idempotency_key,
                "reverses_id": credit.reverses_id,
                "qualifying_points": credit.qualifying_points,
                "qualifying_spend": credit.qualifying_spend,
                "reason": cause.reason,
                "created_by_id": cause.created_by_id,
                "occurred_at": occurred_at,
                "now": now,
                "may_be_pending": may_be_pending,
                "pending_until": credit.pending_until,
                "expires_at": credit.expires_at,
                "spend_condition_id": credit.spend_condition_id,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    entry_id, livemode, contact_id, balance_after = row
    entry = LedgerEntry(
        id=entry_id,
        livemode=livemode,
        account_id=credit.account_id,
        contact_id=contact_id,
        kind=credit.kind,
        amount=credit.amount,
        balance_after=balance_after,
        source_type=cause.source_type,
        source_id=cause.source_id,
        idempotency_key=cause.idempotency_key,
        reverses_id=credit.reverses_id,
        qualifying_points=credit.qualifying_points,
        qualifying_spend=credit.qualifying_spend,
        reason=cause.reason,
        created_by_id=cause.created_by_id,
        occurred_at=occurred_at,
        created_at=now,
    )
    entry._state.adding = False
    entry._state.db = connection.alias
    return entry


def _open_lots(account: Account) -> list[Lot]:
    """Lots with something left, soonest-to-expire first (never-expiring last)."""
    return list(
        Lot.objects.filter(account=account, remaining__gt=0).order_by(
            "is_pending", F("expires_at").asc(nulls_last=True), "created_at", "id"
        )
    )


def _expire_lots(account: Account, lots: Iterable[Lot], now: datetime) -> int:
    """Post an expire entry for each lot whose time has come (caller holds the account lock)."""
    expired = 0
    for lot in lots:
        if lot.remaining <= 0 or lot.expires_at is None or lot.expires_at > now:
            continue
        cause = Cause(Source.EXPIRY, str(lot.pk), f"expire:lot:{lot.pk}", occurred_at=lot.expires_at)
        if _existing(account, cause, -lot.remaining) is not None:
            continue
        amount = lot.remaining
        balance = account.balance - amount
        pending = account.pending - (amount if lot.is_pending else 0)
        entry = _insert_entry(account, kind=Kind.EXPIRE, amount=-amount, balance_after=balance, cause=cause)
        _save_account(account, balance, pending)
        LotConsumption.objects.create(entry=entry, lot=lot, amount=amount)
        Lot.objects.filter(pk=lot.pk).update(remaining=0, is_pending=False)
        lot.remaining, lot.is_pending = 0, False
        expired += amount
    return expired


def spendable_lots(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    return [
        lot
        for lot in lots
        if lot.remaining > 0 and not lot.is_pending and (lot.expires_at is None or lot.expires_at > now)
    ]


@transaction.atomic
def ledger_debit(
    *,
    account: Account,
    amount: int,
    kind: str,
    cause: Cause,
    plan: list[tuple[int, int]] | None = None,
) -> LedgerEntry:
    """Take `amount` from the account: from the lots in `plan` ([(lot_id, amount)], chosen by
    the spend service for conditioned balances) or else soonest-to-expire first.

    Lots past their expiry are expired first, so spending never uses what has lapsed. Safe to
    retry with the same cause. Raises InsufficientBalance (with the available amount),
    ValidationError, IdempotencyKeyReused.
    """
    _check_positive(amount)
    account = _lock(account.pk)
    existing = _existing(account, cause, -amount)
    if existing is not None:
        return existing
    now = timezone.now()
    lots = _open_lots(account)
    _expire_lots(account, lots, now)
    usable = {lot.pk: lot for lot in spendable_lots(lots, now)}
    if plan is None:
        plan, left = [], amount
        for lot in usable.values():
            if left == 0:
                break
            take = min(left, lot.remaining)
            plan.append((lot.pk, take))
            left -= take
    available = sum(lot.remaining for lot in usable.values())
    planned = sum(take for _, take in plan)
    if planned != amount or any(lot_id not in usable or usable[lot_id].remaining < take for lot_id, take in plan):
        raise InsufficientBalance(
            f"Only {available} available on the {account.kind} account.",
            parameters=[
                InsufficientBalance.parameter("amount", requested=amount, available=available, account=account.kind)
            ],
        )
    balance = account.balance - amount
    entry = _insert_entry(account, kind=kind, amount=-amount, balance_after=balance, cause=cause)
    _save_account(account, balance, account.pending)
    changed = []
    for lot_id, take in plan:
        lot = usable[lot_id]
        lot.remaining -= take
        changed.append(lot)
    Lot.objects.bulk_update(changed, ["remaining"])
    LotConsumption.objects.bulk_create(
        [LotConsumption(entry=entry, lot_id=lot_id, amount=take) for lot_id, take in plan]
    )
    return entry


def entry_reversed_amount(original: LedgerEntry) -> int:
    """How much of an entry earlier reversals took back (shortfalls included)."""
    taken = LedgerEntry.objects.filter(reverses=original).aggregate(total=Sum("amount"))["total"] or 0
    shortfall = PointsShortfall.objects.filter(original_entry=original).aggregate(total=Sum("amount"))["total"] or 0
    return abs(taken) + shortfall


@transaction.atomic
def ledger_reverse(
    *,
    original: LedgerEntry,
    cause: Cause,
    amount: int | None = None,
    negative_policy: str | None = None,
) -> LedgerEntry | None:
    """Compensate (part of) an entry with a `reverse` entry; the original is never edited.

    Reversing a credit takes back from the lot it opened, then from other available lots; what
    the contact has already spent is, by program policy, a points debt (balance below zero) or
    a recorded shortfall (money always stops at zero). Reversing a debit gives the units back
    to the lots it consumed, with their original expiry. Cumulative reversals never exceed the
    original. Safe to retry. Returns None when nothing could be taken back (all shortfall).
    """
    remaining = abs(original.amount) - entry_reversed_amount(original)
    amount = remaining if amount is None else amount
    _check_positive(amount)
    if amount > remaining:
        raise ValidationError.for_field(
            "amount", f"Only {remaining} of this entry is left to reverse.", reversible=remaining
        )
    account = _lock(original.account_id)
    if original.amount > 0:
        return _reverse_credit(account, original, amount, cause, negative_policy)
    return _reverse_debit(account, original, amount, cause)


def _reverse_credit(account: Account, original: LedgerEntry, amount: int, cause: Cause, negative_policy: str | None):
    existing = LedgerEntry.objects.filter(livemode=account.livemode, idempotency_key=cause.idempotency_key).first()
    if existing is not None:
        return existing
    if PointsShortfall.objects.filter(idempotency_key=cause.idempotency_key).exists():
        return None
    now = timezone.now()
    lots = _open_lots(account)
    _expire_lots(account, lots, now)
    # The lot the original opened goes first (pending or not), then what else is spendable.
    own = [lot for lot in lots if lot.entry_id == original.pk and lot.remaining > 0]
    others = [lot for lot in spendable_lots(lots, now) if lot.entry_id != original.pk]
    plan, left = [], amount
    for lot in own + others:
        if left == 0:
            break
        take = min(left, lot.remaining)
        plan.append((lot, take))
        left -= take
    if negative_policy is None:
        negative_policy = Program.NegativePointsPolicy.CLAMP
    may_go_negative = account.kind == Account.Kind.POINTS and negative_policy == Program.NegativePointsPolicy.ALLOW_DEBT
    debt = left if may_go_negative else 0
    shortfall = left - debt
    taken = amount - shortfall
    entry = None
    if taken > 0:
        balance = account.balance - taken
        pending = account.pending - sum(take for lot, take in plan if lot.is_pending)
        entry = _insert_entry(
            account,
            kind=Kind.REVERSE,
            amount=-taken,
            balance_after=balance,
            cause=cause,
            reverses=original,
            qualifying_points=-_proportion(original.qualifying_points, taken, abs(original.amount)),
            qualifying_spend=-_proportion(original.qualifying_spend, taken, abs(original.amount)),
        )
        _save_account(account, balance, pending)
        for lot, take in plan:
            lot.remaining -= take
        Lot.objects.bulk_update([lot for lot, _ in plan], ["remaining"])
        LotConsumption.objects.bulk_create([LotConsumption(entry=entry, lot=lot, amount=take) for lot, take in plan])
    if shortfall > 0:
        PointsShortfall.objects.create(
            entry=entry,
            original_entry=original,
            account=account,
            amount=shortfall,
            source_id=cause.source_id,
            idempotency_key=cause.idempotency_key,
        )
    return entry


def _proportion(total: int, part: int, whole: int) -> int:
    return (total * part) // whole if whole else 0


def _reverse_debit(account: Account, original: LedgerEntry, amount: int, cause: Cause) -> LedgerEntry:
    existing = _existing(account, cause, amount)
    if existing is not None:
        return existing
    # Give back in consumption order, skipping what earlier reversals of this debit returned.
    restore, skip, left = [], entry_reversed_amount(original), amount
    for consumption in original.consumptions.select_related("lot").order_by("id"):
        portion = consumption.amount
        if skip >= portion:
            skip -= portion
            continue
        portion -= skip
        skip = 0
        take = min(portion, left)
        restore.append((consumption.lot, take))
        left -= take
        if left == 0:
            break
    debt_paid = min(amount, max(0, -account.balance))
    balance = account.balance + amount
    entry = _insert_entry(
        account,
        kind=Kind.REVERSE,
        amount=amount,
        balance_after=balance,
        cause=cause,
        reverses=original,
        qualifying_points=-_proportion(original.qualifying_points, amount, abs(original.amount)),
        qualifying_spend=-_proportion(original.qualifying_spend, amount, abs(original.amount)),
    )
    _save_account(account, balance, account.pending)
    new_lots = []
    for lot, take in restore:
        # Units that repay a points debt are not spendable again.
        repay = min(take, debt_paid)
        debt_paid -= repay
        new_lots.append(
            Lot(
                account=account,
                entry=entry,
                amount=take,
                remaining=take - repay,
                expires_at=lot.expires_at,
                spend_condition_id=lot.spend_condition_id,
            )
        )
    Lot.objects.bulk_create(new_lots)
    return entry


@transaction.atomic
def _expire_account(account_id: int, now: datetime) -> int:
    account = _lock(account_id)
    lots = Lot.objects.filter(account=account, remaining__gt=0, expires_at__lte=now).order_by("expires_at", "id")
    return _expire_lots(account, lots, now)


def lots_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Expire every lot whose time has come, one account per short transaction; returns the
    units expired. Idempotent (one expire entry per lot, keyed by lot) and safe to run in
    parallel with spending."""
    now = now or timezone.now()
    total = 0
    last_id = 0
    while True:
        account_ids = list(
            Lot.objects.filter(remaining__gt=0, expires_at__lte=now, account_id__gt=last_id)
            .order_by("account_id")
            .values_list("account_id", flat=True)
            .distinct()[:batch_size]
        )
        if not account_ids:
            return total
        for account_id in account_ids:
            total += _expire_account(account_id, now)
        last_id = account_ids[-1]


@transaction.atomic
def _release_account(account_id: int, now: datetime) -> int:
    account = _lock(account_id)
    lots = list(Lot.objects.filter(account=account, is_pending=True, pending_until__lte=now))
    released = sum(lot.remaining for lot in lots)
    if not lots:
        return 0
    Lot.objects.filter(pk__in=[lot.pk for lot in lots]).update(is_pending=False)
    _save_account(account, account.balance, account.pending - released)
    return released


def pending_lots_release(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Make pending earnings spendable once their hold ends; returns the units released."""
    now = now or timezone.now()
    total = 0
    last_id = 0
    while True:
        account_ids = list(
            Lot.objects.filter(is_pending=True, pending_until__lte=now, account_id__gt=last_id)
            .order_by("account_id")
            .values_list("account_id", flat=True)
            .distinct()[:batch_size]
        )
        if not account_ids:
            return total
        for account_id in account_ids:
            total += _release_account(account_id, now)
        last_id = account_ids[-1]


def account_spendable(*, account: Account, now: datetime | None = None) -> int:
    """What can be debited now: lots neither held nor past their expiry."""
    lots = Lot.objects.filter(account=account, remaining__gt=0, is_pending=False)
    lots = lots.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now()))
    return lots.aggregate(total=Sum("remaining"))["total"] or 0


def account_check(*, account: Account) -> list[str]:
    """What is wrong with an account's books (empty when consistent): balance == sum(entries),
    spendable lots == balance (or zero in debt), pending == sum(pending lots)."""
    problems = []
    account.refresh_from_db()
    entries_total = account.entries.aggregate(total=Sum("amount"))["total"] or 0
    if entries_total != account.balance:
        problems.append(f"balance {account.balance} != sum of entries {entries_total}")
    lots_total = account.lots.aggregate(total=Sum("remaining"))["total"] or 0
    if lots_total != max(account.balance, 0):
        problems.append(f"lots hold {lots_total}, balance is {account.balance}")
    pending_total = account.lots.filter(Q(is_pending=True)).aggregate(total=Sum("remaining"))["total"] or 0
    if pending_total != account.pending:
        problems.append(f"pending {account.pending} != pending lots {pending_total}")
    if account.kind != Account.Kind.POINTS and account.balance - account.pending < 0:
        problems.append("negative available money")
    return problems
