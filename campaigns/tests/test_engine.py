"""The pure campaign engine: triggers, windows, audience, basket conditions, filters, periods and
the outcomes it plans."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from campaigns.services.engine import (
    CampaignSpec,
    CauseFacts,
    OutcomeSpec,
    evaluate,
    filter_matches,
    ordered,
    period_start,
)
from core.baskets import BasketLine
from offers.services.engine import BasketContext

MONDAY_NOON = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def purchase_facts(lines=(("A", 1000),), *, at=MONDAY_NOON, channel="pos", venue_id=None, **fields) -> CauseFacts:
    basket = [
        BasketLine(sku=sku, amount=amount, quantity=Decimal(quantity), family=family)
        for sku, amount, quantity, family in ((*line, 1, None)[:4] for line in lines)
    ]
    context = BasketContext(lines=basket, currency="EUR", at=at, channel=channel, venue_id=venue_id)
    fields.setdefault("base_points", 10)
    return CauseFacts(kind="purchase", key="txn:1", occurred_at=at, contact_id="c1", basket=context, **fields)


def event_facts(event_type="app_opened", *, at=MONDAY_NOON, **attributes) -> CauseFacts:
    return CauseFacts(
        kind="event", key="event:1", occurred_at=at, contact_id="c1", event_type=event_type, event_attributes=attributes
    )


def spec(**fields) -> CampaignSpec:
    fields.setdefault("outcomes", (OutcomeSpec(kind="points", points=50),))
    return CampaignSpec(id=fields.pop("id", "k1"), name="Campaign", trigger=fields.pop("trigger", "purchase"), **fields)


def test_a_purchase_campaign_fires_for_a_purchase_and_plans_its_points():
    decision = evaluate(spec(), purchase_facts())
    assert decision.fires and decision.points == 50


def test_a_purchase_campaign_ignores_events_and_an_event_campaign_ignores_other_types():
    assert evaluate(spec(), event_facts()).reasons == ["wrong_trigger"]
    listening = spec(trigger="event", event_type="app_opened")
    assert evaluate(listening, event_facts("app_opened")).fires
    assert evaluate(listening, event_facts("review_written")).reasons == ["wrong_trigger"]


def test_system_triggers_listen_for_their_system_events():
    assert evaluate(spec(trigger="contact_registered"), event_facts("contact.registered")).fires
    assert evaluate(spec(trigger="birthday"), event_facts("birthday")).fires
    to_gold = spec(trigger="tier_changed", to_tier_id=7)
    assert evaluate(to_gold, event_facts("tier.changed", to_tier_id=7)).fires
    assert evaluate(to_gold, event_facts("tier.changed", to_tier_id=3)).reasons == ["wrong_tier"]


def test_the_window_is_judged_at_the_time_the_cause_happened():
    window = spec(starts_at=datetime(2026, 11, 1, tzinfo=UTC), ends_at=datetime(2026, 12, 1, tzinfo=UTC))
    assert evaluate(window, purchase_facts(at=datetime(2026, 11, 30, tzinfo=UTC))).fires
    assert evaluate(window, purchase_facts(at=datetime(2026, 12, 1, tzinfo=UTC))).reasons == ["after_campaign"]
    assert evaluate(window, purchase_facts(at=datetime(2026, 10, 31, tzinfo=UTC))).reasons == ["before_campaign"]


def test_every_unmet_condition_is_named():
    strict = spec(
        includes=frozenset({("family", "coffee")}),
        min_spend=5000,
        channels=frozenset({"web"}),
        days_of_week=frozenset({6, 7}),
        currency="EUR",
    )
    decision = evaluate(strict, purchase_facts())
    assert not decision.fires
    assert set(decision.reasons) == {"wrong_channel", "wrong_day", "no_qualifying_items", "below_min_spend"}


def test_minimum_spend_counts_only_qualifying_items():
    coffee = spec(includes=frozenset({("family", "coffee")}), min_spend=1500, currency="EUR")
    lines = (("A", 1000, 1, "coffee"), ("B", 4000, 1, "tea"))
    assert evaluate(coffee, purchase_facts(lines)).reasons == ["below_min_spend"]
    assert evaluate(coffee, purchase_facts((*lines, ("C", 600, 1, "coffee")))).fires


def test_excluded_items_do_not_qualify():
    no_tobacco = spec(excludes=frozenset({("family", "tobacco")}), min_spend=1000, currency="EUR")
    assert evaluate(no_tobacco, purchase_facts((("A", 5000, 1, "tobacco"),))).reasons == [
        "no_qualifying_items",
        "below_min_spend",
    ]


def test_hours_are_read_in_the_campaign_time_zone_without_a_venue():
    # 12:00 UTC is 13:00 in Oslo in November.
    morning = spec(hour_from=time(8), hour_until=time(13), time_zone="Europe/Oslo")
    assert evaluate(morning, purchase_facts()).reasons == ["outside_hours"]
    assert evaluate(spec(hour_from=time(8), hour_until=time(13)), purchase_facts()).fires


def test_nth_purchase_fires_only_on_that_purchase():
    second = spec(nth_purchase=2)
    assert evaluate(second, purchase_facts(purchase_number=1)).reasons == ["not_nth_purchase"]
    assert evaluate(second, purchase_facts(purchase_number=2)).fires


def test_audiences_by_tier_attributes_and_list():
    assert evaluate(spec(audience="tiers", audience_tier_ids=frozenset({1})), purchase_facts(tier_id=1)).fires
    assert evaluate(spec(audience="tiers", audience_tier_ids=frozenset({1})), purchase_facts(tier_id=2)).reasons == [
        "not_in_audience_tier"
    ]
    oslo = spec(audience="attributes", audience_filters=({"attribute": "city", "operator": "eq", "value": "oslo"},))
    assert evaluate(oslo, purchase_facts(contact_attributes={"city": "Oslo"})).fires
    assert not evaluate(oslo, purchase_facts(contact_attributes={"city": "Bergen"})).fires
    listed = spec(audience="list")
    assert evaluate(listed, purchase_facts(audience_list_campaign_ids=frozenset({"k1"}))).fires
    assert not evaluate(listed, purchase_facts()).fires


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ({"attribute": "n", "operator": "gte", "value": 3}, {"n": "3"}, True),
        ({"attribute": "n", "operator": "gt", "value": 3}, {"n": 3}, False),
        ({"attribute": "n", "operator": "lt", "value": "10"}, {"n": 9.5}, True),
        ({"attribute": "screen", "operator": "in", "value": ["home", "cart"]}, {"screen": "Cart"}, True),
        ({"attribute": "screen", "operator": "not_in", "value": ["home"]}, {}, True),
        ({"attribute": "screen", "operator": "exists"}, {"screen": None}, False),
        ({"attribute": "tags", "operator": "contains", "value": "vip"}, {"tags": ["new", "vip"]}, True),
        ({"attribute": "x", "operator": "ne", "value": 1}, {"x": 1}, False),
        ({"attribute": "x", "operator": "eq", "value": 1}, {}, False),
    ],
)
def test_attribute_filters(condition, attributes, expected):
    assert filter_matches(condition, attributes) is expected


def test_event_filters_must_all_hold():
    listening = spec(
        trigger="event",
        event_type="app_opened",
        event_filters=({"attribute": "platform", "operator": "eq", "value": "ios"},),
    )
    assert evaluate(listening, event_facts(platform="ios")).fires
    assert evaluate(listening, event_facts(platform="android")).reasons == ["event_filter_not_met"]


def test_a_multiplier_gives_the_extra_points_of_the_purchase():
    double = spec(outcomes=(OutcomeSpec(kind="points_multiplier", multiplier=Decimal("2.5")),))
    assert evaluate(double, purchase_facts(base_points=41)).points == 62  # 41 × 1.5 = 61.5, rounded half up


def test_cashback_is_a_capped_percentage_of_qualifying_items_plus_a_fixed_amount():
    cashback = spec(
        includes=frozenset({("sku", "A")}),
        outcomes=(OutcomeSpec(kind="cashback", cashback_percent=Decimal(10), cashback_amount=100, cashback_cap=250),),
    )
    assert evaluate(cashback, purchase_facts((("A", 1000), ("B", 9000)))).money == 200
    assert evaluate(cashback, purchase_facts((("A", 5000),))).money == 250


def test_goal_contributions_by_metric():
    lines = (("A", 1000, 2), ("B", 500, 3))
    assert evaluate(spec(goal_metric="spend", goal_target=1), purchase_facts(lines)).contribution == 1500
    assert evaluate(spec(goal_metric="quantity", goal_target=1), purchase_facts(lines)).contribution == 5
    assert evaluate(spec(goal_metric="visits", goal_target=1), purchase_facts(lines)).contribution == 1


def test_calendar_periods_start_in_the_campaign_time_zone():
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Oslo
    assert period_start("month", 0, at, "Europe/Oslo", None).isoformat() == "2026-12-01T00:00:00+01:00"
    assert period_start("month", 0, at, "UTC", None).isoformat() == "2026-11-01T00:00:00+00:00"
    assert period_start("week", 0, at, "UTC", None).date().isoformat() == "2026-11-30"
    assert period_start("rolling", 30, at, "UTC", None) == datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    assert period_start("campaign", 0, at, "UTC", None) is None


def test_campaigns_are_evaluated_by_priority_then_id():
    low, high, tie = spec(id="b", priority=1), spec(id="c", priority=5), spec(id="a", priority=1)
    assert [s.id for s in ordered([low, high, tie])] == ["c", "a", "b"]
