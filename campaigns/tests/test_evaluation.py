"""Live evaluation: campaigns fire from purchase processing and from events, post their outcomes
once per (campaign, cause, contact), keep goals, limits and budgets, and are reversed by voids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignAward, Event, GoalContribution
from campaigns.services.definitions import campaign_update
from campaigns.services.events import birthdays_raise, event_process, event_record, queued_events_sweep
from campaigns.tests.factories import campaign, processed_event, processed_purchase
from core.exceptions import IdempotencyMismatch, ValidationError
from core.models import MessageVariant, OutboxEvent
from loyalty.models import Account, LedgerEntry, SpendCondition, Tier
from loyalty.services.contacts import contact_create
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer
from offers.tests.factories import OfferFactory
from transactions.services.processing import transaction_process
from transactions.services.reversals import transaction_void
from transactions.tests.factories import base_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    return ContactFactory(livemode=False)


@pytest.fixture
def rule():
    return base_rule()


def points_of(contact) -> int:
    account = Account.objects.filter(contact=contact, kind=Account.Kind.POINTS).first()
    return account.balance if account else 0


def test_a_purchase_campaign_awards_its_points_with_the_purchase(contact, rule):
    bonus = campaign(outcomes=[{"kind": "points", "points": 100}])
    processed_purchase("T-1", contact=contact, lines=(("A", 2000),))
    assert points_of(contact) == 20 + 100
    award = CampaignAward.objects.get(campaign=bonus)
    assert (award.contact, award.points) == (contact, 100)
    entry = LedgerEntry.objects.get(idempotency_key__startswith=f"cmp:{bonus.pk}:")
    assert (entry.source_type, entry.source_id) == ("transaction", "T-1")


def test_reprocessing_a_purchase_never_awards_a_campaign_twice(contact, rule):
    bonus = campaign()
    txn = processed_purchase("T-1", contact=contact)
    # Force the purchase back to the queue, as a redelivered message after a crash would find it.
    type(txn).objects.filter(pk=txn.pk).update(status="queued")
    transaction_process(transaction_id=txn.pk)
    assert CampaignAward.objects.filter(campaign=bonus).count() == 1
    assert points_of(contact) == 10 + 100


def test_a_void_reverses_the_campaign_points_with_the_purchase(contact, rule):
    campaign(outcomes=[{"kind": "points", "points": 100}])
    txn = processed_purchase("T-1", contact=contact)
    transaction_void(transaction=txn, reason="cashier error")
    assert points_of(contact) == 0


def test_a_multiplier_doubles_the_base_points(contact, rule):
    campaign(outcomes=[{"kind": "points_multiplier", "multiplier": "2"}])
    processed_purchase("T-1", contact=contact, lines=(("A", 3000),))
    assert points_of(contact) == 60


def test_cashback_goes_to_the_commerce_balance_with_its_spend_condition(contact, rule):
    condition = SpendCondition.objects.create(livemode=False, name="Coffee only")
    campaign(
        currency="EUR",
        outcomes=[
            {"kind": "cashback", "cashback_percent": "5", "balance": "commerce", "spend_condition": condition.pk}
        ],
    )
    processed_purchase("T-1", contact=contact, lines=(("A", 4000),))
    account = Account.objects.get(contact=contact, kind=Account.Kind.COMMERCE)
    assert (account.balance, account.currency) == (200, "EUR")
    assert account.lots.get().spend_condition == condition


def test_an_offer_outcome_issues_the_offer_and_an_unavailable_offer_does_not_fail_the_award(contact, rule):
    offer = OfferFactory(livemode=False, status="active")
    paused = OfferFactory(livemode=False, status="active")
    welcome = campaign(
        outcomes=[
            {"kind": "points", "points": 10},
            {"kind": "issue_offer", "offer": offer.pk},
            {"kind": "issue_offer", "offer": paused.pk},
        ]
    )
    type(paused).objects.filter(pk=paused.pk).update(status="paused")
    processed_purchase("T-1", contact=contact)
    assert IssuedOffer.objects.get(contact=contact).offer == offer
    award = CampaignAward.objects.get(campaign=welcome)
    assert award.offers_issued == 1
    assert award.detail["offers_not_issued"][0]["offer_id"] == str(paused.pk)


def test_a_message_outcome_writes_campaign_message_built_from_its_variant(contact, rule):
    variant = MessageVariant.objects.create(
        livemode=False,
        name="crm",
        template={
            "member": "{{ contact.member_number }}",
            "text": "Hi {{ contact.first_name }}",
            "txn": "{{ transaction.id }}",
        },
    )
    greeting = campaign(outcomes=[{"kind": "message", "message_variant": variant.pk}])
    processed_purchase("T-9", contact=contact)
    event = OutboxEvent.objects.get(event_type="campaign.message")
    assert event.payload["campaign_id"] == str(greeting.pk)
    assert event.payload["variant"] == "crm"
    assert event.payload["message"] == {
        "member": contact.member_number,
        "text": f"Hi {contact.first_name}",
        "txn": "T-9",
    }


def test_a_higher_priority_campaign_can_stop_lower_ones(contact, rule):
    campaign(name="Top", priority=10, stops_lower_priority=True, outcomes=[{"kind": "points", "points": 5}])
    campaign(name="Low", priority=1, outcomes=[{"kind": "points", "points": 500}])
    processed_purchase("T-1", contact=contact)
    assert points_of(contact) == 10 + 5


def test_a_late_purchase_is_judged_by_the_campaigns_in_force_when_it_happened(contact, rule):
    now = timezone.now()
    campaign(name="Last week", starts_at=now - timedelta(days=10), ends_at=now - timedelta(days=3))
    old = processed_purchase("T-old", contact=contact, occurred_at=now - timedelta(days=5))
    processed_purchase("T-new", contact=contact, occurred_at=now)
    assert list(CampaignAward.objects.values_list("cause", flat=True)) == [f"txn:{old.pk}"]


def test_draft_and_paused_campaigns_give_nothing(contact, rule):
    campaign(status="draft")
    paused = campaign(name="Paused")
    campaign_update(campaign=paused, status="paused")
    processed_purchase("T-1", contact=contact)
    assert not CampaignAward.objects.exists()


def test_a_spend_goal_fires_once_reached_and_starts_again_after_the_award(contact, rule):
    goal = campaign(currency="EUR", goal_metric="spend", goal_target=10000, goal_period="month", time_zone="UTC")
    start = datetime(2026, 11, 2, 12, tzinfo=UTC)
    for number, amount in enumerate((4000, 4000, 3000, 9000, 1000)):
        processed_purchase(
            f"T-{number}", contact=contact, lines=(("A", amount),), occurred_at=start + timedelta(days=number)
        )
    awards = list(CampaignAward.objects.filter(campaign=goal).order_by("occurred_at"))
    # 40 + 40 + 30 = 110 reaches 100 on the third purchase; 90 + 10 reaches it again on the fifth.
    assert [award.occurred_at for award in awards] == [start + timedelta(days=2), start + timedelta(days=4)]


def test_a_visits_goal_in_a_rolling_window_forgets_old_visits(contact, rule):
    goal = campaign(goal_metric="visits", goal_target=3, goal_period="rolling", goal_period_days=30)
    start = timezone.now() - timedelta(days=80)
    days = (0, 10, 45, 50, 55)  # the first two are more than 30 days before the third
    for number, day in enumerate(days):
        processed_purchase(f"T-{number}", contact=contact, occurred_at=start + timedelta(days=day))
    award = CampaignAward.objects.get(campaign=goal)
    assert award.occurred_at == start + timedelta(days=55)
    assert GoalContribution.objects.filter(campaign=goal).count() == 5


def test_goal_contributions_count_each_purchase_once(contact, rule):
    goal = campaign(goal_metric="visits", goal_target=2)
    txn = processed_purchase("T-1", contact=contact)
    type(txn).objects.filter(pk=txn.pk).update(status="queued")
    transaction_process(transaction_id=txn.pk)
    assert GoalContribution.objects.filter(campaign=goal).count() == 1
    assert not CampaignAward.objects.exists()


def test_the_per_contact_limit_holds_per_period(contact, rule):
    limited = campaign(limit_per_contact=2, limit_period="month", time_zone="UTC")
    start = datetime(2026, 10, 5, tzinfo=UTC)
    for number, day in enumerate((0, 1, 2, 30)):
        processed_purchase(f"T-{number}", contact=contact, occurred_at=start + timedelta(days=day))
    dates = [award.occurred_at.date().isoformat() for award in CampaignAward.objects.filter(campaign=limited)]
    assert sorted(dates) == ["2026-10-05", "2026-10-06", "2026-11-04"]


def test_the_budget_stops_awards_when_it_would_be_exceeded(rule):
    budgeted = campaign(budget_points=250, outcomes=[{"kind": "points", "points": 100}])
    for number in range(4):
        processed_purchase(f"T-{number}", contact=ContactFactory(livemode=False))
    budgeted.refresh_from_db()
    assert (budgeted.awards_count, budgeted.points_awarded) == (2, 200)
    assert CampaignAward.objects.filter(campaign=budgeted).count() == 2


def test_nth_purchase_counts_the_contacts_processed_purchases(contact, rule):
    second = campaign(nth_purchase=2)
    for number in range(3):
        processed_purchase(f"T-{number}", contact=contact, occurred_at=timezone.now() - timedelta(hours=3 - number))
    assert CampaignAward.objects.get(campaign=second).cause.startswith("txn:")
    assert CampaignAward.objects.count() == 1


def test_an_event_campaign_awards_once_per_event(contact):
    opened = campaign(trigger="event", event_type="app_opened", outcomes=[{"kind": "points", "points": 7}])
    event = processed_event(contact=contact, external_id="E-1")
    assert event.status == Event.Status.PROCESSED and event.awards_count == 1
    Event.objects.filter(pk=event.pk).update(status="queued")
    event_process(event_id=event.pk)
    assert CampaignAward.objects.filter(campaign=opened).count() == 1
    assert points_of(contact) == 7
    entry = LedgerEntry.objects.get(contact=contact)
    assert entry.source_type == "campaign"


def test_an_event_is_stored_once_per_sender_id_and_a_different_body_is_refused(contact):
    first, replayed = event_record(livemode=False, contact=contact, event_type="app_opened", external_id="E-1")
    again, replayed_again = event_record(livemode=False, contact=contact, event_type="app_opened", external_id="E-1")
    assert (again.pk, replayed, replayed_again) == (first.pk, False, True)
    with pytest.raises(IdempotencyMismatch):
        event_record(livemode=False, contact=contact, event_type="review_written", external_id="E-1")


@pytest.mark.parametrize("bad_type", ["App Opened", "birthday", "", "x" * 65, "contact.registered"])
def test_event_types_are_checked(contact, bad_type):
    with pytest.raises(ValidationError):
        event_record(livemode=False, contact=contact, event_type=bad_type)


def test_a_registration_fires_the_welcome_campaign_through_a_system_event():
    welcome = campaign(trigger="contact_registered", outcomes=[{"kind": "points", "points": 250}])
    contact = contact_create(livemode=False, first_name="Ana", email="ana@example.com")
    event = Event.objects.get(contact=contact, type="contact.registered")
    assert event.source == Event.Source.SYSTEM
    event_process(event_id=event.pk)
    assert CampaignAward.objects.get(campaign=welcome).contact == contact
    assert points_of(contact) == 250


def test_no_system_event_is_stored_when_no_campaign_listens():
    contact_create(livemode=False, first_name="Bo", email="bo@example.com")
    assert not Event.objects.exists()


def test_a_tier_upgrade_fires_the_campaign_for_that_tier(contact):
    gold = Tier.objects.create(livemode=False, name="Gold", rank=2, threshold=100)
    congratulations = campaign(trigger="tier_changed", to_tier=gold.pk, outcomes=[{"kind": "points", "points": 5}])
    base_rule(points_per_unit="10")
    processed_purchase("T-1", contact=contact, lines=(("A", 2000),))  # 200 points: Gold
    event = Event.objects.get(contact=contact, type="tier.changed")
    assert event.attributes["to_tier_id"] == gold.pk
    event_process(event_id=event.pk)
    assert CampaignAward.objects.filter(campaign=congratulations).count() == 1


def test_birthdays_raise_one_event_per_contact_per_year():
    campaign(trigger="birthday", outcomes=[{"kind": "points", "points": 30}])
    today = timezone.now().date()
    born = ContactFactory(livemode=False, birth_date=today.replace(year=1990))
    ContactFactory(livemode=False, birth_date=(today + timedelta(days=1)).replace(year=1990))
    assert birthdays_raise() == 1
    birthdays_raise()
    assert list(Event.objects.values_list("contact_id", "type")) == [(born.pk, "birthday")]


def test_the_sweeper_enqueues_events_left_queued(contact, monkeypatch):
    event, _ = event_record(livemode=False, contact=contact, event_type="app_opened")
    Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(minutes=5))
    enqueued = []
    monkeypatch.setattr("campaigns.services.events.event_enqueue", enqueued.append)
    assert queued_events_sweep() == 1
    assert enqueued == [event.pk]


def test_campaign_statuses_follow_the_clock():
    from campaigns.services.definitions import campaign_statuses_refresh

    now = timezone.now()
    later = campaign(name="Later", starts_at=now + timedelta(hours=1))
    assert later.status == Campaign.Status.SCHEDULED
    campaign_statuses_refresh(now=now + timedelta(hours=2))
    later.refresh_from_db()
    assert later.status == Campaign.Status.ACTIVE
    ending = campaign(name="Ending", ends_at=now + timedelta(hours=1))
    campaign_statuses_refresh(now=now + timedelta(hours=2))
    ending.refresh_from_db()
    assert ending.status == Campaign.Status.ENDED


def test_cashback_is_only_paid_on_purchases_in_the_campaign_currency(contact, rule):
    campaign(currency="EUR", outcomes=[{"kind": "cashback", "cashback_amount": 500}])
    processed_purchase("T-SEK", contact=contact, currency="SEK")
    assert not CampaignAward.objects.exists()
    processed_purchase("T-EUR", contact=contact)
    assert Account.objects.get(contact=contact, kind=Account.Kind.OPEN).currency == "EUR"


def test_a_sender_id_can_never_take_a_system_event_key(contact):
    with pytest.raises(ValidationError):
        event_record(
            livemode=False, contact=contact, event_type="app_opened", external_id=f"birthday:{contact.pk}:2027"
        )


def test_a_campaign_can_be_ended_even_after_its_offer_was_archived():
    offer = OfferFactory(livemode=False, status="active")
    giving = campaign(outcomes=[{"kind": "issue_offer", "offer": offer.pk}])
    type(offer).objects.filter(pk=offer.pk).update(status="archived")
    campaign_update(campaign=giving, status="paused")
    ended = campaign_update(campaign=giving, status="ended")
    assert ended.status == Campaign.Status.ENDED and ended.ends_at is not None


def test_the_simulation_says_why_causes_gave_nothing(contact, rule):
    from campaigns.services.simulation import campaign_simulate

    processed_purchase("T-1", contact=contact, lines=(("A", 1000),))
    processed_purchase("T-2", contact=contact, lines=(("A", 9000),))
    draft = campaign(status="draft", currency="EUR", min_spend=5000)
    result = campaign_simulate(campaign=draft, days=7)
    assert result["reach"] == {"contacts": 1, "transactions": 1, "events": 0}
    assert result["not_awarded"] == {"below_min_spend": 1}
    assert result["cost"]["points"] == 100
    assert not CampaignAward.objects.exists()


def test_the_contact_export_holds_the_contacts_events_and_awards(contact, client_test):
    opened = campaign(trigger="event", event_type="app_opened", outcomes=[{"kind": "points", "points": 7}])
    processed_event(contact=contact, external_id="E-export", platform="ios")
    document = client_test.get(f"/api/v1/contacts/{contact.pk}/export").json()
    assert [event["external_id"] for event in document["campaign_events"]] == ["E-export"]
    assert document["campaign_events"][0]["attributes"] == {"platform": "ios"}
    assert [award["campaign_id"] for award in document["campaign_awards"]] == [str(opened.pk)]
    assert document["campaign_goal_contributions"] == []


def test_erasure_clears_event_attributes_and_audience_lists(contact):
    from campaigns.models import CampaignAudienceMember
    from loyalty.services.erasure import contact_erase

    listed = campaign(audience="list")
    CampaignAudienceMember.objects.create(campaign=listed, contact=contact)
    event, _ = event_record(livemode=False, contact=contact, event_type="app_opened", attributes={"email": "x@y.z"})
    contact_erase(contact=contact, erased_by="test")
    assert Event.objects.get(pk=event.pk).attributes == {}
    assert not CampaignAudienceMember.objects.filter(contact=contact).exists()


def test_reprocessing_keeps_lower_campaigns_stopped_by_one_that_already_fired(contact, rule):
    campaign(name="Top", priority=10, stops_lower_priority=True, goal_metric="visits", goal_target=1)
    low = campaign(name="Low", priority=1, outcomes=[{"kind": "points", "points": 500}])
    txn = processed_purchase("T-1", contact=contact)
    type(txn).objects.filter(pk=txn.pk).update(status="queued")
    transaction_process(transaction_id=txn.pk)
    assert not CampaignAward.objects.filter(campaign=low).exists()
    assert points_of(contact) == 10 + 100


def test_a_system_event_raised_twice_is_stored_once_and_the_second_enqueue_finds_nothing(contact):
    from campaigns.services.events import system_event_raise

    campaign(trigger="birthday", outcomes=[{"kind": "points", "points": 30}])
    raised = []
    for _ in range(2):
        system_event_raise(
            livemode=False, contact_id=contact.pk, trigger="birthday", event_type="birthday", key="birthday:x:2026"
        )
        raised.append(Event.objects.get(external_id="birthday:x:2026").pk)
    assert Event.objects.filter(external_id="birthday:x:2026").count() == 1
    assert event_process(event_id=uuid.uuid4()) is None  # the twin's id was never inserted
    assert event_process(event_id=raised[0]).status == Event.Status.PROCESSED
