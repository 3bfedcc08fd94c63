"""The discount engine's pure functions: every benefit, condition and reason, stacking, and the
properties (parts add up, nothing discounted twice, order does not matter) checked by Hypothesis."""

from dataclasses import replace
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.baskets import BasketLine
from offers.services.engine import (
    BasketContext,
    OfferSpec,
    best_combination,
    evaluate,
    place_and_time_reasons,
    qualifying_line_indexes,
    spread,
)

WEDNESDAY_NOON_UTC = datetime(2025, 1, 8, 12, 0, tzinfo=UTC)
# Sunday 23:30 in UTC is already Monday 00:30 in Stockholm (CET, UTC+1).
SUNDAY_LATE_UTC = datetime(2025, 1, 5, 23, 30, tzinfo=UTC)
# Tuesday 22:30 in UTC is Wednesday 00:30 in Stockholm in summer (CEST, UTC+2).
SUMMER_TUESDAY_LATE_UTC = datetime(2025, 7, 1, 22, 30, tzinfo=UTC)


def make_line(sku="A", amount=1000, quantity="1", unit_price=None, family=None, brand=None) -> BasketLine:
    return BasketLine(
        sku=sku, amount=amount, quantity=Decimal(quantity), unit_price=unit_price, family=family, brand=brand
    )


def make_context(lines, **overrides) -> BasketContext:
    values = {"lines": lines, "currency": "EUR", "at": WEDNESDAY_NOON_UTC, "channel": "pos", "venue_id": None}
    values.update(overrides)
    return BasketContext(**values)


def make_offer(**overrides) -> OfferSpec:
    values = {"id": "offer", "benefit_type": "percent_off", "benefit_value": Decimal(10)}
    values.update(overrides)
    return OfferSpec(**values)


def sku_is(*skus):
    return frozenset(("sku", sku) for sku in skus)


MILK_AND_BREAD = [make_line("MILK", 300, "2", 150, family="dairy"), make_line("BREAD", 200, family="bakery")]


# --- percent off ------------------------------------------------------------------------------


def test_percent_off_on_qualifying_items_discounts_only_the_included_lines():
    result = evaluate(make_offer(includes=sku_is("MILK")), make_context(MILK_AND_BREAD))

    assert result.applicable and result.reasons == []
    assert result.qualifying_lines == [0]
    assert result.discount == 30
    assert result.line_discounts == [(0, 30)]


def test_percent_off_on_the_whole_basket_discounts_every_line_once_one_item_qualifies():
    offer = make_offer(applies_to="basket", includes=sku_is("MILK"))

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert result.discount == 50
    assert result.line_discounts == [(0, 30), (1, 20)]


def test_percent_off_rounds_half_up_once_on_the_total_rather_than_per_line():
    lines = [make_line("A", 105), make_line("B", 105), make_line("C", 105)]

    result = evaluate(make_offer(), make_context(lines))

    # 10 % of 3.15 is 0.315 → 32 cents; rounding each line's 10.5 cents would have given 33.
    assert result.discount == 32
    assert sum(amount for _, amount in result.line_discounts) == 32


def test_a_hundred_percent_off_makes_the_qualifying_items_free():
    result = evaluate(make_offer(benefit_value=Decimal(100)), make_context(MILK_AND_BREAD))

    assert result.discount == 500
    assert result.line_discounts == [(0, 300), (1, 200)]


def test_percent_off_applies_to_what_is_left_of_each_line():
    result = evaluate(make_offer(benefit_value=Decimal(50)), make_context(MILK_AND_BREAD), remaining=[100, 200])

    assert result.discount == 150
    assert result.line_discounts == [(0, 50), (1, 100)]


# --- amount off -------------------------------------------------------------------------------


def test_amount_off_is_spread_over_the_qualifying_lines_in_proportion_to_their_amounts():
    lines = [make_line("A", 3000), make_line("B", 1000), make_line("C", 9000)]
    offer = make_offer(benefit_type="amount_off", benefit_value=Decimal("5.00"), currency="EUR", excludes=sku_is("C"))

    result = evaluate(offer, make_context(lines))

    assert result.discount == 500
    assert result.line_discounts == [(0, 375), (1, 125)]


@pytest.mark.parametrize(
    ("currency", "value", "expected_minor_units"),
    [("EUR", "2.50", 250), ("JPY", "500", 500), ("BHD", "1.5", 1500), ("SEK", "20", 2000)],
)
def test_amount_off_is_converted_with_the_currency_decimals(currency, value, expected_minor_units):
    offer = make_offer(benefit_type="amount_off", benefit_value=Decimal(value), currency=currency)

    result = evaluate(offer, make_context([make_line("A", 1_000_000)], currency=currency))

    assert result.discount == expected_minor_units


def test_amount_off_never_takes_more_than_the_qualifying_amount():
    offer = make_offer(benefit_type="amount_off", benefit_value=Decimal(10), currency="EUR", includes=sku_is("BREAD"))

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert result.discount == 200
    assert result.line_discounts == [(1, 200)]


@pytest.mark.parametrize("benefit_type", ["amount_off", "fixed_price"])
def test_an_amount_in_another_currency_than_the_basket_does_not_apply(benefit_type):
    offer = make_offer(benefit_type=benefit_type, benefit_value=Decimal(1), currency="SEK")

    result = evaluate(offer, make_context(MILK_AND_BREAD, currency="EUR"))

    assert not result.applicable
    assert result.reasons == ["wrong_currency"]
    assert (result.discount, result.line_discounts) == (0, [])


# --- fixed price ------------------------------------------------------------------------------


def test_fixed_price_sells_each_qualifying_unit_for_the_price():
    lines = [make_line("A", 1200, "3", 400), make_line("B", 200, "1", 200)]
    offer = make_offer(benefit_type="fixed_price", benefit_value=Decimal("2.50"), currency="EUR")

    result = evaluate(offer, make_context(lines))

    # Three units of A at 2.50 instead of 4.00; B already costs less than 2.50 and is left alone.
    assert result.discount == 450
    assert result.line_discounts == [(0, 450)]


def test_fixed_price_per_unit_follows_a_fractional_quantity():
    lines = [make_line("CHEESE", 500, "0.5", 1000)]
    offer = make_offer(benefit_type="fixed_price", benefit_value=Decimal(6), currency="EUR")

    assert evaluate(offer, make_context(lines)).discount == 200


def test_fixed_price_for_the_basket_takes_it_down_to_the_price():
    lines = [make_line("A", 800), make_line("B", 700)]
    offer = make_offer(benefit_type="fixed_price", benefit_value=Decimal(10), currency="EUR", applies_to="basket")

    result = evaluate(offer, make_context(lines))

    assert result.discount == 500
    assert result.line_discounts == [(0, 267), (1, 233)]


def test_fixed_price_above_what_the_basket_costs_gives_nothing():
    offer = make_offer(benefit_type="fixed_price", benefit_value=Decimal(20), currency="EUR", applies_to="basket")

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert not result.applicable
    assert result.reasons == ["nothing_to_discount"]


# --- free item --------------------------------------------------------------------------------


def test_free_item_takes_off_the_cheapest_qualifying_unit():
    lines = [make_line("A", 600, "2", 300), make_line("B", 250, "1", 250), make_line("C", 100, "1", 100)]
    offer = make_offer(benefit_type="free_item", benefit_value=Decimal(0), includes=sku_is("A", "B"))

    result = evaluate(offer, make_context(lines))

    assert result.discount == 250
    assert result.line_discounts == [(1, 250)]


def test_free_item_reckons_the_unit_price_from_the_amount_when_none_is_given():
    lines = [make_line("A", 900, "3"), make_line("B", 500, "1")]
    offer = make_offer(benefit_type="free_item", benefit_value=Decimal(0))

    result = evaluate(offer, make_context(lines))

    assert result.discount == 300
    assert result.line_discounts == [(0, 300)]


def test_free_item_picks_the_earlier_line_when_two_units_cost_the_same():
    lines = [make_line("A", 400, "1", 400), make_line("B", 400, "1", 400)]

    result = evaluate(make_offer(benefit_type="free_item", benefit_value=Decimal(0)), make_context(lines))

    assert result.line_discounts == [(0, 400)]


def test_free_item_on_the_whole_basket_still_gives_the_cheapest_qualifying_unit():
    lines = [make_line("WINE", 500, "1", 500), make_line("BAG", 100, "1", 100)]
    offer = make_offer(benefit_type="free_item", benefit_value=Decimal(0), applies_to="basket", includes=sku_is("WINE"))

    result = evaluate(offer, make_context(lines))

    # The bag does not qualify: it must neither price the free item nor be the line discounted.
    assert result.discount == 500
    assert result.line_discounts == [(0, 500)]


def test_free_item_never_takes_more_than_what_is_left_of_the_line():
    lines = [make_line("WINE", 500, "1", 500), make_line("BAG", 100, "1", 100)]
    for applies_to in ("qualifying_items", "basket"):
        offer = make_offer(benefit_type="free_item", benefit_value=Decimal(0), applies_to=applies_to)
        offer = replace(offer, includes=sku_is("WINE"))

        result = evaluate(offer, make_context(lines), remaining=[50, 100])

        assert result.line_discounts == [(0, 50)], applies_to


def test_free_item_is_limited_by_the_cap():
    offer = make_offer(benefit_type="free_item", benefit_value=Decimal(0), cap_amount=120)

    result = evaluate(offer, make_context([make_line("A", 500, "1", 500)]))

    assert result.discount == 120
    assert result.line_discounts == [(0, 120)]


# --- points -----------------------------------------------------------------------------------


def test_bonus_points_give_points_and_no_discount():
    result = evaluate(make_offer(benefit_type="bonus_points", benefit_value=Decimal(250)), make_context(MILK_AND_BREAD))

    assert result.applicable
    assert result.bonus_points == 250
    assert (result.discount, result.line_discounts, result.points_multiplier) == (0, [], None)


def test_points_multiplier_gives_a_multiplier_and_no_discount():
    offer = make_offer(benefit_type="points_multiplier", benefit_value=Decimal("2.5"))

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert result.applicable
    assert result.points_multiplier == Decimal("2.5")
    assert (result.discount, result.line_discounts, result.bonus_points) == (0, [], 0)


def test_points_offers_still_need_their_conditions():
    offer = make_offer(benefit_type="bonus_points", benefit_value=Decimal(100), min_spend=10_000)

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert not result.applicable
    assert result.reasons == ["min_spend_not_met"]
    assert result.bonus_points == 0


# --- caps -------------------------------------------------------------------------------------


def test_the_cap_limits_the_discount_and_its_parts():
    lines = [make_line("A", 6000), make_line("B", 4000)]

    result = evaluate(make_offer(benefit_value=Decimal(50), cap_amount=1000), make_context(lines))

    assert result.discount == 1000
    assert result.line_discounts == [(0, 600), (1, 400)]


def test_a_cap_above_the_discount_changes_nothing():
    result = evaluate(make_offer(cap_amount=10_000), make_context(MILK_AND_BREAD))

    assert result.discount == 50


def test_a_cap_of_zero_leaves_nothing_to_discount():
    result = evaluate(make_offer(cap_amount=0), make_context(MILK_AND_BREAD))

    assert not result.applicable
    assert result.reasons == ["nothing_to_discount"]


# --- catalogue restrictions -------------------------------------------------------------------

CATALOGUE = [
    make_line("MILK", 100, family="dairy", brand="acme"),
    make_line("YOGHURT", 100, family="dairy", brand="nordic"),
    make_line("BREAD", 100, family="bakery", brand="acme"),
    make_line("BAG", 100),
]


@pytest.mark.parametrize(
    ("restriction", "included_lines", "excluded_lines"),
    [
        (("sku", "MILK"), [0], [1, 2, 3]),
        (("family", "dairy"), [0, 1], [2, 3]),
        (("brand", "acme"), [0, 2], [1, 3]),
    ],
)
def test_restrictions_include_and_exclude_by_sku_family_and_brand(restriction, included_lines, excluded_lines):
    assert qualifying_line_indexes(make_offer(includes=frozenset([restriction])), CATALOGUE) == included_lines
    assert qualifying_line_indexes(make_offer(excludes=frozenset([restriction])), CATALOGUE) == excluded_lines


def test_an_offer_without_restrictions_qualifies_every_line():
    assert qualifying_line_indexes(make_offer(), CATALOGUE) == [0, 1, 2, 3]


def test_an_exclusion_wins_over_an_inclusion():
    offer = make_offer(includes=frozenset([("family", "dairy")]), excludes=frozenset([("brand", "acme")]))

    assert qualifying_line_indexes(offer, CATALOGUE) == [1]


def test_a_line_qualifies_when_it_matches_any_of_the_includes():
    offer = make_offer(includes=frozenset([("sku", "BAG"), ("family", "bakery")]))

    assert qualifying_line_indexes(offer, CATALOGUE) == [2, 3]


def test_excluded_lines_get_no_part_of_a_qualifying_items_discount():
    offer = make_offer(excludes=frozenset([("family", "dairy")]))

    result = evaluate(offer, make_context(CATALOGUE))

    assert result.qualifying_lines == [2, 3]
    assert result.discount == 20
    assert result.line_discounts == [(2, 10), (3, 10)]


# --- minimum spend and quantity ---------------------------------------------------------------


def test_minimum_spend_counts_qualifying_items_only():
    lines = [make_line("MILK", 300), make_line("TV", 50_000)]

    result = evaluate(make_offer(includes=sku_is("MILK"), min_spend=500), make_context(lines))

    assert not result.applicable
    assert result.reasons == ["min_spend_not_met"]


def test_minimum_spend_exactly_met_is_enough():
    result = evaluate(make_offer(min_spend=500), make_context(MILK_AND_BREAD))

    assert result.applicable


def test_minimum_quantity_counts_qualifying_units():
    lines = [make_line("APPLE", 300, "2.5"), make_line("PEAR", 900, "10")]
    offer = make_offer(includes=sku_is("APPLE"))

    assert evaluate(replace(offer, min_quantity=Decimal("2.5")), make_context(lines)).applicable
    short = evaluate(replace(offer, min_quantity=Decimal("2.6")), make_context(lines))
    assert not short.applicable
    assert short.reasons == ["min_quantity_not_met"]


def test_a_basket_without_qualifying_items_is_told_so_rather_than_about_minimums():
    offer = make_offer(includes=sku_is("CAVIAR"), min_spend=100_000, min_quantity=Decimal(5))

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert result.reasons == ["no_qualifying_items"]
    assert result.qualifying_lines == []


# --- place and time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "reasons"), [("web", []), ("mobile", []), ("pos", ["wrong_channel"]), (None, ["wrong_channel"])]
)
def test_an_offer_limited_to_channels_applies_only_there(channel, reasons):
    offer = make_offer(channels=frozenset(["web", "mobile"]))

    assert place_and_time_reasons(offer, make_context(MILK_AND_BREAD, channel=channel)) == reasons


@pytest.mark.parametrize(("venue_id", "reasons"), [("v1", []), ("v2", ["wrong_venue"]), (None, ["wrong_venue"])])
def test_an_offer_limited_to_venues_applies_only_there(venue_id, reasons):
    offer = make_offer(venue_ids=frozenset(["v1"]))

    assert place_and_time_reasons(offer, make_context(MILK_AND_BREAD, venue_id=venue_id)) == reasons


def test_an_offer_without_place_or_time_conditions_applies_anywhere_at_any_time():
    context = make_context(MILK_AND_BREAD, channel=None, venue_id=None, at=SUNDAY_LATE_UTC)

    assert place_and_time_reasons(make_offer(), context) == []


@pytest.mark.parametrize(("time_zone", "reasons"), [("Europe/Stockholm", []), ("UTC", ["wrong_day"])])
def test_the_weekday_is_the_venues_local_one(time_zone, reasons):
    offer = make_offer(days_of_week=frozenset([1]))  # Monday
    context = make_context(MILK_AND_BREAD, at=SUNDAY_LATE_UTC, venue_time_zone=time_zone)

    assert place_and_time_reasons(offer, context) == reasons


@pytest.mark.parametrize(
    ("hour_from", "hour_until", "time_zone", "reasons"),
    [
        (time(0, 0), time(1, 0), "Europe/Stockholm", []),
        (time(0, 0), time(1, 0), "UTC", ["outside_hours"]),
        (time(23, 0), None, "UTC", []),
        (time(23, 0), None, "Europe/Stockholm", ["outside_hours"]),
        (None, time(0, 31), "Europe/Stockholm", []),
        (None, time(0, 30), "Europe/Stockholm", ["outside_hours"]),
    ],
)
def test_the_hours_are_the_venues_local_ones(hour_from, hour_until, time_zone, reasons):
    offer = make_offer(hour_from=hour_from, hour_until=hour_until)
    context = make_context(MILK_AND_BREAD, at=SUNDAY_LATE_UTC, venue_time_zone=time_zone)

    assert place_and_time_reasons(offer, context) == reasons


def test_local_time_follows_summer_time():
    offer = make_offer(days_of_week=frozenset([3]), hour_from=time(0, 0), hour_until=time(1, 0))

    summer = make_context(MILK_AND_BREAD, at=SUMMER_TUESDAY_LATE_UTC, venue_time_zone="Europe/Stockholm")
    assert place_and_time_reasons(offer, summer) == []
    in_utc = make_context(MILK_AND_BREAD, at=SUMMER_TUESDAY_LATE_UTC, venue_time_zone="UTC")
    assert place_and_time_reasons(offer, in_utc) == ["wrong_day", "outside_hours"]


def test_the_opening_hour_is_inside_the_window_and_the_closing_hour_outside():
    offer = make_offer(hour_from=time(12, 0), hour_until=time(14, 0))

    at_opening = make_context(MILK_AND_BREAD, at=datetime(2025, 1, 8, 12, 0, tzinfo=UTC))
    at_closing = make_context(MILK_AND_BREAD, at=datetime(2025, 1, 8, 14, 0, tzinfo=UTC))
    just_before_opening = make_context(MILK_AND_BREAD, at=datetime(2025, 1, 8, 11, 59, 59, tzinfo=UTC))
    assert place_and_time_reasons(offer, at_opening) == []
    assert place_and_time_reasons(offer, at_closing) == ["outside_hours"]
    assert place_and_time_reasons(offer, just_before_opening) == ["outside_hours"]


def test_a_missing_time_zone_means_utc():
    offer = make_offer(days_of_week=frozenset([7]))  # Sunday

    assert place_and_time_reasons(offer, make_context(MILK_AND_BREAD, at=SUNDAY_LATE_UTC, venue_time_zone="")) == []


def test_every_failing_place_and_time_condition_is_reported():
    offer = make_offer(
        channels=frozenset(["web"]),
        venue_ids=frozenset(["v1"]),
        days_of_week=frozenset([6]),
        hour_from=time(8, 0),
        hour_until=time(9, 0),
    )
    context = make_context(MILK_AND_BREAD, channel="pos", venue_id="v2")

    assert place_and_time_reasons(offer, context) == ["wrong_channel", "wrong_venue", "wrong_day", "outside_hours"]


# --- reasons ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer_overrides", "context_overrides", "remaining", "reason"),
    [
        ({"channels": frozenset(["social"])}, {}, None, "wrong_channel"),
        ({"venue_ids": frozenset(["v1"])}, {"venue_id": "v9"}, None, "wrong_venue"),
        ({"days_of_week": frozenset([1, 2])}, {}, None, "wrong_day"),
        ({"hour_from": time(18, 0)}, {}, None, "outside_hours"),
        (
            {"benefit_type": "amount_off", "benefit_value": Decimal(1), "currency": "SEK"},
            {},
            None,
            "wrong_currency",
        ),
        ({"includes": sku_is("CAVIAR")}, {}, None, "no_qualifying_items"),
        ({"min_spend": 501}, {}, None, "min_spend_not_met"),
        ({"min_quantity": Decimal(4)}, {}, None, "min_quantity_not_met"),
        ({}, {}, [0, 0], "nothing_to_discount"),
    ],
)
def test_each_failing_condition_has_its_reason(offer_overrides, context_overrides, remaining, reason):
    result = evaluate(make_offer(**offer_overrides), make_context(MILK_AND_BREAD, **context_overrides), remaining)

    assert not result.applicable
    assert result.reasons == [reason]
    assert (result.discount, result.line_discounts) == (0, [])


def test_all_failing_conditions_are_reported_together():
    offer = make_offer(
        benefit_type="amount_off",
        benefit_value=Decimal(1),
        currency="SEK",
        channels=frozenset(["web"]),
        min_spend=10_000,
        min_quantity=Decimal(10),
    )

    result = evaluate(offer, make_context(MILK_AND_BREAD))

    assert result.reasons == ["wrong_channel", "wrong_currency", "min_spend_not_met", "min_quantity_not_met"]


# --- spread -----------------------------------------------------------------------------------


def test_spread_gives_each_line_its_share_of_the_total():
    assert spread(10, [4, 7, 9], [1, 2, 7]) == [(4, 1), (7, 2), (9, 7)]


def test_spread_gives_the_leftover_units_to_the_largest_remainders():
    # Exact shares 1.25, 1.25 and 2.5: the last line has the largest remainder.
    assert spread(5, [0, 1, 2], [1, 1, 2]) == [(0, 1), (1, 1), (2, 3)]


def test_spread_breaks_ties_in_line_order():
    assert spread(100, [0, 1, 2], [1, 1, 1]) == [(0, 34), (1, 33), (2, 33)]


def test_spread_leaves_out_lines_that_get_nothing():
    assert spread(1, [3, 8], [1, 1]) == [(3, 1)]
    assert spread(10, [3, 8], [0, 5]) == [(8, 10)]


@pytest.mark.parametrize(("total", "weights"), [(0, [1, 2]), (-5, [1, 2]), (10, [0, 0]), (10, [])])
def test_spread_of_nothing_or_over_nothing_is_empty(total, weights):
    assert spread(total, list(range(len(weights))), weights) == []


# --- stacking ---------------------------------------------------------------------------------

BASKET_OF_TEN_EUROS = [make_line("A", 600), make_line("B", 400)]


def test_combinable_offers_apply_in_priority_order_on_what_is_left():
    half_off = make_offer(id="half", benefit_value=Decimal(50), priority=2)
    three_off = make_offer(id="three", benefit_type="amount_off", benefit_value=Decimal(3), currency="EUR", priority=1)

    chosen = best_combination([three_off, half_off], make_context(BASKET_OF_TEN_EUROS))

    # Half of 10.00, then 3.00 off the 5.00 left; the other way round would give 6.50.
    assert [(evaluation.offer_id, evaluation.discount) for evaluation in chosen] == [("half", 500), ("three", 300)]


def test_offers_of_the_same_priority_apply_in_id_order():
    first = make_offer(id="a", benefit_type="amount_off", benefit_value=Decimal(8), currency="EUR")
    second = make_offer(id="b", benefit_value=Decimal(50))

    chosen = best_combination([second, first], make_context(BASKET_OF_TEN_EUROS))

    assert [(evaluation.offer_id, evaluation.discount) for evaluation in chosen] == [("a", 800), ("b", 100)]


def test_stacked_offers_never_discount_the_same_money_twice():
    offers = [
        make_offer(id=f"eight-{n}", benefit_type="amount_off", benefit_value=Decimal(8), currency="EUR")
        for n in range(3)
    ]

    chosen = best_combination(offers, make_context(BASKET_OF_TEN_EUROS))

    assert [evaluation.discount for evaluation in chosen] == [800, 200]
    per_line = {0: 0, 1: 0}
    for evaluation in chosen:
        for index, amount in evaluation.line_discounts:
            per_line[index] += amount
    assert per_line == {0: 600, 1: 400}


def test_an_exclusive_offer_is_used_alone_when_it_beats_the_combinable_set():
    combinable = [make_offer(id="ten", priority=5), make_offer(id="twenty", benefit_value=Decimal(20))]
    exclusive = make_offer(id="exclusive", benefit_value=Decimal(30), is_exclusive=True, priority=9)

    chosen = best_combination([*combinable, exclusive], make_context(BASKET_OF_TEN_EUROS))

    assert [(evaluation.offer_id, evaluation.discount) for evaluation in chosen] == [("exclusive", 300)]


def test_an_exclusive_offer_that_does_not_beat_the_combinable_set_is_left_out():
    combinable = [make_offer(id="ten", priority=5), make_offer(id="twenty", benefit_value=Decimal(20))]
    exclusive = make_offer(id="exclusive", benefit_value=Decimal(25), is_exclusive=True, priority=9)

    chosen = best_combination([*combinable, exclusive], make_context(BASKET_OF_TEN_EUROS))

    # 10 % of 10.00, then 20 % of 9.00: 2.80 beats 2.50.
    assert [(evaluation.offer_id, evaluation.discount) for evaluation in chosen] == [("ten", 100), ("twenty", 180)]


def test_an_exclusive_offer_equal_to_the_combinable_set_is_left_out():
    combinable = [make_offer(id="ten", benefit_value=Decimal(10))]
    exclusive = make_offer(id="exclusive", benefit_value=Decimal(10), is_exclusive=True)

    chosen = best_combination([combinable[0], exclusive], make_context(BASKET_OF_TEN_EUROS))

    assert [evaluation.offer_id for evaluation in chosen] == ["ten"]


def test_the_best_of_several_exclusive_offers_wins():
    exclusives = [
        make_offer(id="small", benefit_value=Decimal(30), is_exclusive=True, priority=9),
        make_offer(id="large", benefit_value=Decimal(70), is_exclusive=True, priority=1),
        make_offer(id="middle", benefit_value=Decimal(50), is_exclusive=True, priority=5),
    ]

    chosen = best_combination(exclusives, make_context(BASKET_OF_TEN_EUROS))

    assert [(evaluation.offer_id, evaluation.discount) for evaluation in chosen] == [("large", 700)]


def test_an_exclusive_offer_is_priced_on_the_full_basket_not_what_combinable_offers_left():
    combinable = make_offer(id="ninety", benefit_value=Decimal(90), priority=9)
    exclusive = make_offer(
        id="exclusive", benefit_type="amount_off", benefit_value=Decimal("9.50"), currency="EUR", is_exclusive=True
    )

    chosen = best_combination([combinable, exclusive], make_context(BASKET_OF_TEN_EUROS))

    assert [(evaluation.offer_id, evaluation.discount) for evaluation in chosen] == [("exclusive", 950)]


def test_offers_that_do_not_apply_are_left_out_of_the_combination():
    offers = [
        make_offer(id="web-only", channels=frozenset(["web"]), benefit_value=Decimal(90)),
        make_offer(id="exclusive-web", channels=frozenset(["web"]), benefit_value=Decimal(90), is_exclusive=True),
        make_offer(id="ten"),
    ]

    chosen = best_combination(offers, make_context(BASKET_OF_TEN_EUROS, channel="pos"))

    assert [evaluation.offer_id for evaluation in chosen] == ["ten"]


def test_no_offers_make_an_empty_combination():
    assert best_combination([], make_context(BASKET_OF_TEN_EUROS)) == []


# --- properties -------------------------------------------------------------------------------

SKUS = ["A", "B", "C", "D"]
FAMILIES = ["dairy", "bakery", None]
BRANDS = ["acme", "nordic", None]
RESTRICTIONS = st.frozensets(
    st.one_of(
        st.tuples(st.just("sku"), st.sampled_from(SKUS)),
        st.tuples(st.just("family"), st.sampled_from(["dairy", "bakery"])),
        st.tuples(st.just("brand"), st.sampled_from(["acme", "nordic"])),
    ),
    max_size=3,
)
MONEY_BENEFITS = {
    "percent_off": st.decimals(min_value=Decimal("0.01"), max_value=100, places=2),
    "amount_off": st.decimals(min_value=Decimal("0.01"), max_value=200, places=2),
    "fixed_price": st.decimals(min_value=0, max_value=50, places=2),
    "free_item": st.just(Decimal(0)),
}
MONEY_BENEFIT_TYPES = tuple(MONEY_BENEFITS)

line_strategy = st.builds(
    BasketLine,
    sku=st.sampled_from(SKUS),
    amount=st.integers(min_value=0, max_value=50_000),
    quantity=st.decimals(min_value=Decimal("0.001"), max_value=20, places=3),
    unit_price=st.one_of(st.none(), st.integers(min_value=0, max_value=20_000)),
    family=st.sampled_from(FAMILIES),
    brand=st.sampled_from(BRANDS),
)
lines_strategy = st.lists(line_strategy, min_size=1, max_size=12)


@st.composite
def money_offers(draw, benefit_types=MONEY_BENEFIT_TYPES, applies_to=("qualifying_items", "basket")):
    benefit_type = draw(st.sampled_from(benefit_types))
    return OfferSpec(
        id=draw(st.text(alphabet="abcdef", min_size=1, max_size=4)),
        benefit_type=benefit_type,
        benefit_value=draw(MONEY_BENEFITS[benefit_type]),
        currency="EUR",
        applies_to=draw(st.sampled_from(applies_to)),
        cap_amount=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=20_000))),
        includes=draw(RESTRICTIONS),
        excludes=draw(RESTRICTIONS),
        min_spend=draw(st.sampled_from([0, 0, 1_000])),
        priority=draw(st.integers(min_value=0, max_value=3)),
        is_exclusive=draw(st.booleans()),
    )


@st.composite
def remaining_of(draw, lines):
    return [draw(st.integers(min_value=0, max_value=line.amount)) for line in lines]


@settings(max_examples=200)
@given(offer=money_offers(), lines=lines_strategy, data=st.data())
def test_per_line_discounts_always_add_up_to_the_total(offer, lines, data):
    remaining = data.draw(st.one_of(st.none(), remaining_of(lines)))

    result = evaluate(offer, make_context(lines), remaining)

    assert sum(amount for _, amount in result.line_discounts) == result.discount
    assert len({index for index, _ in result.line_discounts}) == len(result.line_discounts)
    assert result.applicable == (result.discount > 0)


@settings(max_examples=200)
@given(offer=money_offers(), lines=lines_strategy, data=st.data())
def test_a_discount_never_exceeds_what_it_applies_to_nor_the_cap(offer, lines, data):
    remaining = data.draw(st.one_of(st.none(), remaining_of(lines)))
    left = remaining if remaining is not None else [line.amount for line in lines]

    result = evaluate(offer, make_context(lines), remaining)

    for index, amount in result.line_discounts:
        assert 0 < amount <= left[index]
    if offer.applies_to == "qualifying_items" or offer.benefit_type == "free_item":
        assert {index for index, _ in result.line_discounts} <= set(result.qualifying_lines)
    assert result.discount <= sum(left)
    if offer.cap_amount is not None:
        assert result.discount <= offer.cap_amount


@settings(max_examples=200)
@given(offer=money_offers(benefit_types=("free_item",)), lines=lines_strategy, data=st.data())
def test_a_free_item_is_the_cheapest_qualifying_unit_limited_by_what_is_left_and_the_cap(offer, lines, data):
    remaining = data.draw(st.one_of(st.none(), remaining_of(lines)))
    left = remaining if remaining is not None else [line.amount for line in lines]

    result = evaluate(offer, make_context(lines), remaining)

    if result.applicable:
        [(index, amount)] = result.line_discounts
        assert index in result.qualifying_lines
        assert all(lines[index].unit_amount <= lines[other].unit_amount for other in result.qualifying_lines)
        expected = min(lines[index].unit_amount, left[index])
        assert amount == (expected if offer.cap_amount is None else min(expected, offer.cap_amount))


@settings(max_examples=200)
@given(offer=money_offers(benefit_types=("fixed_price",), applies_to=("qualifying_items",)), lines=lines_strategy)
def test_a_fixed_price_never_discounts_a_line_already_at_or_below_the_price(offer, lines):
    price = int(offer.benefit_value * 100)

    result = evaluate(offer, make_context(lines))

    for index, amount in result.line_discounts:
        assert lines[index].amount > lines[index].quantity * price
        assert amount <= lines[index].amount - lines[index].quantity * price + 1  # the price rounds half up


@settings(max_examples=150)
@given(offer=money_offers(benefit_types=("percent_off", "amount_off")), lines=lines_strategy, data=st.data())
def test_line_order_never_changes_a_percent_or_amount_discount(offer, lines, data):
    shuffled = data.draw(st.permutations(lines))

    assert evaluate(offer, make_context(shuffled)).discount == evaluate(offer, make_context(lines)).discount


@settings(max_examples=150)
@given(offer=money_offers(applies_to=("qualifying_items",)), lines=lines_strategy, data=st.data())
def test_adding_an_excluded_line_never_changes_a_qualifying_items_discount(offer, lines, data):
    offer = replace(offer, excludes=offer.excludes | {("family", "tobacco")})
    position = data.draw(st.integers(min_value=0, max_value=len(lines)))
    tobacco = BasketLine(
        sku=data.draw(st.sampled_from(SKUS)),
        amount=data.draw(st.integers(min_value=0, max_value=100_000)),
        quantity=Decimal(data.draw(st.integers(min_value=1, max_value=5))),
        unit_price=data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=20_000))),
        family="tobacco",
    )
    with_tobacco = [*lines[:position], tobacco, *lines[position:]]

    before = evaluate(offer, make_context(lines))
    after = evaluate(offer, make_context(with_tobacco))

    assert after.discount == before.discount
    assert after.reasons == before.reasons
    shifted = [(index + (index >= position), amount) for index, amount in before.line_discounts]
    assert after.line_discounts == shifted


@settings(max_examples=200)
@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40).filter(any),
)
def test_spread_parts_add_up_to_the_total_and_are_never_negative(total, weights):
    parts = spread(total, list(range(len(weights))), weights)

    assert sum(part for _, part in parts) == total
    assert all(part > 0 for _, part in parts)
    if total <= sum(weights):
        assert all(part <= weights[index] for index, part in parts)


@settings(max_examples=150)
@given(offers=st.lists(money_offers(), max_size=4, unique_by=lambda offer: offer.id), lines=lines_strategy)
def test_a_combination_never_discounts_a_line_by_more_than_it_costs(offers, lines):
    chosen = best_combination(offers, make_context(lines))

    per_line = [0] * len(lines)
    for evaluation in chosen:
        for index, amount in evaluation.line_discounts:
            per_line[index] += amount
    assert all(per_line[index] <= line.amount for index, line in enumerate(lines))
    assert sum(evaluation.discount for evaluation in chosen) == sum(per_line)
    if any(evaluation.offer_id in {offer.id for offer in offers if offer.is_exclusive} for evaluation in chosen):
        assert len(chosen) == 1


def _combination_evaluating_every_offer_again(offers, context):
    """best_combination as stated: every combinable offer evaluated again on what is left of each
    line, every exclusive one on the whole basket."""
    ordered = sorted(offers, key=lambda offer: (-offer.priority, offer.id))
    combinable, remaining = [], [line.amount for line in context.lines]
    for offer in ordered:
        if not offer.is_exclusive:
            evaluation = evaluate(offer, context, remaining)
            if evaluation.applicable:
                for index, amount in evaluation.line_discounts:
                    remaining[index] -= amount
                combinable.append(evaluation)
    chosen, value = combinable, sum(evaluation.discount for evaluation in combinable)
    for offer in ordered:
        evaluation = evaluate(offer, context)
        if offer.is_exclusive and evaluation.applicable and evaluation.discount > value:
            chosen, value = [evaluation], evaluation.discount
    return chosen


@settings(max_examples=300)
@given(offers=st.lists(money_offers(), max_size=5), lines=lines_strategy)
def test_a_combination_from_the_whole_basket_evaluations_is_the_one_evaluating_every_offer_again(offers, lines):
    context = make_context(lines)
    points = make_offer(id="points", benefit_type="bonus_points", benefit_value=Decimal(50), priority=2)
    offers = [*offers, points]

    chosen = best_combination(offers, context, [evaluate(offer, context) for offer in offers])

    def seen(evaluations):
        return [(e.offer_id, e.discount, e.line_discounts, e.bonus_points) for e in evaluations]

    assert seen(chosen) == seen(_combination_evaluating_every_offer_again(offers, context))
