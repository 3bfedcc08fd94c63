"""Reads of wallets: the summary a till or app shows, the ledger, tiers and rules in force."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.db.models import Case, IntegerField, QuerySet, Sum, When
from django.db.models.functions import TruncMonth
from django.utils import timezone

from core.money import format_minor
from core.selectors import config_cached
from loyalty.models import Account, Contact, ContactTier, EarningRule, LedgerEntry, Lot, SpendCondition, Tier
from loyalty.services.earning import RuleSpec
from loyalty.services.tiers import qualifying_value
from loyalty.services.wallets import program_for

NEXT_EXPIRING_COUNT = 3


def _spend_condition_dict(condition: SpendCondition) -> dict:
    return {
        "name": condition.name,
        "skus": sorted(r.value for r in condition.restrictions.all() if r.kind == "sku"),
        "families": sorted(r.value for r in condition.restrictions.all() if r.kind == "family"),
        "brands": sorted(r.value for r in condition.restrictions.all() if r.kind == "brand"),
        "venues": sorted(str(venue.pk) for venue in condition.venues.all()),
        "days_of_week": condition.days_of_week,
        "hour_from": condition.hour_from.isoformat() if condition.hour_from else None,
        "hour_until": condition.hour_until.isoformat() if condition.hour_until else None,
    }


def _lot_is_spendable(lot: Lot, now: datetime) -> bool:
    return not lot.is_pending and (lot.expires_at is None or lot.expires_at > now)


def wallet_summary(*, contact: Contact, now: datetime | None = None) -> dict:
    """Points (available, pending, debt, what expires next), money balances with their spend
    conditions, the tier and the progress to the next one. A fixed number of queries."""
    now = now or timezone.now()
    accounts = list(Account.objects.filter(contact=contact))
    lots_by_account: dict[int, list[Lot]] = defaultdict(list)
    for lot in (
        Lot.objects.filter(account__contact=contact, remaining__gt=0)
        .select_related("spend_condition")
        .prefetch_related("spend_condition__restrictions", "spend_condition__venues")
        .order_by("expires_at", "id")
    ):
        lots_by_account[lot.account_id].append(lot)

    points = {"balance": 0, "available": 0, "pending": 0, "debt": 0, "next_expiring": []}
    money = []
    for account in sorted(accounts, key=lambda a: (a.kind, a.currency)):
        lots = lots_by_account[account.pk]
        available = sum(lot.remaining for lot in lots if _lot_is_spendable(lot, now))
        if account.kind == Account.Kind.POINTS:
            expiring: dict[datetime, int] = defaultdict(int)
            for lot in lots:
                if _lot_is_spendable(lot, now) and lot.expires_at is not None:
                    expiring[lot.expires_at] += lot.remaining
            points = {
                "balance": account.balance,
                "available": available,
                "pending": account.pending,
                "debt": max(0, -account.balance),
                "next_expiring": [
                    {"points": amount, "expires_at": expires_at}
                    for expires_at, amount in sorted(expiring.items())[:NEXT_EXPIRING_COUNT]
                ],
            }
            continue
        entry = {
            "kind": account.kind,
            "currency": account.currency,
            "balance": format_minor(account.balance, account.currency),
            "available": format_minor(available, account.currency),
            "pending": format_minor(account.pending, account.currency),
        }
        if account.kind == Account.Kind.COMMERCE:
            entry["lots"] = [
                {
                    "remaining": format_minor(lot.remaining, account.currency),
                    "expires_at": lot.expires_at,
                    "spend_conditions": _spend_condition_dict(lot.spend_condition) if lot.spend_condition else None,
                }
                for lot in lots
                if _lot_is_spendable(lot, now)
            ]
        money.append(entry)
    return {
        "contact_id": str(contact.pk),
        "livemode": contact.livemode,
        "points": points,
        "money": money,
        "tier": tier_progress(contact=contact, now=now),
    }


def _tier_dict(tier: Tier | None) -> dict | None:
    if tier is None:
        return None
    return {
        "id": tier.pk,
        "name": tier.name,
        "rank": tier.rank,
        "threshold": tier.threshold,
        "multiplier": str(tier.multiplier),
    }


def tier_progress(*, contact: Contact, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    program = program_for(livemode=contact.livemode)
    status = ContactTier.objects.filter(contact=contact).select_related("tier").first()
    current = status.tier if status else None
    value = qualifying_value(contact=contact, program=program, now=now)
    tiers = Tier.objects.filter(livemode=contact.livemode, is_active=True).order_by("rank")
    next_tier = tiers.filter(rank__gt=current.rank).first() if current else tiers.first()
    return {
        "current": _tier_dict(current),
        "achieved_at": status.achieved_at if status and current else None,
        "period_ends_at": status.period_ends_at if status and current else None,
        "basis": program.tier_basis,
        "window_months": program.tier_window_months,
        "qualifying_value": value,
        "next": _tier_dict(next_tier),
        "remaining_to_next": max(0, next_tier.threshold - value) if next_tier else None,
    }


def ledger_entries(*, contact: Contact, kind: str | None = None, account_kind: str | None = None) -> QuerySet:
    entries = LedgerEntry.objects.filter(contact=contact).select_related("account")
    if kind:
        entries = entries.filter(kind=kind)
    if account_kind:
        entries = entries.filter(account__kind=account_kind)
    return entries


def earning_rules_in_force(*, livemode: bool, currency: str, at: datetime, tier: Tier | None) -> list[RuleSpec]:
    """Rules that applied at `at` for a contact of `tier`: generic ones and the tier's own."""
    rules = config_cached(("earning-rules", livemode, currency), lambda: _active_rules(livemode, currency))
    tier_id = tier.pk if tier else None
    return [
        spec
        for spec, valid_from, valid_until, rule_tier_id in rules
        if (valid_from is None or valid_from <= at)
        and (valid_until is None or valid_until > at)
        and rule_tier_id in (None, tier_id)
    ]


def _active_rules(livemode: bool, currency: str) -> list[tuple]:
    rules = EarningRule.objects.filter(livemode=livemode, is_active=True, currency=currency).prefetch_related(
        "exclusions"
    )
    return [(RuleSpec.from_rule(rule), rule.valid_from, rule.valid_until, rule.tier_id) for rule in rules]


def tier_list(*, livemode: bool) -> QuerySet[Tier]:
    return Tier.objects.filter(livemode=livemode)


def earning_rule_list(*, livemode: bool) -> QuerySet[EarningRule]:
    return EarningRule.objects.filter(livemode=livemode).select_related("tier").prefetch_related("exclusions")


LIABILITY_HORIZONS = (30, 60, 90)


def liability_report(*, livemode: bool, now: datetime | None = None, months: int = 12) -> dict:
    """What the program owes and how it moves, for marketers and finance: outstanding points and
    money per currency (with pending and points debt), what expires in the next 30/60/90 days,
    and points earned/spent/expired per month. Aggregates only; a fixed number of queries."""
    now = now or timezone.now()
    balances = []
    for row in (
        Account.objects.filter(livemode=livemode)
        .values("kind", "currency")
        .annotate(
            outstanding=Sum(Case(When(balance__gt=0, then="balance"), default=0, output_field=IntegerField())),
            debt=Sum(Case(When(balance__lt=0, then="balance"), default=0, output_field=IntegerField())),
            pending=Sum("pending"),
        )
        .order_by("kind", "currency")
    ):
        balances.append({**row, "debt": -(row["debt"] or 0)})
    expiring = []
    horizons = {days: now + timedelta(days=days) for days in LIABILITY_HORIZONS}
    for row in (
        Lot.objects.filter(
            account__livemode=livemode,
            remaining__gt=0,
            expires_at__gt=now,
            expires_at__lte=horizons[LIABILITY_HORIZONS[-1]],
        )
        .values("account__kind", "account__currency")
        .annotate(
            **{
                f"within_{days}": Sum(
                    Case(When(expires_at__lte=moment, then="remaining"), default=0, output_field=IntegerField())
                )
                for days, moment in horizons.items()
            }
        )
        .order_by("account__kind", "account__currency")
    ):
        expiring.append(row)
    start = (now - relativedelta(months=months - 1)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    monthly: dict[str, dict[str, int]] = {}
    cursor = start
    while cursor <= now:
        monthly[cursor.strftime("%Y-%m")] = {"earn": 0, "spend": 0, "expire": 0}
        cursor += relativedelta(months=1)
    for row in (
        LedgerEntry.objects.filter(
            livemode=livemode,
            account__kind=Account.Kind.POINTS,
            occurred_at__gte=start,
            kind__in=["earn", "spend", "expire"],
        )
        .annotate(month=TruncMonth("occurred_at"))
        .values("month", "kind")
        .annotate(total=Sum("amount"))
    ):
        key = row["month"].strftime("%Y-%m")
        if key in monthly:
            monthly[key][row["kind"]] = abs(row["total"])
    return {"generated_at": now, "balances": balances, "expiring": expiring, "monthly_points": monthly}
