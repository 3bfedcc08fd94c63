"""The discount engine: pure functions that say whether an offer applies to a basket in a given
place and time, what it gives (per line and in total), and why not when it does not.

No database access: the caller builds `OfferSpec`s once (selectors do it in a fixed number of
queries) and passes plain data. Rounding happens once per offer on its total, then the total is
spread over lines by largest remainder, so the per-line parts always add up to the total.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal

from catalogue.models import line_matches_restrictions
from core.baskets import BasketLine
from core.money import CURRENCY_EXPONENTS

MONEY_BENEFITS = {"percent_off", "amount_off", "fixed_price", "free_item"}


@dataclass(frozen=True)
class OfferSpec:
    id: str
    benefit_type: str
    benefit_value: Decimal
    currency: str = ""
    applies_to: str = "qualifying_items"
    cap_amount: int | None = None
    includes: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    excludes: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    min_spend: int = 0
    min_quantity: Decimal = Decimal(0)
    channels: frozenset[str] = field(default_factory=frozenset)
    venue_ids: frozenset[str] = field(default_factory=frozenset)
    days_of_week: frozenset[int] = field(default_factory=frozenset)
    hour_from: time | None = None
    hour_until: time | None = None
    priority: int = 0
    is_exclusive: bool = False


@dataclass(frozen=True)
class BasketContext:
    lines: Sequence[BasketLine]
    currency: str
    at: datetime
    channel: str | None = None
    venue_id: str | None = None
    venue_time_zone: str = "UTC"


@dataclass
class Evaluation:
    offer_id: str
    applicable: bool
    reasons: list[str] = field(default_factory=list)
    discount: int = 0  # minor units off the basket
    line_discounts: list[tuple[int, int]] = field(default_factory=list)  # (line index, minor units)
    bonus_points: int = 0
    points_multiplier: Decimal | None = None
    qualifying_lines: list[int] = field(default_factory=list)


def place_and_time_reasons(offer: OfferSpec, context: BasketContext) -> list[str]:
    """Why the offer cannot be used here and now (empty when it can): channel, venue, weekday and
    hours, the latter two in the venue's local time."""
    reasons = []
    if offer.channels and context.channel not in offer.channels:
        reasons.append("wrong_channel")
    if offer.venue_ids and context.venue_id not in offer.venue_ids:
        reasons.append("wrong_venue")
    local = context.at.astimezone(zoneinfo.ZoneInfo(context.venue_time_zone or "UTC"))
    if offer.days_of_week and local.isoweekday() not in offer.days_of_week:
        reasons.append("wrong_day")
    if (offer.hour_from and local.time() < offer.hour_from) or (offer.hour_until and local.time() >= offer.hour_until):
        reasons.append("outside_hours")
    return reasons


def qualifying_line_indexes(offer: OfferSpec, lines: Sequence[BasketLine]) -> list[int]:
    indexes = []
    for index, line in enumerate(lines):
        as_dict = line.as_dict()
        if offer.includes and not line_matches_restrictions(as_dict, offer.includes):
            continue
        if offer.excludes and line_matches_restrictions(as_dict, offer.excludes):
            continue
        indexes.append(index)
    return indexes


def spread(total: int, indexes: Sequence[int], weights: Sequence[int]) -> list[tuple[int, int]]:
    """Split `total` over the lines in proportion to their amounts (largest remainder)."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return []
    shares = [total * weight // weight_sum for weight in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return [(indexes[i], share) for i, share in enumerate(shares) if share]


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def evaluate(offer: OfferSpec, context: BasketContext, remaining: Sequence[int] | None = None) -> Evaluation:
    """Does `offer` apply to the basket here and now, and what does it give?

    `remaining` (minor units left on each line after offers applied before this one) lets
    offers stack without discounting the same money twice; by default, the line amounts.
    """
    lines = context.lines
    amounts = list(remaining) if remaining is not None else [line.amount for line in lines]
    result = Evaluation(offer_id=offer.id, applicable=False)
    result.reasons.extend(place_and_time_reasons(offer, context))
    if offer.benefit_type in ("amount_off", "fixed_price") and offer.currency and offer.currency != context.currency:
        result.reasons.append("wrong_currency")
    qualifying = qualifying_line_indexes(offer, lines)
    result.qualifying_lines = qualifying
    if not qualifying:
        result.reasons.append("no_qualifying_items")
    qualifying_spend = sum(lines[i].amount for i in qualifying)
    qualifying_quantity = sum((lines[i].quantity for i in qualifying), Decimal(0))
    if qualifying and qualifying_spend < offer.min_spend:
        result.reasons.append("min_spend_not_met")
    if qualifying and qualifying_quantity < offer.min_quantity:
        result.reasons.append("min_quantity_not_met")
    if result.reasons:
        return result

    if offer.benefit_type == "bonus_points":
        result.bonus_points = int(offer.benefit_value)
    elif offer.benefit_type == "points_multiplier":
        result.points_multiplier = offer.benefit_value
    else:
        targets = qualifying if offer.applies_to == "qualifying_items" else list(range(len(lines)))
        target_amounts = [amounts[i] for i in targets]
        base = sum(target_amounts)
        discount = _money_discount(offer, context, lines, targets, target_amounts, base)
        if offer.cap_amount is not None:
            discount = min(discount, offer.cap_amount)
        discount = max(0, min(discount, base))
        if discount == 0:
            result.reasons.append("nothing_to_discount")
            return result
        result.discount = discount
        if offer.benefit_type == "free_item":
            cheapest = min(qualifying, key=lambda i: (lines[i].unit_amount, i))
            result.line_discounts = [(cheapest, discount)]
        else:
            result.line_discounts = spread(discount, targets, target_amounts)
    result.applicable = True
    return result


def _money_discount(offer, context, lines, targets, target_amounts, base) -> int:
    exponent_scale = Decimal(10) ** _exponent(context.currency)
    if offer.benefit_type == "percent_off":
        return _round(Decimal(base) * offer.benefit_value / 100)
    if offer.benefit_type == "amount_off":
        return _round(offer.benefit_value * exponent_scale)
    if offer.benefit_type == "fixed_price":
        price = _round(offer.benefit_value * exponent_scale)
        if offer.applies_to == "basket":
            return base - price
        # Each qualifying unit for the fixed price.
        return sum(
            max(0, amount - _round(lines[i].quantity * price))
            for i, amount in zip(targets, target_amounts, strict=True)
        )
    if offer.benefit_type == "free_item":
        qualifying = [i for i in targets if lines[i].quantity > 0]
        if not qualifying:
            return 0
        cheapest = min(qualifying, key=lambda i: (lines[i].unit_amount, i))
        return min(lines[cheapest].unit_amount, target_amounts[targets.index(cheapest)])
    return 0


def _exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)


def best_combination(offers: Sequence[OfferSpec], context: BasketContext) -> list[Evaluation]:
    """Apply applicable offers in priority order on what is left of each line: an exclusive
    offer is used alone (the best single exclusive one, if it beats the combinable set)."""
    ordered = sorted(offers, key=lambda offer: (-offer.priority, offer.id))
    combinable, remaining = [], [line.amount for line in context.lines]
    for offer in ordered:
        if offer.is_exclusive:
            continue
        evaluation = evaluate(offer, context, remaining)
        if evaluation.applicable:
            for index, amount in evaluation.line_discounts:
                remaining[index] -= amount
            combinable.append(evaluation)
    chosen = combinable
    combinable_value = sum(evaluation.discount for evaluation in combinable)
    for offer in ordered:
        if not offer.is_exclusive:
            continue
        evaluation = evaluate(offer, context)
        if evaluation.applicable and evaluation.discount > combinable_value:
            chosen, combinable_value = [evaluation], evaluation.discount
    return chosen
