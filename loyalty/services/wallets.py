"""Wallet operations built on the ledger: earning with the program's expiry and hold, money
credits with spend conditions, manual adjustments, spending (front-end or back-end reduction)
with one-time spend tokens, and pay-outs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from catalogue.models import line_matches_restrictions
from core.exceptions import InsufficientBalance, ValidationError
from core.money import check_currency, format_minor
from core.selectors import config_cached
from core.services import outbox_emit
from loyalty.exceptions import OtpExpired, OtpInvalid, OtpLocked, OtpRequired, OtpUsed, PayoutNotPending
from loyalty.models import (
    Account,
    Contact,
    LedgerEntry,
    Lot,
    Payout,
    Program,
    SpendCondition,
    SpendToken,
    WalletPreference,
)
from loyalty.services.earning import BasketLine
from loyalty.services.ledger import (
    Cause,
    account_get_or_create,
    ledger_credit,
    ledger_debit,
    ledger_reverse,
    spendable_lots,
)

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source
OTP_DIGITS = 6


def program_for(*, livemode: bool) -> Program:
    """The program settings of a mode (created with defaults on first use); cached per process
    for a few seconds (core.selectors.config_cached)."""
    program = config_cached(("program", livemode), lambda: Program.objects.filter(livemode=livemode).first())
    if program is not None:
        return program
    try:
        with transaction.atomic():
            return Program.objects.create(livemode=livemode)
    except IntegrityError:
        return Program.objects.get(livemode=livemode)


# --- credits ----------------------------------------------------------------------------------


def points_earn(
    *,
    contact: Contact,
    points: int,
    cause: Cause,
    kind: str = Kind.EARN,
    expiry_months: int | None = None,
    pending_days: int | None = None,
    counts_for_tier: bool = True,
    qualifying_spend: int = 0,
) -> LedgerEntry:
    """Credit points with the program's (or the rule's) lifetime and hold, counted from the
    cause's business time; a contact who now qualifies for a higher tier is upgraded at once.
    Safe to retry with the same cause."""
    program = program_for(livemode=contact.livemode)
    occurred_at = cause.occurred_at or timezone.now()
    months = program.points_expiry_months if expiry_months is None else expiry_months
    days = program.pending_days if pending_days is None else pending_days
    entry = ledger_credit(
        account=account_get_or_create(contact=contact, kind=Account.Kind.POINTS),
        amount=points,
        kind=kind,
        cause=cause,
        expires_at=occurred_at + relativedelta(months=months) if months else None,
        pending_until=occurred_at + timedelta(days=days) if days else None,
        qualifying_points=points if counts_for_tier else 0,
        qualifying_spend=qualifying_spend,
    )
    if counts_for_tier or qualifying_spend:
        from loyalty.services.tiers import tier_evaluate  # tiers build on this module

        tier_evaluate(contact=contact)
    return entry


def money_credit(
    *,
    contact: Contact,
    kind: str,
    currency: str,
    amount: int,
    cause: Cause,
    spend_condition: SpendCondition | None = None,
    expires_at: datetime | None = None,
    entry_kind: str = Kind.EARN,
) -> LedgerEntry:
    """Credit the open or commerce balance (commerce money carries its spend condition)."""
    if kind not in (Account.Kind.OPEN, Account.Kind.COMMERCE):
        raise ValidationError.for_field("kind", "Money goes to the open or the commerce balance.")
    if spend_condition is not None and kind != Account.Kind.COMMERCE:
        raise ValidationError.for_field("spend_condition", "Only commerce balances carry spend conditions.")
    return ledger_credit(
        account=account_get_or_create(contact=contact, kind=kind, currency=check_currency(currency)),
        amount=amount,
        kind=entry_kind,
        cause=cause,
        expires_at=expires_at,
        spend_condition_id=spend_condition.pk if spend_condition else None,
    )


def wallet_adjust(
    *, contact: Contact, kind: str, amount: int, reason: str, staff_user, currency: str = "", idempotency_key: str = ""
) -> LedgerEntry:
    """A manual correction by staff: positive credits (points with the program's expiry),
    negative debits (refused beyond what is available). The reason is mandatory and kept with
    the staff user on the entry."""
    if not (reason or "").strip():
        raise ValidationError.for_field("reason", "A manual adjustment needs a reason.")
    if not amount:
        raise ValidationError.for_field("amount", "The adjustment cannot be zero.")
    cause = Cause(
        Source.MANUAL,
        str(getattr(staff_user, "pk", "") or ""),
        idempotency_key or f"adjust:{secrets.token_hex(12)}",
        reason=reason.strip(),
        created_by_id=getattr(staff_user, "pk", None),
    )
    if kind == Account.Kind.POINTS and amount > 0:
        return points_earn(
            contact=contact, points=amount, cause=cause, kind=Kind.ADJUST, pending_days=0, counts_for_tier=False
        )
    account = account_get_or_create(contact=contact, kind=kind, currency=check_currency(currency) if currency else "")
    if amount > 0:
        return ledger_credit(account=account, amount=amount, kind=Kind.ADJUST, cause=cause)
    return ledger_debit(account=account, amount=-amount, kind=Kind.ADJUST, cause=cause)


# --- spending ---------------------------------------------------------------------------------


@dataclass
class SpendResult:
    currency: str
    requested: int
    approved: int = 0
    by_account: dict[str, int] = field(default_factory=dict)
    entries: list[LedgerEntry] = field(default_factory=list)
    payout: Payout | None = None

    def as_dict(self) -> dict:
        return {
            "currency": self.currency,
            "requested": format_minor(self.requested, self.currency),
            "approved": format_minor(self.approved, self.currency),
            "from_open": format_minor(self.by_account.get(Account.Kind.OPEN, 0), self.currency),
            "from_commerce": format_minor(self.by_account.get(Account.Kind.COMMERCE, 0), self.currency),
            "payout_id": str(self.payout.pk) if self.payout else None,
        }


def _condition_allows_place_and_time(condition: SpendCondition, venue, at: datetime) -> bool:
    venue_ids = {venue.pk for venue in condition.venues.all()}
    if venue_ids and (venue is None or venue.pk not in venue_ids):
        return False
    local = at.astimezone(zoneinfo.ZoneInfo(venue.time_zone if venue else settings.TIME_ZONE))
    if condition.days_of_week and local.isoweekday() not in condition.days_of_week:
        return False
    if condition.hour_from and local.time() < condition.hour_from:
        return False
    return not (condition.hour_until and local.time() >= condition.hour_until)


def _take_from_lines(line_values: list[int], indexes: Sequence[int], wanted: int) -> int:
    """Use up to `wanted` of the remaining value of the given lines; returns what was used."""
    used = 0
    for index in indexes:
        if used == wanted:
            break
        take = min(line_values[index], wanted - used)
        line_values[index] -= take
        used += take
    return used


def _plan_commerce(account, lines, line_values, venue, at, wanted) -> list[tuple[int, int]]:
    lots = spendable_lots(Lot.objects.filter(account=account, remaining__gt=0).order_by("expires_at", "id"), at)
    condition_ids = {lot.spend_condition_id for lot in lots if lot.spend_condition_id}
    conditions = {
        condition.pk: condition
        for condition in SpendCondition.objects.filter(pk__in=condition_ids).prefetch_related("venues", "restrictions")
    }
    line_dicts = [line.as_dict() for line in lines]
    plan, left = [], wanted
    for lot in sorted(lots, key=lambda lot: (lot.expires_at is None, lot.expires_at or at, lot.pk)):
        if left == 0:
            break
        condition = conditions.get(lot.spend_condition_id)
        indexes: Sequence[int] = range(len(lines))
        if condition is not None:
            if not _condition_allows_place_and_time(condition, venue, at):
                continue
            restrictions = frozenset((r.kind, r.value) for r in condition.restrictions.all())
            if restrictions:
                indexes = [i for i, line in enumerate(line_dicts) if line_matches_restrictions(line, restrictions)]
        take = _take_from_lines(line_values, indexes, min(lot.remaining, left))
        if take:
            plan.append((lot.pk, take))
            left -= take
    return plan


def _requested_by_preference(contact: Contact, available: int) -> int:
    preference = WalletPreference.objects.filter(contact=contact).first()
    if preference is None or preference.auto_spend == WalletPreference.AutoSpend.OFF:
        return 0
    if preference.auto_spend == WalletPreference.AutoSpend.ALL:
        return available
    return max(0, available - preference.auto_spend_threshold)


def wallet_spend(
    *,
    contact: Contact,
    currency: str,
    amount: int | None,
    lines: Sequence[BasketLine],
    cause: Cause,
    reduction: str = "front_end",
    venue=None,
    at: datetime | None = None,
    otp: str | None = None,
    otp_verified: bool = False,
    allow_partial: bool = True,
) -> SpendResult:
    """Approve and post the largest spend the contact's money allows on this basket, place and
    time (commerce money only where its conditions hold), up to `amount` (None = the contact's
    auto-spend preference). Front-end: the approved amount comes off the bill. Back-end: the
    approved amount becomes a pending pay-out.

    Checks the one-time spend token first (in its own transaction, so wrong attempts count even
    when the spend fails); call it outside an enclosing transaction when an otp is given, or
    redeem the token beforehand and pass `otp_verified=True`.
    Safe to retry with the same cause. Raises InsufficientBalance (allow_partial=False),
    OtpRequired/Invalid/Expired/Used/Locked, ValidationError.
    """
    currency = check_currency(currency)
    if amount is not None and amount <= 0:
        raise ValidationError.for_field("spend.amount", "The spend amount must be positive.")
    if reduction not in ("front_end", "back_end"):
        raise ValidationError.for_field("spend.reduction", "Use front_end or back_end.")
    program = program_for(livemode=contact.livemode)
    if otp and not otp_verified:
        spend_token_redeem(contact=contact, code=otp)
    elif program.spend_requires_otp and amount is not None and not otp_verified:
        raise OtpRequired(parameters=[OtpRequired.parameter("spend.otp")])
    at = at or timezone.now()
    with transaction.atomic():
        accounts = {
            kind: account_get_or_create(contact=contact, kind=kind, currency=currency)
            for kind in (Account.Kind.OPEN, Account.Kind.COMMERCE)
        }
        # Lock both in id order: concurrent spends on the same wallet serialise without deadlock.
        locked = {
            a.pk: a
            for a in Account.objects.select_for_update().filter(pk__in=[a.pk for a in accounts.values()]).order_by("pk")
        }
        accounts = {kind: locked[account.pk] for kind, account in accounts.items()}
        line_values = [line.amount for line in lines]
        basket_total = sum(line_values)
        order = (
            [Account.Kind.COMMERCE, Account.Kind.OPEN]
            if program.spend_order == Program.SpendOrder.COMMERCE_FIRST
            else [Account.Kind.OPEN, Account.Kind.COMMERCE]
        )
        # First, how much could be spent at most (for auto-spend and the error message).
        probe_values = list(line_values)
        possible = {}
        for kind in order:
            account = accounts[kind]
            if kind == Account.Kind.COMMERCE:
                possible[kind] = _plan_commerce(account, lines, probe_values, venue, at, basket_total)
            else:
                open_available = sum(lot.remaining for lot in spendable_lots(account.lots.filter(remaining__gt=0), at))
                taken = _take_from_lines(probe_values, range(len(lines)), open_available)
                possible[kind] = taken
        available = sum(take for _, take in possible[Account.Kind.COMMERCE]) + possible[Account.Kind.OPEN]
        requested = _requested_by_preference(contact, available) if amount is None else amount
        result = SpendResult(currency=currency, requested=requested)
        if requested == 0:
            return result
        if requested > available and not allow_partial:
            raise InsufficientBalance(
                f"Only {format_minor(available, currency)} {currency} can be spent on this basket.",
                parameters=[InsufficientBalance.parameter("spend.amount", available=format_minor(available, currency))],
            )
        left = min(requested, available)
        entry_kind = Kind.SPEND if reduction == "front_end" else Kind.PAYOUT
        for kind in order:
            if left == 0:
                break
            account = accounts[kind]
            if kind == Account.Kind.COMMERCE:
                plan, budget = [], left
                for lot_id, take in possible[kind]:
                    if budget == 0:
                        break
                    plan.append((lot_id, min(take, budget)))
                    budget -= plan[-1][1]
                total = sum(take for _, take in plan)
            else:
                plan, total = None, min(possible[kind], left)
            if total == 0:
                continue
            entry = ledger_debit(
                account=account,
                amount=total,
                kind=entry_kind,
                cause=Cause(cause.source_type, cause.source_id, f"{cause.idempotency_key}:{kind}", cause.occurred_at),
                plan=plan,
            )
            result.entries.append(entry)
            result.by_account[kind] = total
            left -= total
        result.approved = sum(result.by_account.values())
        if reduction == "back_end" and result.approved:
            result.payout = payout_create(contact=contact, currency=currency, amount=result.approved, cause=cause)
        return result


# --- pay-outs ---------------------------------------------------------------------------------


def payout_create(*, contact: Contact, currency: str, amount: int, cause: Cause) -> Payout:
    """Record money owed back to the contact (back-end reduction) and announce it to payment
    systems through the outbox. Safe to retry with the same cause."""
    existing = Payout.objects.filter(livemode=contact.livemode, idempotency_key=cause.idempotency_key).first()
    if existing is not None:
        return existing
    preference = WalletPreference.objects.filter(contact=contact).first()
    payout = Payout.objects.create(
        livemode=contact.livemode,
        contact=contact,
        currency=currency,
        amount=amount,
        method=preference.payout_method if preference else WalletPreference.PayoutMethod.WALLET,
        reference=preference.payout_reference if preference else "",
        source_id=cause.source_id,
        idempotency_key=cause.idempotency_key,
    )
    outbox_emit(
        livemode=contact.livemode,
        event_type="payout.requested",
        payload={
            "payout_id": str(payout.pk),
            "contact_id": str(contact.pk),
            "amount": format_minor(amount, currency),
            "currency": currency,
            "method": payout.method,
            "reference": payout.reference,
            "source_id": payout.source_id,
        },
    )
    return payout


@transaction.atomic
def payout_settle(*, payout: Payout, paid: bool, failure_reason: str = "") -> Payout:
    """Mark a pending pay-out paid, or failed — a failed pay-out gives the money back to the
    wallet with reversal entries. Raises PayoutNotPending when already settled."""
    new_status = Payout.Status.PAID if paid else Payout.Status.FAILED
    updated = Payout.objects.filter(pk=payout.pk, status=Payout.Status.PENDING).update(
        status=new_status, settled_at=timezone.now(), failure_reason=failure_reason
    )
    if not updated:
        raise PayoutNotPending(parameters=[PayoutNotPending.parameter("payout", value=str(payout.pk))])
    payout.refresh_from_db()
    if not paid:
        debits = LedgerEntry.objects.filter(
            livemode=payout.livemode, idempotency_key__startswith=f"{payout.idempotency_key}:", kind=Kind.PAYOUT
        )
        for debit in debits:
            ledger_reverse(
                original=debit,
                cause=Cause(Source.PAYOUT, str(payout.pk), f"payout-failed:{debit.pk}", reason=failure_reason),
            )
    return payout


# --- one-time spend tokens --------------------------------------------------------------------


def _code_hash(token_id, code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"{token_id}:{code}".encode(), hashlib.sha256).hexdigest()


@transaction.atomic
def spend_token_issue(*, contact: Contact) -> tuple[SpendToken, str]:
    """A new numeric one-time code (returned once, stored hashed); earlier unused codes of the
    contact stop working."""
    program = program_for(livemode=contact.livemode)
    now = timezone.now()
    SpendToken.objects.filter(contact=contact, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    code = f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"
    token = SpendToken(
        livemode=contact.livemode,
        contact=contact,
        expires_at=now + timedelta(seconds=program.otp_ttl_seconds),
        max_attempts=program.otp_max_attempts,
        created_at=now,
    )
    token.code_hash = _code_hash(token.pk, code)
    token.save()
    return token, code


def spend_token_redeem(*, contact: Contact, code: str) -> SpendToken:
    """Use the contact's current code once. A wrong code costs an attempt (recorded even if the
    caller's work then fails); at the limit the code locks. Raises OtpInvalid (with the attempts
    left), OtpExpired, OtpUsed, OtpLocked."""
    now = timezone.now()
    token = SpendToken.objects.filter(contact=contact).order_by("-created_at").first()
    if token is None:
        raise OtpInvalid(parameters=[OtpInvalid.parameter("spend.otp", attempts_left=0)])
    if token.used_at is not None:
        raise OtpUsed(parameters=[OtpUsed.parameter("spend.otp")])
    if token.attempts >= token.max_attempts:
        raise OtpLocked(parameters=[OtpLocked.parameter("spend.otp")])
    if token.expires_at <= now:
        raise OtpExpired(parameters=[OtpExpired.parameter("spend.otp")])
    # Every try takes an attempt first, with a guarded update: parallel guessing cannot get
    # more tries than max_attempts.
    if not SpendToken.objects.filter(pk=token.pk, attempts__lt=F("max_attempts"), used_at__isnull=True).update(
        attempts=F("attempts") + 1
    ):
        raise OtpLocked(parameters=[OtpLocked.parameter("spend.otp")])
    if not hmac.compare_digest(token.code_hash, _code_hash(token.pk, str(code).strip())):
        attempts_left = max(0, token.max_attempts - token.attempts - 1)
        if attempts_left == 0:
            raise OtpLocked(parameters=[OtpLocked.parameter("spend.otp")])
        raise OtpInvalid(parameters=[OtpInvalid.parameter("spend.otp", attempts_left=attempts_left)])
    # Single use even under concurrency: only one request can flip used_at from NULL.
    if not SpendToken.objects.filter(pk=token.pk, used_at__isnull=True).update(used_at=now):
        raise OtpUsed(parameters=[OtpUsed.parameter("spend.otp")])
    return token
