"""Base earning (economy rules): the pure function that says how many points a basket earns,
and the writes that configure rules.

`basket_points` is pure: same lines and rules, same points. It rounds once per rule on the
rule's whole eligible amount, never per line, so item order, splitting a line in two and adding
excluded items cannot change the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction

from catalogue.models import MAX_CATALOGUE_RESTRICTIONS, CatalogueRestriction, line_matches_restrictions
from core.baskets import BasketLine
from core.exceptions import LimitExceeded, ValidationError
from core.money import CURRENCY_EXPONENTS, check_currency
from loyalty.models import EarningRule, EarningRuleExclusion, Tier

ROUNDING_MODES = {
    EarningRule.Rounding.DOWN: ROUND_FLOOR,
    EarningRule.Rounding.HALF_UP: ROUND_HALF_UP,
    EarningRule.Rounding.UP: ROUND_CEILING,
}


@dataclass(frozen=True)
class RuleSpec:
    """What the pure function needs of an EarningRule (built once, reused for every basket)."""

    id: int
    currency: str
    points_per_unit: Decimal
    rounding: str = EarningRule.Rounding.DOWN
    apply_tier_multiplier: bool = True
    exclusions: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @classmethod
    def from_rule(cls, rule: EarningRule) -> RuleSpec:
        return cls(
            id=rule.pk,
            currency=rule.currency,
            points_per_unit=rule.points_per_unit,
            rounding=rule.rounding,
            apply_tier_multiplier=rule.apply_tier_multiplier,
            exclusions=frozenset((exclusion.kind, exclusion.value) for exclusion in rule.exclusions.all()),
        )


@dataclass(frozen=True)
class EarningResult:
    points: int
    by_rule: dict[int, int]
    eligible_amount: int  # minor units that earned under at least one rule


def basket_points(
    *,
    lines: Sequence[BasketLine],
    rules: Iterable[RuleSpec],
    currency: str,
    tier_multiplier: Decimal = Decimal(1),
) -> EarningResult:
    """Points the lines earn under the rules of that currency. Pure."""
    exponent = CURRENCY_EXPONENTS[currency]
    by_rule: dict[int, int] = {}
    eligible_any: set[int] = set()
    for rule in rules:
        if rule.currency != currency:
            continue
        eligible = 0
        for index, line in enumerate(lines):
            if rule.exclusions and line_matches_restrictions(line.as_dict(), rule.exclusions):
                continue
            eligible += line.amount
            eligible_any.add(index)
        raw = Decimal(eligible).scaleb(-exponent) * rule.points_per_unit
        if rule.apply_tier_multiplier:
            raw *= tier_multiplier
        points = int(raw.quantize(Decimal(1), rounding=ROUNDING_MODES[rule.rounding]))
        by_rule[rule.id] = max(points, 0)
    eligible_amount = sum(lines[index].amount for index in eligible_any)
    return EarningResult(points=sum(by_rule.values()), by_rule=by_rule, eligible_amount=eligible_amount)


def points_allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` points over lines in proportion to `weights` (largest remainder), so the
    parts always add up to the total: used to say what each line earned, for returns."""
    weight_sum = sum(weights)
    if weight_sum <= 0 or total == 0:
        return [0] * len(weights)
    shares = [total * weight // weight_sum for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda index: (-(total * weights[index] % weight_sum), index))
    for index in remainders[: total - sum(shares)]:
        shares[index] += 1
    return shares


# --- configuration ----------------------------------------------------------------------------

RULE_FIELDS = (
    "name",
    "is_active",
    "currency",
    "points_per_unit",
    "tier",
    "apply_tier_multiplier",
    "rounding",
    "valid_from",
    "valid_until",
    "expiry_months",
    "pending_days",
)


def _check_exclusions(exclusions: list[dict[str, str]]) -> list[tuple[str, str]]:
    if len(exclusions) > MAX_CATALOGUE_RESTRICTIONS:
        raise LimitExceeded(
            f"At most {MAX_CATALOGUE_RESTRICTIONS} catalogue restrictions per rule; got {len(exclusions)}.",
            parameters=[LimitExceeded.parameter("exclusions", limit=MAX_CATALOGUE_RESTRICTIONS, got=len(exclusions))],
        )
    pairs = []
    kinds = set(CatalogueRestriction.Kind.values)
    for index, exclusion in enumerate(exclusions):
        kind, value = exclusion.get("kind"), (exclusion.get("value") or "").strip()
        if kind not in kinds:
            raise ValidationError.for_field(f"exclusions.{index}.kind", "Use sku, family or brand.")
        if not value:
            raise ValidationError.for_field(f"exclusions.{index}.value", "A value is required.")
        pairs.append((kind, value))
    return sorted(set(pairs))


def check_rule(rule: EarningRule) -> None:
    """The rule's own fields are valid (currency, rate, window, tier of the same mode)."""
    rule.currency = check_currency(rule.currency)
    if rule.points_per_unit is None or rule.points_per_unit < 0:
        raise ValidationError.for_field("points_per_unit", "Points per unit cannot be negative.")
    if rule.valid_from and rule.valid_until and rule.valid_until <= rule.valid_from:
        raise ValidationError.for_field("valid_until", "valid_until must be after valid_from.")
    if (
        rule.tier_id
        and Tier.objects.filter(pk=rule.tier_id).values_list("livemode", flat=True).first() != rule.livemode
    ):
        raise ValidationError.for_field("tier", "No such tier in this mode.")


@transaction.atomic
def earning_rule_create(
    *, livemode: bool, exclusions: list[dict[str, str]] | None = None, **fields: Any
) -> EarningRule:
    """Create a rule with its exclusions (at most 50). Raises ValidationError, LimitExceeded."""
    rule = EarningRule(livemode=livemode, **{key: value for key, value in fields.items() if key in RULE_FIELDS})
    check_rule(rule)
    pairs = _check_exclusions(exclusions or [])
    rule.save()
    EarningRuleExclusion.objects.bulk_create([EarningRuleExclusion(rule=rule, kind=k, value=v) for k, v in pairs])
    return rule


@transaction.atomic
def earning_rule_update(
    *, rule: EarningRule, exclusions: list[dict[str, str]] | None = None, **fields: Any
) -> EarningRule:
    """Change fields; `exclusions`, when given, replaces the whole list."""
    for key, value in fields.items():
        if key in RULE_FIELDS:
            setattr(rule, key, value)
    check_rule(rule)
    rule.save()
    if exclusions is not None:
        pairs = _check_exclusions(exclusions)
        rule.exclusions.all().delete()
        EarningRuleExclusion.objects.bulk_create([EarningRuleExclusion(rule=rule, kind=k, value=v) for k, v in pairs])
    return rule
