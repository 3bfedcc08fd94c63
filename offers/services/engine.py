"""The discount engine: pure functions that say whether an offer applies to a basket in a given
place and time, what it gives (per line and in total), and why not when it does not.

No database access: the caller builds `OfferSpec`s once (selectors do it in a fixed number of
queries) and passes plain data. Rounding happens once per offer on its total, then the total is
spread over lines by largest remainder, so the per-line parts always add up to the total.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

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

    @cached_property
    def line_index(self) -> dict[tuple[str, str], list[int]]:
        """(kind, value) → the lines it names: an offer's qualifying lines then cost its number of
        restrictions, not the number of lines (1,000 lines × 50 offers stays cheap)."""
        index: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, line in enumerate(self.lines):
            index[("sku", line.sku)].append(position)
            if line.family:
                index[("family", line.family)].append(position)
            if line.brand:
                index[("brand", line.brand)].append(position)
        return index

    @cached_property
    def amounts(self) -> tuple[int, ...]:
        """Each line's amount (read by every offer's evaluation: built once)."""
        return tuple(line.amount for line in self.lines)

    @cached_property
    def local_time(self) -> datetime:
        return self.at.astimezone(zoneinfo.ZoneInfo(self.venue_time_zone or "UTC"))


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
    local = context.local_time
    if offer.days_of_week and local.isoweekday() not in offer.days_of_week:
        reasons.append("wrong_day")
    if (offer.hour_from and local.time() < offer.hour_from) or (offer.hour_until and local.time() >= offer.hour_until):
        reasons.append("outside_hours")
    return reasons


def qualifying_line_indexes(
    offer: OfferSpec, lines: Sequence[BasketLine], line_index: dict[tuple[str, str], list[int]] | None = None
) -> list[int]:
    """Lines the offer's include restrictions name (all lines when there are none), less the
    lines its exclude restrictions name. With `line_index` (see BasketContext) it never walks
    the lines."""
    if line_index is None:
        return [
            index
            for index, line in enumerate(lines)
            if (not offer.includes or line_matches_restrictions(line.as_dict(), offer.includes))
            and not (offer.excludes and line_matches_restrictions(line.as_dict(), offer.excludes))
        ]
    if offer.includes:
        candidates = sorted({position for key in offer.includes for position in line_index.get(key, ())})
    else:
        candidates = range(len(lines))
    if not offer.excludes:
        return list(candidates)
    excluded = {position for key in offer.excludes for position in line_index.get(key, ())}
    return [position for position in candidates if position not in excluded]


def spread(total: int, indexes: Sequence[int], weights: Sequence[int]) -> list[tuple[int, int]]:
    """Split `total` over the lines in proportion to their amounts (largest remainder)."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return []
    shares = [total * weight // weight_sum for weight in weights]
    left = total - sum(shares)
    if left:
        # Largest remainders first; the stable sort keeps ties in line order (deterministic).
        negative_remainders = [-(total * weight % weight_sum) for weight in weights]
        for i in sorted(range(len(weights)), key=negative_remainders.__getitem__)[:left]:
            shares[i] += 1
    return [(indexes[i], share) for i, share in enumerate(shares) if share]


def _units_cost(quantity: Decimal, price: int) -> int:
    if quantity == quantity.to_integral_value():
        return int(quantity) * price
    return _round(quantity * price)


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def evaluate(offer: OfferSpec, context: BasketContext, remaining: Sequence[int] | None = None) -> Evaluation:
    """Does `offer` apply to the basket here and now, and what does it give?

    `remaining` (minor units left on each line after offers applied before this one) lets
    offers stack without discounting the same money twice; by default, the line amounts.
    """
    lines = context.lines
    line_amounts = context.amounts
    amounts = remaining if remaining is not None else line_amounts  # only read
    result = Evaluation(offer_id=offer.id, applicable=False)
    result.reasons.extend(place_and_time_reasons(offer, context))
    if offer.benefit_type in ("amount_off", "fixed_price") and offer.currency and offer.currency != context.currency:
        result.reasons.append("wrong_currency")
    qualifying = qualifying_line_indexes(offer, lines, context.line_index)
    result.qualifying_lines = qualifying
    if not qualifying:
        result.reasons.append("no_qualifying_items")
    if qualifying and offer.min_spend and sum(map(line_amounts.__getitem__, qualifying)) < offer.min_spend:
        result.reasons.append("min_spend_not_met")
    if (
        qualifying
        and offer.min_quantity
        and sum((lines[i].quantity for i in qualifying), Decimal(0)) < offer.min_quantity
    ):
        result.reasons.append("min_quantity_not_met")
    if result.reasons:
        return result

    if offer.benefit_type == "bonus_points":
        result.bonus_points = int(offer.benefit_value)
    elif offer.benefit_type == "points_multiplier":
        result.points_multiplier = offer.benefit_value
    else:
        targets = qualifying if offer.applies_to == "qualifying_items" else list(range(len(lines)))
        if offer.benefit_type == "free_item":
            # The free unit is the cheapest qualifying one, whatever the offer applies to.
            targets = qualifying
        target_amounts = list(map(amounts.__getitem__, targets))
        base = sum(target_amounts)
        savings = (
            _unit_savings(offer, context, lines, targets, target_amounts)
            if offer.benefit_type == "fixed_price" and offer.applies_to != "basket"
            else None
        )
        discount = _money_discount(offer, context, lines, targets, target_amounts, base, savings)
        if offer.cap_amount is not None:
            discount = min(discount, offer.cap_amount)
        discount = max(0, min(discount, base))
        if discount == 0:
            result.reasons.append("nothing_to_discount")
            return result
        result.discount = discount
        if offer.benefit_type == "free_item":
            result.line_discounts = [(_cheapest_unit_line(lines, targets), discount)]
        elif offer.benefit_type == "fixed_price" and offer.applies_to != "basket":
            # Each line gets what its own units save: a line already below the price gets nothing.
            result.line_discounts = spread(discount, targets, savings)
        else:
            result.line_discounts = spread(discount, targets, target_amounts)
    result.applicable = True
    return result


def _money_discount(offer, context, lines, targets, target_amounts, base, savings=None) -> int:
    exponent_scale = Decimal(10) ** _exponent(context.currency)
    if offer.benefit_type == "percent_off":
        return _round(Decimal(base) * offer.benefit_value / 100)
    if offer.benefit_type == "amount_off":
        return _round(offer.benefit_value * exponent_scale)
    if offer.benefit_type == "fixed_price":
        price = _round(offer.benefit_value * exponent_scale)
        if offer.applies_to == "basket":
            return base - price
        return sum(savings if savings is not None else _unit_savings(offer, context, lines, targets, target_amounts))
    if offer.benefit_type == "free_item":
        cheapest = _cheapest_unit_line(lines, targets)
        if cheapest is None:
            return 0
        return min(lines[cheapest].unit_amount, target_amounts[targets.index(cheapest)])
    return 0


def _unit_savings(offer, context, lines, targets, target_amounts) -> list[int]:
    """What each target line saves when each of its units costs the fixed price."""
    price = _round(offer.benefit_value * Decimal(10) ** _exponent(context.currency))
    return [
        max(0, amount - _units_cost(lines[i].quantity, price))
        for i, amount in zip(targets, target_amounts, strict=True)
    ]


def _cheapest_unit_line(lines, indexes) -> int | None:
    """The line (of `indexes`) with the cheapest unit, the earliest on a tie: the free item."""
    candidates = [i for i in indexes if lines[i].quantity > 0]
    return min(candidates, key=lambda i: (lines[i].unit_amount, i)) if candidates else None


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
