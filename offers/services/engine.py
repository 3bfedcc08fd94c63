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
    def unit_amounts(self) -> tuple[int | None, ...]:
        """Each line's unit price, None for a line without units (what a free item takes off)."""
        return tuple(line.unit_amount if line.quantity > 0 else None for line in self.lines)

    @cached_property
    def whole_quantities(self) -> tuple[int | None, ...]:
        """Each line's quantity as an int, None when it is not whole (priced at a fixed price)."""
        return tuple(
            int(line.quantity) if line.quantity == line.quantity.to_integral_value() else None for line in self.lines
        )

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


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def evaluate(offer: OfferSpec, context: BasketContext, remaining: Sequence[int] | None = None) -> Evaluation:
    """Does `offer` apply to the basket here and now, and what does it give?

    `remaining` (minor units left on each line after offers applied before this one) lets
    offers stack without discounting the same money twice; by default, the line amounts.
    """
    result = _eligibility(offer, context)
    if not result.reasons:
        _give(offer, context, result, remaining)
    return result


def _eligibility(offer: OfferSpec, context: BasketContext) -> Evaluation:
    """The offer's lines and the reasons it cannot be used (none yet when it can): everything of
    an evaluation that does not depend on what earlier offers took from the lines."""
    lines = context.lines
    line_amounts = context.amounts
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
    return result


def _targets(offer: OfferSpec, context: BasketContext, qualifying: list[int]) -> Sequence[int]:
    """The lines a money benefit takes from (the free unit is the cheapest qualifying one,
    whatever the offer applies to)."""
    if offer.applies_to == "qualifying_items" or offer.benefit_type == "free_item":
        return qualifying
    return range(len(context.lines))


def _give(offer: OfferSpec, context: BasketContext, result: Evaluation, remaining: Sequence[int] | None) -> None:
    """Fill in what an eligible offer gives (`result` holds its qualifying lines), or the reason
    it gives nothing."""
    if offer.benefit_type == "bonus_points":
        result.bonus_points = int(offer.benefit_value)
    elif offer.benefit_type == "points_multiplier":
        result.points_multiplier = offer.benefit_value
    else:
        amounts = remaining if remaining is not None else context.amounts  # only read
        targets = _targets(offer, context, result.qualifying_lines)
        target_amounts = list(map(amounts.__getitem__, targets))
        base = sum(target_amounts)
        weights, free_line = target_amounts, None
        if offer.benefit_type == "free_item":
            free_line = _cheapest_unit_line(context, targets)
            discount = 0 if free_line is None else min(context.unit_amounts[free_line], amounts[free_line])
        elif offer.benefit_type == "fixed_price" and offer.applies_to != "basket":
            # Each line gets what its own units save: a line already below the price gets nothing.
            weights = _unit_savings(offer, context, targets, target_amounts)
            discount = sum(weights)
        else:
            discount = _money_discount(offer, context, base)
        if offer.cap_amount is not None:
            discount = min(discount, offer.cap_amount)
        discount = max(0, min(discount, base))
        if discount == 0:
            result.reasons.append("nothing_to_discount")
            return
        result.discount = discount
        if free_line is not None:
            result.line_discounts = [(free_line, discount)]
        else:
            result.line_discounts = spread(discount, targets, weights)
    result.applicable = True


def _money_discount(offer: OfferSpec, context: BasketContext, base: int) -> int:
    """What a percentage, an amount off or a fixed price for the whole basket takes off `base`
    (what the target lines cost)."""
    exponent_scale = Decimal(10) ** _exponent(context.currency)
    if offer.benefit_type == "percent_off":
        return _round(Decimal(base) * offer.benefit_value / 100)
    if offer.benefit_type == "amount_off":
        return _round(offer.benefit_value * exponent_scale)
    if offer.benefit_type == "fixed_price":
        return base - _round(offer.benefit_value * exponent_scale)
    return 0


def _unit_savings(offer: OfferSpec, context: BasketContext, targets, target_amounts) -> list[int]:
    """What each target line saves when each of its units costs the fixed price."""
    price = _round(offer.benefit_value * Decimal(10) ** _exponent(context.currency))
    whole_quantities, lines = context.whole_quantities, context.lines
    savings = []
    for line, amount in zip(targets, target_amounts, strict=True):
        whole = whole_quantities[line]
        cost = whole * price if whole is not None else _round(lines[line].quantity * price)
        savings.append(amount - cost if amount > cost else 0)
    return savings


def _cheapest_unit_line(context: BasketContext, indexes: Sequence[int]) -> int | None:
    """The line (of `indexes`, in line order) with the cheapest unit, the earliest on a tie: the
    free item."""
    unit_amounts = context.unit_amounts
    candidates = [i for i in indexes if unit_amounts[i] is not None]
    return min(candidates, key=unit_amounts.__getitem__) if candidates else None


def _exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)


def best_combination(
    offers: Sequence[OfferSpec], context: BasketContext, evaluations: Sequence[Evaluation] | None = None
) -> list[Evaluation]:
    """Apply applicable offers in priority order on what is left of each line: an exclusive
    offer is used alone (the best single exclusive one, if it beats the combinable set).

    `evaluations`, when given, are the offers' own evaluations on the whole basket (what
    `evaluate(offer, context)` gives), in the order of `offers`: an offer is then not judged
    again, only priced again on what is left, and not even that when no line it takes from has
    been discounted yet (the result could not differ).
    """
    if evaluations is None:
        evaluations = [evaluate(offer, context) for offer in offers]
    ordered = sorted(zip(offers, evaluations, strict=True), key=lambda pair: (-pair[0].priority, pair[0].id))
    combinable, remaining, discounted = [], list(context.amounts), set()
    for offer, whole_basket in ordered:
        if offer.is_exclusive or not whole_basket.applicable:
            continue
        evaluation = _on_what_is_left(offer, context, whole_basket, remaining, discounted)
        if evaluation.applicable:
            for index, amount in evaluation.line_discounts:
                remaining[index] -= amount
                discounted.add(index)
            combinable.append(evaluation)
    chosen = combinable
    combinable_value = sum(evaluation.discount for evaluation in combinable)
    for offer, whole_basket in ordered:
        if offer.is_exclusive and whole_basket.applicable and whole_basket.discount > combinable_value:
            chosen, combinable_value = [whole_basket], whole_basket.discount
    return chosen


def _on_what_is_left(
    offer: OfferSpec, context: BasketContext, whole_basket: Evaluation, remaining: list[int], discounted: set[int]
) -> Evaluation:
    """evaluate(offer, context, remaining) for an offer applicable to the whole basket: whether
    it applies does not depend on what earlier offers took, only what it gives (and points
    offers do not even read the amounts)."""
    if offer.benefit_type not in MONEY_BENEFITS:
        return whole_basket
    if discounted.isdisjoint(_targets(offer, context, whole_basket.qualifying_lines)):
        return whole_basket
    result = Evaluation(offer_id=offer.id, applicable=False, qualifying_lines=whole_basket.qualifying_lines)
    _give(offer, context, result, remaining)
    return result
