"""The economy rules' pure function, with properties checked by Hypothesis."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.exceptions import LimitExceeded, ValidationError
from loyalty.services.earning import (
    BasketLine,
    RuleSpec,
    basket_points,
    earning_rule_create,
    earning_rule_update,
    points_allocate,
)

SKUS = ["A", "B", "C", "D", "E"]
FAMILIES = ["dairy", "bakery", "tobacco", None]
BRANDS = ["acme", "nordic", None]

lines_strategy = st.lists(
    st.builds(
        BasketLine,
        sku=st.sampled_from(SKUS),
        amount=st.integers(min_value=0, max_value=500_000),
        family=st.sampled_from(FAMILIES),
        brand=st.sampled_from(BRANDS),
    ),
    max_size=30,
)
rules_strategy = st.lists(
    st.builds(
        RuleSpec,
        id=st.integers(min_value=1, max_value=10_000),
        currency=st.just("EUR"),
        points_per_unit=st.decimals(min_value=0, max_value=20, places=2),
        rounding=st.sampled_from(["down", "half_up", "up"]),
        apply_tier_multiplier=st.booleans(),
        exclusions=st.frozensets(
            st.one_of(
                st.tuples(st.just("sku"), st.sampled_from(SKUS)),
                st.tuples(st.just("family"), st.sampled_from(["dairy", "bakery", "tobacco"])),
                st.tuples(st.just("brand"), st.sampled_from(["acme", "nordic"])),
            ),
            max_size=4,
        ),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda rule: rule.id,
)
multiplier_strategy = st.decimals(min_value=1, max_value=3, places=2)


def points(lines, rules, multiplier=Decimal(1)):
    return basket_points(lines=lines, rules=rules, currency="EUR", tier_multiplier=multiplier).points


@given(lines=lines_strategy, rules=rules_strategy, multiplier=multiplier_strategy, data=st.data())
def test_item_order_never_changes_points(lines, rules, multiplier, data):
    shuffled = data.draw(st.permutations(lines))
    assert points(shuffled, rules, multiplier) == points(lines, rules, multiplier)


@given(lines=lines_strategy, rules=rules_strategy, multiplier=multiplier_strategy, data=st.data())
def test_adding_an_item_every_rule_excludes_never_changes_points(lines, rules, multiplier, data):
    excluded_sku = "TOBACCO-1"
    rules = [
        RuleSpec(
            id=rule.id,
            currency=rule.currency,
            points_per_unit=rule.points_per_unit,
            rounding=rule.rounding,
            apply_tier_multiplier=rule.apply_tier_multiplier,
            exclusions=rule.exclusions | {("family", "tobacco")},
        )
        for rule in rules
    ]
    amount = data.draw(st.integers(min_value=1, max_value=1_000_000))
    position = data.draw(st.integers(min_value=0, max_value=len(lines)))
    with_excluded = [
        *lines[:position],
        BasketLine(sku=excluded_sku, amount=amount, family="tobacco"),
        *lines[position:],
    ]
    assert points(with_excluded, rules, multiplier) == points(lines, rules, multiplier)


@given(lines=lines_strategy.filter(bool), rules=rules_strategy, multiplier=multiplier_strategy, data=st.data())
def test_splitting_a_line_into_two_with_the_same_total_never_changes_points(lines, rules, multiplier, data):
    index = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    line = lines[index]
    first = data.draw(st.integers(min_value=0, max_value=line.amount))
    halves = [
        BasketLine(sku=line.sku, amount=first, family=line.family, brand=line.brand),
        BasketLine(sku=line.sku, amount=line.amount - first, family=line.family, brand=line.brand),
    ]
    split = [*lines[:index], *halves, *lines[index + 1 :]]
    assert points(split, rules, multiplier) == points(lines, rules, multiplier)


def test_rate_rounding_and_tier_multiplier_are_applied_once_on_the_total():
    rule = RuleSpec(id=1, currency="EUR", points_per_unit=Decimal("1.5"), rounding="down")
    lines = [BasketLine(sku="A", amount=333), BasketLine(sku="B", amount=333), BasketLine(sku="C", amount=334)]
    # 10.00 EUR x 1.5 = 15 points; per-line rounding would have given 4 + 4 + 5 = 13.
    assert points(lines, [rule]) == 15
    assert points(lines, [rule], Decimal("2")) == 30


def test_rules_of_another_currency_earn_nothing():
    rule = RuleSpec(id=1, currency="SEK", points_per_unit=Decimal(1))
    assert points([BasketLine(sku="A", amount=10_000)], [rule]) == 0


@given(
    total=st.integers(min_value=0, max_value=10**9), weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=50)
)
def test_allocated_points_always_add_up_to_the_total(total, weights):
    shares = points_allocate(total, weights)
    assert len(shares) == len(weights)
    if sum(weights) > 0:
        assert sum(shares) == total
        assert all(share >= 0 for share in shares)


@pytest.mark.django_db
def test_a_rule_takes_at_most_fifty_catalogue_restrictions():
    exclusions = [{"kind": "sku", "value": f"SKU{n}"} for n in range(51)]
    with pytest.raises(LimitExceeded):
        earning_rule_create(
            livemode=False, name="Base", currency="EUR", points_per_unit=Decimal(1), exclusions=exclusions
        )
    rule = earning_rule_create(
        livemode=False, name="Base", currency="EUR", points_per_unit=Decimal(1), exclusions=exclusions[:50]
    )
    assert rule.exclusions.count() == 50
    with pytest.raises(LimitExceeded):
        earning_rule_update(rule=rule, exclusions=exclusions)
    assert rule.exclusions.count() == 50


@pytest.mark.django_db
def test_a_rule_with_an_unknown_currency_or_negative_rate_is_refused():
    with pytest.raises(ValidationError):
        earning_rule_create(livemode=False, name="Base", currency="XXX", points_per_unit=Decimal(1))
    with pytest.raises(ValidationError):
        earning_rule_create(livemode=False, name="Base", currency="EUR", points_per_unit=Decimal(-1))
