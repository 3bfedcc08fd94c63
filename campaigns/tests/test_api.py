"""The campaigns API against the contract: campaign management (money as decimal strings in the
campaign's currency, limits, status transitions, simulation, list audiences, goal progress),
events (202, replay on the sender's id, mismatch), mode isolation and scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignAudienceMember,
    CampaignAward,
    CampaignParticipation,
    Event,
    GoalContribution,
)
from campaigns.services.events import event_process
from campaigns.tests.factories import campaign, processed_purchase
from catalogue.tests.factories import VenueFactory
from core.tests.assertions import assert_error_body
from loyalty.models import LedgerEntry, Tier
from loyalty.tests.factories import ContactFactory
from offers.tests.factories import OfferFactory
from transactions.tests.factories import base_rule

pytestmark = pytest.mark.django_db

CAMPAIGNS = "/api/v1/campaigns"
EVENTS = "/api/v1/events"
UNKNOWN_ID = "6f1c1d2e-8a55-4a4e-9f57-1f0d3c6b2a10"


def assert_error(response, status: int, code: str, *parameters: str) -> dict:
    return assert_error_body(response, status, code, list(parameters))


def post(client, url: str, body: dict, **headers):
    return client.post(url, body, format="json", **headers)


def patch(client, url: str, body: dict):
    return client.patch(url, body, format="json")


def campaign_body(**overrides) -> dict:
    """A purchase campaign in EUR: 10 % cashback (at most 5.00) on dairy above 20.00."""
    return {
        "name": "Dairy cashback",
        "trigger": "purchase",
        "currency": "EUR",
        "min_spend": "20.00",
        "budget_money": "1000.00",
        "restrictions": [{"kind": "family", "value": "dairy"}],
        "outcomes": [{"kind": "cashback", "cashback_percent": "10", "cashback_cap": "5.00"}],
        **overrides,
    }


@pytest.fixture
def live_management_client(make_client):
    return make_client(livemode=True, scopes=("management",), name="live management")


# --- management: create, read, list, update ----------------------------------------------------


def test_management_creates_reads_lists_and_updates_a_campaign(management_client):
    venue = VenueFactory()
    gold = Tier.objects.create(livemode=False, name="Gold", rank=5, threshold=1000)

    created = post(
        management_client,
        CAMPAIGNS,
        campaign_body(venues=[str(venue.pk)], audience="tiers", audience_tiers=[gold.pk], status="active"),
    )
    assert created.status_code == 201, created.json()
    campaign_id = created.json()["id"]
    read = management_client.get(f"{CAMPAIGNS}/{campaign_id}")
    listed = management_client.get(CAMPAIGNS)
    patched = patch(
        management_client,
        f"{CAMPAIGNS}/{campaign_id}",
        {"status": "paused", "min_spend": "25.50", "outcomes": [{"kind": "points", "points": 50}]},
    )

    body = created.json()
    assert (body["status"], body["livemode"], body["currency"]) == ("active", False, "EUR")
    assert (body["min_spend"], body["budget_money"]) == ("20.00", "1000.00")
    assert body["restrictions"] == [{"mode": "include", "kind": "family", "value": "dairy"}]
    assert body["outcomes"] == [
        {
            "kind": "cashback",
            "points": None,
            "multiplier": None,
            "cashback_percent": "10",
            "cashback_amount": "0.00",
            "cashback_cap": "5.00",
            "balance": "open",
            "spend_condition": None,
            "offer": None,
            "message_variant": None,
        }
    ]
    assert body["venues"] == [str(venue.pk)]
    assert (body["audience"], body["audience_tiers"]) == ("tiers", [gold.pk])
    assert body["counters"] == {"awards_count": 0, "points_awarded": 0, "money_awarded": "0.00"}
    assert body["created_at"] and body["updated_at"]
    assert read.json() == body
    assert [item["id"] for item in listed.json()["results"]] == [campaign_id]
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["status"], patched.json()["min_spend"]) == ("paused", "25.50")
    assert patched.json()["outcomes"][0]["points"] == 50
    assert patched.json()["restrictions"] == body["restrictions"]  # not sent: kept
    stored = Campaign.objects.get(pk=campaign_id)
    assert (stored.min_spend, stored.budget_money, stored.status) == (2550, 100_000, "paused")


@pytest.mark.parametrize("budget_awards", [None, 10])
def test_counters_sum_what_the_campaign_gave_with_or_without_a_budget(management_client, budget_awards):
    base_rule()
    contact = ContactFactory()
    bonus = campaign(
        currency="EUR",
        budget_awards=budget_awards,
        outcomes=[{"kind": "points", "points": 100}, {"kind": "cashback", "cashback_amount": 150}],
    )
    processed_purchase("T-1", contact=contact)
    processed_purchase("T-2", contact=contact)

    read = management_client.get(f"{CAMPAIGNS}/{bonus.pk}")
    listed = management_client.get(CAMPAIGNS)

    counters = {"awards_count": 2, "points_awarded": 200, "money_awarded": "3.00"}
    assert read.json()["counters"] == counters
    assert listed.json()["results"][0]["counters"] == counters


def test_management_create_with_an_idempotency_key_replays_the_first_response(management_client):
    body = campaign_body(starts_at="2030-01-01T00:00:00.123456Z")

    first = post(management_client, CAMPAIGNS, body, HTTP_IDEMPOTENCY_KEY="c1")
    replay = post(management_client, CAMPAIGNS, body, HTTP_IDEMPOTENCY_KEY="c1")
    other = post(management_client, CAMPAIGNS, campaign_body(name="Other"), HTTP_IDEMPOTENCY_KEY="c1")

    assert first.status_code == 201, first.json()
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert_error_body(other, 409, "IDEMPOTENCY_MISMATCH")
    assert Campaign.objects.count() == 1


def test_an_event_campaign_with_an_offer_and_a_spend_goal_speaks_money_in_its_currency(management_client):
    offer = OfferFactory()

    response = post(
        management_client,
        CAMPAIGNS,
        {
            "name": "Spend 100 SEK, get an offer",
            "trigger": "purchase",
            "currency": "sek",
            "goal_metric": "spend",
            "goal_target": "100.50",
            "goal_period": "month",
            "outcomes": [{"kind": "issue_offer", "offer": str(offer.pk)}, {"kind": "cashback", "cashback_amount": "5"}],
        },
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["currency"], body["goal_target"], body["goal_period"]) == ("SEK", "100.50", "month")
    assert body["outcomes"][0]["offer"] == str(offer.pk)
    assert body["outcomes"][1]["cashback_amount"] == "5.00"
    assert Campaign.objects.get(pk=body["id"]).goal_target == 10050


def test_a_visits_goal_target_is_a_whole_number(management_client):
    response = post(
        management_client, CAMPAIGNS, campaign_body(goal_metric="visits", goal_target=5, goal_period="rolling")
    )

    assert response.status_code == 201, response.json()
    assert response.json()["goal_target"] == 5


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"currency": "", "min_spend": "20.00", "outcomes": [{"kind": "points", "points": 5}]}, "min_spend"),
        ({"currency": "", "min_spend": None, "budget_money": "10.00"}, "budget_money"),
        (
            {
                "currency": "",
                "min_spend": None,
                "budget_money": None,
                "outcomes": [{"kind": "cashback", "cashback_amount": "1.00"}],
            },
            "outcomes.0.cashback_amount",
        ),
    ],
)
def test_a_money_field_without_a_currency_is_refused_naming_the_field(management_client, overrides, field):
    body = {key: value for key, value in campaign_body(**overrides).items() if key != "currency" or value}

    response = post(management_client, CAMPAIGNS, body)

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert body["parameters"][0] == field
    assert not Campaign.objects.exists()


def test_an_unknown_currency_is_refused_before_the_amounts(management_client):
    response = post(management_client, CAMPAIGNS, campaign_body(currency="XXX", min_spend="not money"))

    assert_error(response, 400, "VALIDATION_ERROR", "currency")


def test_more_decimals_than_the_currency_has_is_refused_naming_the_field(management_client):
    response = post(management_client, CAMPAIGNS, campaign_body(currency="JPY", min_spend="20.5"))

    assert_error(response, 400, "VALIDATION_ERROR", "min_spend")


def test_a_negative_amount_is_refused_naming_the_field(management_client):
    response = post(
        management_client, CAMPAIGNS, campaign_body(outcomes=[{"kind": "cashback", "cashback_amount": "-1.00"}])
    )

    assert_error(response, 400, "VALIDATION_ERROR", "outcomes.0.cashback_amount", "-1.00")


def test_management_refuses_51_restrictions_with_limit_exceeded(management_client):
    restrictions = [{"kind": "sku", "value": f"SKU{index}"} for index in range(51)]

    response = post(management_client, CAMPAIGNS, campaign_body(restrictions=restrictions))

    assert_error(response, 400, "LIMIT_EXCEEDED", "restrictions", "limit", "50")
    assert not Campaign.objects.exists()


def test_management_accepts_50_restrictions(management_client):
    restrictions = [{"kind": "sku", "value": f"SKU{index}"} for index in range(50)]

    response = post(management_client, CAMPAIGNS, campaign_body(restrictions=restrictions))

    assert response.status_code == 201, response.json()
    assert len(response.json()["restrictions"]) == 50


def test_a_patch_with_51_restrictions_is_refused_and_keeps_the_old_ones(management_client):
    campaign_id = post(management_client, CAMPAIGNS, campaign_body()).json()["id"]
    restrictions = [{"kind": "sku", "value": f"SKU{index}"} for index in range(51)]

    response = patch(management_client, f"{CAMPAIGNS}/{campaign_id}", {"restrictions": restrictions})

    assert_error(response, 400, "LIMIT_EXCEEDED", "restrictions", "limit", "50")
    assert list(Campaign.objects.get(pk=campaign_id).restrictions.values_list("value", flat=True)) == ["dairy"]


def test_a_campaign_without_outcomes_is_refused_naming_the_field(management_client):
    response = post(management_client, CAMPAIGNS, campaign_body(outcomes=[]))

    assert_error(response, 400, "VALIDATION_ERROR", "outcomes")


def test_an_unknown_field_is_refused(management_client):
    response = post(management_client, CAMPAIGNS, campaign_body(budget="10"))

    assert_error(response, 400, "VALIDATION_ERROR", "budget")


def test_a_forbidden_status_change_is_a_conflict_and_changes_nothing(management_client):
    campaign_id = post(management_client, CAMPAIGNS, campaign_body(status="active")).json()["id"]
    ended = patch(management_client, f"{CAMPAIGNS}/{campaign_id}", {"status": "ended"})

    response = patch(management_client, f"{CAMPAIGNS}/{campaign_id}", {"status": "active", "name": "Again"})

    assert ended.status_code == 200, ended.json()
    assert ended.json()["ends_at"] is not None
    assert_error(response, 409, "CONFLICT", "status", "active", "current", "ended")
    stored = Campaign.objects.get(pk=campaign_id)
    assert (stored.status, stored.name) == ("ended", "Dairy cashback")


def test_a_draft_is_launched_by_a_status_change(management_client):
    campaign_id = post(management_client, CAMPAIGNS, campaign_body()).json()["id"]
    starts_at = (timezone.now() + timedelta(days=2)).isoformat()

    response = patch(management_client, f"{CAMPAIGNS}/{campaign_id}", {"status": "active", "starts_at": starts_at})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "scheduled"  # the window decides


def test_the_list_filters_by_status_and_trigger(management_client):
    active = campaign(name="Active purchase")
    campaign(name="Draft purchase", status="draft")
    event = campaign(name="Active event", trigger="event", event_type="app_opened")

    by_status = management_client.get(CAMPAIGNS, {"status": "active"})
    by_both = management_client.get(CAMPAIGNS, {"status": "active", "trigger": "event"})
    bad = management_client.get(CAMPAIGNS, {"status": "running"})

    assert {item["id"] for item in by_status.json()["results"]} == {str(active.pk), str(event.pk)}
    assert [item["id"] for item in by_both.json()["results"]] == [str(event.pk)]
    assert_error(bad, 400, "VALIDATION_ERROR", "status")


def test_the_list_reads_a_fixed_number_of_queries(management_client, django_assert_max_num_queries):
    for index in range(5):
        post(management_client, CAMPAIGNS, campaign_body(name=f"Campaign {index}", venues=[str(VenueFactory().pk)]))

    with django_assert_max_num_queries(10):
        response = management_client.get(CAMPAIGNS)

    assert len(response.json()["results"]) == 5


# --- simulation ------------------------------------------------------------------------------


def test_simulate_returns_the_figures_and_writes_nothing(management_client):
    base_rule()
    first, second = ContactFactory(), ContactFactory()
    processed_purchase("T-1", contact=first, lines=(("A", 3000),))
    processed_purchase("T-2", contact=second, lines=(("A", 1000),))
    processed_purchase("T-3", contact=first, lines=(("A", 2500),))
    draft = campaign(
        status="draft", currency="EUR", min_spend=2000, outcomes=[{"kind": "cashback", "cashback_amount": 150}]
    )
    before = (
        CampaignAward.objects.count(),
        LedgerEntry.objects.count(),
        GoalContribution.objects.count(),
        CampaignParticipation.objects.count(),
        Event.objects.count(),
    )

    response = post(management_client, f"{CAMPAIGNS}/{draft.pk}/simulate", {"days": 7})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["campaign_id"], body["days"]) == (str(draft.pk), 7)
    assert body["evaluated"] == {"transactions": 3, "events": 0}
    assert body["reach"] == {"contacts": 1, "transactions": 2, "events": 0}
    assert body["cost"] == {
        "awards": 2,
        "points": 0,
        "money": "3.00",
        "currency": "EUR",
        "offers": 0,
        "messages": 0,
    }
    assert len(body["per_day"]) == 8  # 7 days back, both ends included
    assert body["from"] < body["until"]
    after = (
        CampaignAward.objects.count(),
        LedgerEntry.objects.count(),
        GoalContribution.objects.count(),
        CampaignParticipation.objects.count(),
        Event.objects.count(),
    )
    assert after == before
    assert Campaign.objects.get(pk=draft.pk).status == "draft"


def test_simulate_defaults_to_30_days_and_refuses_a_period_out_of_range(management_client):
    draft = campaign(status="draft")

    default = management_client.post(f"{CAMPAIGNS}/{draft.pk}/simulate")
    too_long = post(management_client, f"{CAMPAIGNS}/{draft.pk}/simulate", {"days": 366})

    assert default.status_code == 200, default.json()
    assert default.json()["days"] == 30
    assert_error(too_long, 400, "VALIDATION_ERROR", "days")


# --- list audiences ----------------------------------------------------------------------------


def test_audience_upload_matches_members_by_number_email_or_phone_and_reports_the_rest(management_client):
    by_number, by_email, by_phone = ContactFactory(), ContactFactory(), ContactFactory()
    listed = campaign(audience="list")
    members = [by_number.member_number, "NOBODY", by_email.email.upper(), by_phone.mobile_phone, "nobody@example.com"]

    response = post(management_client, f"{CAMPAIGNS}/{listed.pk}/audience", {"members": members})

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "campaign_id": str(listed.pk),
        "matched": 3,
        "unmatched_count": 2,
        "unmatched": [{"index": 1, "value": "NOBODY"}, {"index": 4, "value": "nobody@example.com"}],
        "members": 3,
    }
    assert set(CampaignAudienceMember.objects.values_list("contact_id", flat=True)) == {
        by_number.pk,
        by_email.pk,
        by_phone.pk,
    }


def test_audience_upload_with_replace_replaces_the_list(management_client):
    first, second = ContactFactory(), ContactFactory()
    listed = campaign(audience="list")
    post(management_client, f"{CAMPAIGNS}/{listed.pk}/audience", {"members": [first.email]})

    added = post(management_client, f"{CAMPAIGNS}/{listed.pk}/audience", {"members": [second.email]})
    replaced = post(
        management_client, f"{CAMPAIGNS}/{listed.pk}/audience", {"members": [second.email], "replace": True}
    )

    assert added.json()["members"] == 2
    assert replaced.json()["members"] == 1
    assert list(CampaignAudienceMember.objects.values_list("contact_id", flat=True)) == [second.pk]


def test_audience_upload_of_more_than_10000_members_is_refused_with_limit_exceeded(management_client):
    listed = campaign(audience="list")

    response = post(
        management_client,
        f"{CAMPAIGNS}/{listed.pk}/audience",
        {"members": [f"m{n}@example.com" for n in range(10_001)]},
    )

    assert_error(response, 400, "LIMIT_EXCEEDED", "members", "limit", "10000")
    assert not CampaignAudienceMember.objects.exists()


def test_audience_upload_to_a_campaign_without_a_list_audience_is_refused(management_client):
    everyone = campaign()

    response = post(management_client, f"{CAMPAIGNS}/{everyone.pk}/audience", {"members": ["a@example.com"]})

    assert_error(response, 400, "VALIDATION_ERROR", "audience")


# --- goal progress ---------------------------------------------------------------------------


def spend_goal_campaign(**fields):
    return campaign(currency="EUR", goal_metric="spend", goal_target=10_000, goal_period="campaign", **fields)


def test_campaign_progress_of_one_contact_is_money_for_a_spend_goal(management_client):
    contact = ContactFactory()
    goal = spend_goal_campaign()
    GoalContribution.objects.create(
        campaign=goal, contact=contact, cause="txn:1", amount=2550, occurred_at=timezone.now() - timedelta(hours=1)
    )

    response = management_client.get(f"{CAMPAIGNS}/{goal.pk}/progress", {"contact_id": str(contact.pk)})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["contact_id"], body["campaign_id"], body["metric"]) == (str(contact.pk), str(goal.pk), "spend")
    assert (body["progress"], body["target"], body["currency"]) == ("25.50", "100.00", "EUR")
    assert body["last_award_at"] is None


def test_campaign_progress_needs_a_contact_of_this_mode(management_client):
    goal = spend_goal_campaign()
    live_contact = ContactFactory(livemode=True)

    missing = management_client.get(f"{CAMPAIGNS}/{goal.pk}/progress")
    other_mode = management_client.get(f"{CAMPAIGNS}/{goal.pk}/progress", {"contact_id": str(live_contact.pk)})

    assert_error_body(missing, 400, "VALIDATION_ERROR", ["contact_id"])
    assert_error(other_mode, 404, "NOT_FOUND", "contact_id", str(live_contact.pk))


def test_a_contact_sees_its_progress_on_every_live_goal_campaign(client_test):
    contact = ContactFactory()
    spend = spend_goal_campaign(name="Spend")
    visits = campaign(name="Visits", goal_metric="visits", goal_target=5)
    campaign(name="No goal")
    spend_goal_campaign(name="Draft goal", status="draft")
    GoalContribution.objects.create(
        campaign=visits, contact=contact, cause="txn:1", amount=2, occurred_at=timezone.now() - timedelta(hours=1)
    )

    response = client_test.get(f"/api/v1/contacts/{contact.pk}/campaign-progress")

    assert response.status_code == 200, response.json()
    by_campaign = {entry["campaign_id"]: entry for entry in response.json()["results"]}
    assert set(by_campaign) == {str(spend.pk), str(visits.pk)}
    assert (by_campaign[str(spend.pk)]["progress"], by_campaign[str(spend.pk)]["target"]) == ("0.00", "100.00")
    assert (by_campaign[str(visits.pk)]["progress"], by_campaign[str(visits.pk)]["target"]) == (2, 5)
    assert by_campaign[str(visits.pk)]["currency"] is None


def test_a_contact_of_the_other_mode_has_no_campaign_progress(client_live):
    contact = ContactFactory(livemode=False)

    response = client_live.get(f"/api/v1/contacts/{contact.pk}/campaign-progress")

    assert_error(response, 404, "NOT_FOUND", "id", str(contact.pk))


# --- events ------------------------------------------------------------------------------------


def event_body(contact, **overrides) -> dict:
    return {
        "id": "E-1",
        "contact": {"id": str(contact.pk)},
        "type": "app_opened",
        "occurred_at": "2026-11-20T12:00:00+00:00",
        "attributes": {"screen": "home"},
        **overrides,
    }


def test_an_event_is_accepted_with_202_and_queued(client_test):
    contact = ContactFactory()

    response = post(client_test, EVENTS, event_body(contact))

    assert response.status_code == 202, response.json()
    event = Event.objects.get()
    assert response.json() == {
        "id": "E-1",
        "event_id": str(event.pk),
        "status": "queued",
        "type": "app_opened",
        "contact_id": str(contact.pk),
        "occurred_at": "2026-11-20T12:00:00Z",
        "livemode": False,
    }
    assert (event.external_id, event.status, event.attributes) == ("E-1", "queued", {"screen": "home"})
    assert "Idempotent-Replayed" not in response


def test_an_event_without_an_id_or_time_gets_both(client_test):
    contact = ContactFactory()
    body = {"contact": {"match_key": contact.email, "match_key_type": "email"}, "type": "app_opened"}

    response = post(client_test, EVENTS, body)

    assert response.status_code == 202, response.json()
    event = Event.objects.get()
    assert response.json()["id"] == event.external_id
    assert event.external_id.startswith("evt_")
    assert response.json()["contact_id"] == str(contact.pk)
    assert event.occurred_at is not None


def test_a_repeated_event_with_the_same_id_and_body_gets_the_first_answer(client_test):
    contact = ContactFactory()
    first = post(client_test, EVENTS, event_body(contact))
    event_process(event_id=first.json()["event_id"])  # processed in between: the answer stays the same

    repeat = post(client_test, EVENTS, event_body(contact))

    assert repeat.status_code == 202
    assert repeat.json() == first.json()
    assert repeat["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 1


def test_the_same_event_id_with_another_body_is_an_idempotency_mismatch(client_test):
    contact = ContactFactory()
    post(client_test, EVENTS, event_body(contact))

    response = post(client_test, EVENTS, event_body(contact, attributes={"screen": "cart"}))

    assert_error(response, 409, "IDEMPOTENCY_MISMATCH", "id", "E-1")
    assert Event.objects.get().attributes == {"screen": "home"}


def test_an_event_with_an_idempotency_key_replays_the_first_response(client_test):
    contact = ContactFactory()
    body = {"contact": {"id": str(contact.pk)}, "type": "app_opened"}

    first = post(client_test, EVENTS, body, HTTP_IDEMPOTENCY_KEY="ev-1")
    replay = post(client_test, EVENTS, body, HTTP_IDEMPOTENCY_KEY="ev-1")

    assert first.status_code == replay.status_code == 202
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "App Opened"}, "type"),
        ({"type": "birthday"}, "type"),
        ({"attributes": {f"a{n}": n for n in range(101)}}, "attributes"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
        ({"id": ""}, "id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_an_invalid_event_is_refused_naming_the_field(client_test, overrides, field):
    response = post(client_test, EVENTS, event_body(ContactFactory(), **overrides))

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert body["parameters"][0] == field
    assert not Event.objects.exists()


def test_an_event_for_an_unknown_contact_is_not_found(client_test):
    response = post(client_test, EVENTS, {"contact": {"id": UNKNOWN_ID}, "type": "app_opened"})

    assert_error(response, 404, "NOT_FOUND", "id", UNKNOWN_ID)
    assert not Event.objects.exists()


def test_an_event_is_read_by_our_id_or_the_senders_with_its_status_and_awards(client_test):
    contact = ContactFactory()
    campaign(trigger="event", event_type="app_opened", outcomes=[{"kind": "points", "points": 10}])
    accepted = post(client_test, EVENTS, event_body(contact, occurred_at=timezone.now().isoformat())).json()
    queued = client_test.get(f"{EVENTS}/{accepted['event_id']}")
    event_process(event_id=accepted["event_id"])

    by_our_id = client_test.get(f"{EVENTS}/{accepted['event_id']}")
    by_sender_id = client_test.get(f"{EVENTS}/E-1")

    assert queued.json()["status"] == "queued"
    assert by_our_id.status_code == 200, by_our_id.json()
    assert by_our_id.json() == by_sender_id.json()
    body = by_our_id.json()
    assert (body["id"], body["event_id"], body["status"]) == ("E-1", accepted["event_id"], "processed")
    assert (body["awards_count"], body["failure_reason"]) == (1, None)
    assert body["processed_at"] is not None


def test_a_failed_event_shows_why(client_test):
    contact = ContactFactory()
    accepted = post(client_test, EVENTS, event_body(contact)).json()
    Event.objects.filter(pk=accepted["event_id"]).update(status="failed", failure_reason="ValueError: boom")

    body = client_test.get(f"{EVENTS}/E-1").json()

    assert (body["status"], body["failure_reason"]) == ("failed", "ValueError: boom")


def test_an_unknown_event_is_not_found(client_test):
    assert_error(client_test.get(f"{EVENTS}/{UNKNOWN_ID}"), 404, "NOT_FOUND", "id", UNKNOWN_ID)
    assert_error(client_test.get(f"{EVENTS}/nope"), 404, "NOT_FOUND", "id", "nope")


# --- mode isolation ----------------------------------------------------------------------------


def test_a_test_key_cannot_see_or_touch_a_live_campaign(management_client):
    live = campaign(livemode=True, audience="list")
    contact = ContactFactory()

    responses = {
        "get": management_client.get(f"{CAMPAIGNS}/{live.pk}"),
        "patch": patch(management_client, f"{CAMPAIGNS}/{live.pk}", {"name": "Hijacked"}),
        "simulate": post(management_client, f"{CAMPAIGNS}/{live.pk}/simulate", {}),
        "audience": post(management_client, f"{CAMPAIGNS}/{live.pk}/audience", {"members": [contact.email]}),
        "progress": management_client.get(f"{CAMPAIGNS}/{live.pk}/progress", {"contact_id": str(contact.pk)}),
    }

    for response in responses.values():
        assert_error(response, 404, "NOT_FOUND", "id", str(live.pk))
    assert management_client.get(CAMPAIGNS).json()["results"] == []
    assert Campaign.objects.get(pk=live.pk).name == "Campaign"
    assert not CampaignAudienceMember.objects.exists()


def test_a_live_key_sees_live_campaigns_only(live_management_client):
    live = campaign(livemode=True)
    campaign(livemode=False)

    listed = live_management_client.get(CAMPAIGNS)
    created = post(live_management_client, CAMPAIGNS, campaign_body())

    assert [item["id"] for item in listed.json()["results"]] == [str(live.pk)]
    assert created.status_code == 201, created.json()
    assert created.json()["livemode"] is True


def test_a_live_key_can_neither_send_an_event_for_a_test_contact_nor_read_a_test_event(client_test, client_live):
    contact = ContactFactory(livemode=False)
    accepted = post(client_test, EVENTS, event_body(contact)).json()

    sent = post(client_live, EVENTS, event_body(contact, id="E-2"))
    read_by_uuid = client_live.get(f"{EVENTS}/{accepted['event_id']}")
    read_by_sender_id = client_live.get(f"{EVENTS}/E-1")

    assert_error(sent, 404, "NOT_FOUND", "id", str(contact.pk))
    assert_error(read_by_uuid, 404, "NOT_FOUND", "id", accepted["event_id"])
    assert_error(read_by_sender_id, 404, "NOT_FOUND", "id", "E-1")
    assert Event.objects.count() == 1


def test_event_ids_are_unique_per_mode(client_test, client_live):
    test_contact, live_contact = ContactFactory(livemode=False), ContactFactory(livemode=True)

    in_test = post(client_test, EVENTS, event_body(test_contact))
    in_live = post(client_live, EVENTS, event_body(live_contact))

    assert in_test.status_code == in_live.status_code == 202
    assert in_test.json()["event_id"] != in_live.json()["event_id"]
    assert in_live.json()["livemode"] is True


# --- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", CAMPAIGNS, None),
        ("post", CAMPAIGNS, campaign_body()),
        ("get", f"{CAMPAIGNS}/{UNKNOWN_ID}", None),
        ("patch", f"{CAMPAIGNS}/{UNKNOWN_ID}", {"name": "x"}),
        ("post", f"{CAMPAIGNS}/{UNKNOWN_ID}/simulate", {"days": 30}),
        ("post", f"{CAMPAIGNS}/{UNKNOWN_ID}/audience", {"members": ["a@example.com"]}),
        ("get", f"{CAMPAIGNS}/{UNKNOWN_ID}/progress", None),
    ],
)
def test_an_integration_key_is_refused_on_campaign_management(client_test, method, path, body):
    response = getattr(client_test, method)(path, body, format="json") if body else client_test.get(path)

    assert_error_body(response, 403, "PERMISSION_DENIED")
    assert not Campaign.objects.exists()


def test_a_management_only_key_is_refused_on_events(make_client):
    management_only = make_client(scopes=("management",))
    contact = ContactFactory()

    sent = post(management_only, EVENTS, event_body(contact))
    read = management_only.get(f"{EVENTS}/E-1")
    progress = management_only.get(f"/api/v1/contacts/{contact.pk}/campaign-progress")

    for response in (sent, read, progress):
        assert_error_body(response, 403, "PERMISSION_DENIED")
    assert not Event.objects.exists()


def test_a_request_without_a_key_is_unauthenticated(client):
    response = client.get(CAMPAIGNS)

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")


def test_ids_that_are_not_uuids_are_simply_not_found(management_client):
    assert_error(management_client.get(f"{CAMPAIGNS}/nope"), 404, "NOT_FOUND", "id", "nope")
