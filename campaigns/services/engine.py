"""The campaign engine: pure functions that say whether a campaign fires for a cause (a processed
purchase or an event), why not when it does not, what the cause adds to the campaign's goal and
what the campaign would give.

No database access: selectors build `CampaignSpec`s and `CauseFacts` and pass plain data. The
same functions serve live processing (`campaigns.services.evaluation`) and simulation, so a
simulation shows exactly what launching would do. Goals, per-contact limits and budgets depend
on what was awarded before; the callers keep that state (in the database under a row lock, or in
memory when simulating) and use `period_start` to bound it.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from core.baskets import BasketLine
from offers.services.engine import BasketContext

# The event types the system raises for triggers that are not an integrator's event.
SYSTEM_EVENT_FOR_TRIGGER = {
    "contact_registered": "contact.registered",
    "tier_changed": "tier.changed",
    "birthday": "birthday",
}
FILTER_OPERATORS = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "not_exists", "contains"}


@dataclass(frozen=True)
class OutcomeSpec:
    kind: str
    points: int = 0
    multiplier: Decimal = Decimal(1)
    cashback_percent: Decimal = Decimal(0)
    cashback_amount: int = 0
    cashback_cap: int | None = None
    balance: str = "open"
    spend_condition_id: int | None = None
    offer_id: str | None = None
    message_variant: str | None = None  # the variant's name
    message_template: Any = None


@dataclass(frozen=True)
class CampaignSpec:
    id: str
    name: str
    trigger: str
    event_type: str = ""
    to_tier_id: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    time_zone: str = "UTC"
    audience: str = "all"
    audience_tier_ids: frozenset[int] = field(default_factory=frozenset)
    audience_filters: tuple = ()
    currency: str = ""
    min_spend: int = 0
    min_quantity: Decimal = Decimal(0)
    channels: frozenset[str] = field(default_factory=frozenset)
    venue_ids: frozenset[str] = field(default_factory=frozenset)
    days_of_week: frozenset[int] = field(default_factory=frozenset)
    hour_from: time | None = None
    hour_until: time | None = None
    event_filters: tuple = ()
    nth_purchase: int | None = None
    includes: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    excludes: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    goal_metric: str = ""
    goal_target: int = 0
    goal_period: str = "campaign"
    goal_period_days: int = 30
    limit_per_contact: int | None = None
    limit_period: str = "campaign"
    limit_period_days: int = 30
    has_budget: bool = False
    budget_awards: int | None = None
    budget_points: int | None = None
    budget_money: int | None = None
    priority: int = 0
    stops_lower_priority: bool = False
    outcomes: tuple[OutcomeSpec, ...] = ()


@dataclass(frozen=True)
class CauseFacts:
    """What happened, as every campaign sees it."""

    kind: str  # "purchase" or "event"
    key: str  # "txn:<id>" or "event:<id>": with the campaign and contact, the idempotency key
    occurred_at: datetime
    contact_id: str
    tier_id: int | None = None
    contact_attributes: dict = field(default_factory=dict)
    audience_list_campaign_ids: frozenset[str] = field(default_factory=frozenset)
    # purchases
    basket: BasketContext | None = None
    base_points: int = 0
    purchase_number: int | None = None  # 1 for the contact's first processed purchase
    # events
    event_type: str = ""
    event_attributes: dict = field(default_factory=dict)


@dataclass
class Decision:
    campaign_id: str
    fires: bool
    reasons: list[str] = field(default_factory=list)
    contribution: int = 0  # what the cause adds to the goal
    qualifying_amount: int = 0
    points: int = 0
    money: int = 0
    currency: str = ""
    offer_ids: list[str] = field(default_factory=list)
    messages: list[OutcomeSpec] = field(default_factory=list)


# --- filters -------------------------------------------------------------------------------


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (ArithmeticError, ValueError):
        return None


def filter_matches(condition: dict, attributes: dict) -> bool:
    """One `{"attribute", "operator", "value"}` filter against a dict of attributes. Numbers
    compare as numbers (an event's `"12"` equals `12`); everything else compares as text."""
    name, operator, expected = condition.get("attribute"), condition.get("operator", "eq"), condition.get("value")
    present = name in attributes and attributes[name] is not None
    actual = attributes.get(name)
    if operator == "exists":
        return present
    if operator == "not_exists":
        return not present
    if operator in ("in", "not_in"):
        options = expected if isinstance(expected, list) else [expected]
        found = present and any(_equal(actual, option) for option in options)
        return found if operator == "in" else not found
    if operator == "ne":
        return not (present and _equal(actual, expected))
    if not present:
        return False
    if operator == "eq":
        return _equal(actual, expected)
    if operator == "contains":
        if isinstance(actual, list):
            return any(_equal(item, expected) for item in actual)
        return str(expected).lower() in str(actual).lower()
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        left, right = str(actual), str(expected)  # type: ignore[assignment]
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}.get(operator, False)


def _equal(actual: Any, expected: Any) -> bool:
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None:
        return left == right
    return str(actual).lower() == str(expected).lower()


def filters_match(filters: tuple | list, attributes: dict) -> bool:
    return all(filter_matches(condition, attributes or {}) for condition in filters)


# --- periods -------------------------------------------------------------------------------


def period_start(
    period: str, days: int, at: datetime, time_zone: str, campaign_start: datetime | None
) -> datetime | None:
    """Where the period holding `at` began (None: since the beginning of time). Calendar periods
    are cut in the campaign's time zone."""
    if period == "campaign":
        return campaign_start
    if period == "rolling":
        return at - timedelta(days=days)
    local = at.astimezone(zoneinfo.ZoneInfo(time_zone or "UTC"))
    day = local.date()
    if period == "week":
        day = day - timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    elif period == "year":
        day = date(day.year, 1, 1)
    return datetime.combine(day, time(0), tzinfo=local.tzinfo)


# --- evaluation ----------------------------------------------------------------------------


def trigger_reasons(spec: CampaignSpec, facts: CauseFacts) -> list[str]:
    if spec.trigger == "purchase":
        return [] if facts.kind == "purchase" else ["wrong_trigger"]
    if facts.kind != "event":
        return ["wrong_trigger"]
    wanted = spec.event_type if spec.trigger == "event" else SYSTEM_EVENT_FOR_TRIGGER.get(spec.trigger)
    if facts.event_type != wanted:
        return ["wrong_trigger"]
    if (
        spec.trigger == "tier_changed"
        and spec.to_tier_id is not None
        and str(facts.event_attributes.get("to_tier_id")) != str(spec.to_tier_id)
    ):
        return ["wrong_tier"]
    return []


def audience_reasons(spec: CampaignSpec, facts: CauseFacts) -> list[str]:
    if spec.audience == "tiers" and facts.tier_id not in spec.audience_tier_ids:
        return ["not_in_audience_tier"]
    if spec.audience == "attributes" and not filters_match(spec.audience_filters, facts.contact_attributes):
        return ["not_in_audience"]
    if spec.audience == "list" and spec.id not in facts.audience_list_campaign_ids:
        return ["not_in_audience_list"]
    return []


def _local(spec: CampaignSpec, facts: CauseFacts) -> datetime:
    if facts.basket is not None and facts.basket.venue_id:
        return facts.basket.local_time
    return facts.occurred_at.astimezone(zoneinfo.ZoneInfo(spec.time_zone or "UTC"))


def evaluate(spec: CampaignSpec, facts: CauseFacts) -> Decision:
    """Does the campaign fire for this cause (before goals, limits and budgets), what does the
    cause add to its goal and what would it give? Every failed condition is named."""
    decision = Decision(campaign_id=spec.id, fires=False)
    reasons = trigger_reasons(spec, facts)
    if reasons:
        decision.reasons = reasons
        return decision  # a campaign listening for something else says nothing more
    if spec.starts_at and facts.occurred_at < spec.starts_at:
        reasons.append("before_campaign")
    if spec.ends_at and facts.occurred_at >= spec.ends_at:
        reasons.append("after_campaign")
    reasons += audience_reasons(spec, facts)
    local = _local(spec, facts)
    if spec.days_of_week and local.isoweekday() not in spec.days_of_week:
        reasons.append("wrong_day")
    if (spec.hour_from and local.time() < spec.hour_from) or (spec.hour_until and local.time() >= spec.hour_until):
        reasons.append("outside_hours")
    quantity = Decimal(0)
    basket = facts.basket
    if facts.kind == "purchase" and basket is not None:
        if spec.channels and basket.channel not in spec.channels:
            reasons.append("wrong_channel")
        if spec.venue_ids and basket.venue_id not in spec.venue_ids:
            reasons.append("wrong_venue")
        money_rules = spec.min_spend or spec.goal_metric == "spend" or any(o.kind == "cashback" for o in spec.outcomes)
        if spec.currency and basket.currency != spec.currency and money_rules:
            reasons.append("wrong_currency")
        qualifying = _qualifying_lines(spec, basket)
        if (spec.includes or spec.excludes) and not qualifying:
            reasons.append("no_qualifying_items")
        decision.qualifying_amount = sum(line.amount for line in qualifying)
        quantity = sum((line.quantity for line in qualifying), Decimal(0))
        if spec.min_spend and decision.qualifying_amount < spec.min_spend:
            reasons.append("below_min_spend")
        if spec.min_quantity and quantity < spec.min_quantity:
            reasons.append("below_min_quantity")
        if spec.nth_purchase and facts.purchase_number != spec.nth_purchase:
            reasons.append("not_nth_purchase")
    if facts.kind == "event" and spec.event_filters and not filters_match(spec.event_filters, facts.event_attributes):
        reasons.append("event_filter_not_met")
    if reasons:
        decision.reasons = reasons
        return decision
    decision.fires = True
    if spec.goal_metric == "spend":
        decision.contribution = decision.qualifying_amount
    elif spec.goal_metric == "visits":
        decision.contribution = 1
    elif spec.goal_metric == "quantity":
        decision.contribution = int(quantity)
    _plan_outcomes(spec, facts, decision)
    return decision


def _qualifying_lines(spec: CampaignSpec, basket: BasketContext) -> list[BasketLine]:
    lines = basket.lines
    if not spec.includes and not spec.excludes:
        return list(lines)
    index = basket.line_index
    if spec.includes:
        positions: set[int] | range = {p for key in spec.includes for p in index.get(key, ())}
    else:
        positions = range(len(lines))
    excluded = {p for key in spec.excludes for p in index.get(key, ())} if spec.excludes else set()
    return [lines[p] for p in sorted(positions) if p not in excluded]


def _rounded(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _plan_outcomes(spec: CampaignSpec, facts: CauseFacts, decision: Decision) -> None:
    decision.currency = facts.basket.currency if facts.basket is not None else spec.currency
    for outcome in spec.outcomes:
        if outcome.kind == "points":
            decision.points += outcome.points
        elif outcome.kind == "points_multiplier":
            if facts.kind == "purchase" and outcome.multiplier > 1:
                decision.points += _rounded(Decimal(facts.base_points) * (outcome.multiplier - 1))
        elif outcome.kind == "cashback":
            amount = outcome.cashback_amount
            if outcome.cashback_percent:
                amount += _rounded(Decimal(decision.qualifying_amount) * outcome.cashback_percent / 100)
            if outcome.cashback_cap is not None:
                amount = min(amount, outcome.cashback_cap)
            if decision.currency:
                decision.money += max(amount, 0)
        elif outcome.kind == "issue_offer" and outcome.offer_id:
            decision.offer_ids.append(outcome.offer_id)
        elif outcome.kind == "message":
            decision.messages.append(outcome)


def goal_reached(spec: CampaignSpec, progress: int) -> bool:
    return not spec.goal_metric or progress >= spec.goal_target


def ordered(specs: list[CampaignSpec]) -> list[CampaignSpec]:
    """Evaluation order: priority, highest first; ties by id so every run agrees."""
    return sorted(specs, key=lambda spec: (-spec.priority, spec.id))
