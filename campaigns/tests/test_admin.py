"""The campaign admin, as a marketer uses it: the add form refuses what the management API
refuses, status actions go through campaign_update, simulation writes nothing, the audience
upload counts matches, progress and awards are readable, failed events can be re-processed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from django.urls import reverse

from campaigns.admin import CampaignAdmin
from campaigns.models import Campaign, CampaignAudienceMember, CampaignAward, CampaignOutcome, Event
from campaigns.tests.factories import campaign, processed_purchase
from core.models import OutboxEvent
from loyalty.models import LedgerEntry
from loyalty.tests.factories import ContactFactory
from transactions.tests.factories import base_rule

pytestmark = pytest.mark.django_db

ADD = reverse("admin:campaigns_campaign_add")
CHANGELIST = reverse("admin:campaigns_campaign_changelist")


@pytest.fixture
def marketer(django_user_model):
    user = django_user_model.objects.create_user("marketer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


def form_data(*, restrictions=(), outcomes=({"kind": "points", "points": "100"},), **fields) -> dict:
    """The add form as a browser posts it: a test-mode purchase campaign by default;
    `restrictions` are (mode, kind, value), `outcomes` dicts of outcome fields."""
    data = {
        "name": "Double on coffee",
        "description": "",
        "status": "draft",
        "time_zone": "UTC",
        "trigger": "purchase",
        "event_type": "",
        "to_tier": "",
        "audience": "all",
        "audience_filters": "[]",
        "currency": "EUR",
        "min_spend": "0",
        "min_quantity": "0",
        "hour_from": "",
        "hour_until": "",
        "event_filters": "[]",
        "nth_purchase": "",
        "goal_metric": "",
        "goal_target": "0",
        "goal_period": "campaign",
        "goal_period_days": "30",
        "limit_per_contact": "",
        "limit_period": "campaign",
        "limit_period_days": "30",
        "budget_awards": "",
        "budget_points": "",
        "budget_money": "",
        "priority": "0",
        "restrictions-TOTAL_FORMS": str(len(restrictions)),
        "restrictions-INITIAL_FORMS": "0",
        "restrictions-MIN_NUM_FORMS": "0",
        "restrictions-MAX_NUM_FORMS": "50",
        "outcomes-TOTAL_FORMS": str(len(outcomes)),
        "outcomes-INITIAL_FORMS": "0",
        "outcomes-MIN_NUM_FORMS": "0",
        "outcomes-MAX_NUM_FORMS": "20",
    }
    for index, restriction in enumerate(restrictions):
        names = (f"restrictions-{index}-mode", f"restrictions-{index}-kind", f"restrictions-{index}-value")
        data.update(zip(names, restriction, strict=True))
    for index, outcome in enumerate(outcomes):
        row = {
            "kind": "points",
            "points": "0",
            "multiplier": "1",
            "cashback_percent": "0",
            "cashback_amount": "0",
            "cashback_cap": "",
            "balance": "open",
            "spend_condition": "",
            "offer": "",
            "message_variant": "",
            **outcome,
        }
        data.update({f"outcomes-{index}-{name}": value for name, value in row.items()})
    data.update(fields)
    return {name: value for name, value in data.items() if value is not None}


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


# --- the add form -------------------------------------------------------------------------------


def test_a_marketer_creates_a_purchase_campaign_with_restrictions_and_an_outcome(marketer_client):
    data = form_data(
        restrictions=[("include", "family", "coffee"), ("exclude", "sku", "DECAF-1")],
        outcomes=[{"kind": "points", "points": "100", "cashback_amount": "999"}],
    )
    response = marketer_client.post(ADD, data)
    assert response.status_code == 302, response.context and form_errors(response)
    created = Campaign.objects.get(name="Double on coffee")
    assert (created.livemode, created.status, created.trigger, created.currency) == (False, "draft", "purchase", "EUR")
    assert sorted(created.restrictions.values_list("mode", "kind", "value")) == [
        ("exclude", "sku", "DECAF-1"),
        ("include", "family", "coffee"),
    ]
    outcome = CampaignOutcome.objects.get(campaign=created)
    # Stored as the API stores it: the fields of its kind, defaults for the others.
    assert (outcome.kind, outcome.points, outcome.cashback_amount) == ("points", 100, 0)
    assert created.updated_at >= outcome.campaign.created_at


def test_launching_from_the_add_form_goes_through_the_service_and_makes_it_active(marketer_client):
    response = marketer_client.post(ADD, form_data(status="active"))
    assert response.status_code == 302
    assert Campaign.objects.get(name="Double on coffee").status == "active"


def test_fifty_one_restrictions_are_refused_with_a_clear_error(marketer_client):
    restrictions = [("include", "sku", f"SKU-{number}") for number in range(51)]
    response = marketer_client.post(ADD, form_data(restrictions=restrictions))
    assert response.status_code == 200
    assert "At most 50 catalogue restrictions per campaign; got 51." in response.content.decode()
    assert not Campaign.objects.exists()


def test_fifty_restrictions_are_accepted(marketer_client):
    restrictions = [("include", "sku", f"SKU-{number}") for number in range(50)]
    response = marketer_client.post(ADD, form_data(restrictions=restrictions))
    assert response.status_code == 302
    assert Campaign.objects.get().restrictions.count() == 50


def test_a_points_multiplier_on_an_event_triggered_campaign_is_refused(marketer_client):
    data = form_data(
        trigger="event",
        event_type="app_opened",
        currency="",
        outcomes=[{"kind": "points_multiplier", "multiplier": "2"}],
    )
    response = marketer_client.post(ADD, data)
    assert response.status_code == 200
    assert "Outcome 1: Only a purchase has points to multiply." in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_rule_naming_a_field_puts_its_error_on_that_field(marketer_client):
    data = form_data(trigger="event", event_type="app_opened", currency="EUR", min_spend="500")
    response = marketer_client.post(ADD, data)
    assert response.status_code == 200
    assert form_errors(response)["min_spend"] == ["Basket conditions apply to purchase-triggered campaigns."]
    assert not Campaign.objects.exists()


def test_catalogue_restrictions_on_an_event_campaign_are_refused(marketer_client):
    data = form_data(trigger="event", event_type="app_opened", restrictions=[("include", "sku", "A")])
    response = marketer_client.post(ADD, data)
    assert response.status_code == 200
    assert "Catalogue restrictions apply to purchase-triggered campaigns." in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_campaign_without_outcomes_is_refused(marketer_client):
    response = marketer_client.post(ADD, form_data(outcomes=()))
    assert response.status_code == 200
    assert "A campaign gives at least one outcome." in response.content.decode()


def test_saving_a_campaign_gives_it_a_new_updated_at_for_the_spec_cache(marketer_client):
    existing = campaign(status="draft")
    before = existing.updated_at
    outcome = existing.outcomes.get()
    data = form_data(
        name=existing.name,
        restrictions=[("include", "brand", "acme")],
        outcomes=[{"id": str(outcome.pk), "campaign": str(existing.pk), "kind": "points", "points": "250"}],
        **{"outcomes-INITIAL_FORMS": "1"},
    )
    response = marketer_client.post(reverse("admin:campaigns_campaign_change", args=[existing.pk]), data)
    assert response.status_code == 302, response.context and form_errors(response)
    existing.refresh_from_db()
    assert existing.updated_at > before
    assert existing.outcomes.get().points == 250
    assert list(existing.restrictions.values_list("value", flat=True)) == ["acme"]


def test_saving_the_form_never_writes_back_counters_or_status_read_before_a_concurrent_change(
    marketer_client, monkeypatch
):
    active = campaign(status="active", budget_awards=10)
    outcome = active.outcomes.get()
    original_get_object = CampaignAdmin.get_object
    loads = [0]

    def get_object_then_award(self, request, object_id, from_field=None):
        loaded = original_get_object(self, request, object_id, from_field)
        loads[0] += 1
        # Processing awards and the beat task ends the campaign while the admin holds its copy.
        Campaign.objects.filter(pk=active.pk).update(
            awards_count=F("awards_count") + 1, points_awarded=F("points_awarded") + 100, status="ended"
        )
        return loaded

    monkeypatch.setattr(CampaignAdmin, "get_object", get_object_then_award)
    data = form_data(
        name="Renamed",
        budget_awards="10",
        outcomes=[{"id": str(outcome.pk), "campaign": str(active.pk), "kind": "points", "points": "100"}],
        **{"outcomes-INITIAL_FORMS": "1"},
    )
    response = marketer_client.post(reverse("admin:campaigns_campaign_change", args=[active.pk]), data)
    assert response.status_code == 302, response.context and form_errors(response)
    active.refresh_from_db()
    assert active.awards_count >= 1  # the admin loaded the campaign at least once
    assert (active.name, active.points_awarded, active.status) == ("Renamed", active.awards_count * 100, "ended")
    assert active.awards_count == loads[0]


def test_status_is_read_only_on_the_form_of_a_launched_campaign(marketer_client):
    active = campaign(status="active")
    page = marketer_client.get(reverse("admin:campaigns_campaign_change", args=[active.pk]))
    assert page.status_code == 200
    assert "status" not in page.context["adminform"].form.fields


# --- status actions -----------------------------------------------------------------------------


def test_the_launch_action_makes_a_draft_active(marketer_client):
    draft = campaign(status="draft")
    response = marketer_client.post(CHANGELIST, {"action": "launch", "_selected_action": [str(draft.pk)]}, follow=True)
    assert response.status_code == 200
    draft.refresh_from_db()
    assert draft.status == "active"
    assert "1 campaign(s) launched: 1 active." in response.content.decode()


def test_pause_and_end_actions_move_an_active_campaign(marketer_client):
    active = campaign(status="active")
    marketer_client.post(CHANGELIST, {"action": "pause", "_selected_action": [str(active.pk)]})
    active.refresh_from_db()
    assert active.status == "paused"
    marketer_client.post(CHANGELIST, {"action": "end", "_selected_action": [str(active.pk)]})
    active.refresh_from_db()
    assert active.status == "ended"


def test_a_refused_transition_is_reported_as_a_message(marketer_client):
    draft = campaign(status="draft")
    response = marketer_client.post(CHANGELIST, {"action": "end", "_selected_action": [str(draft.pk)]}, follow=True)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert "A draft campaign cannot become ended." in response.content.decode()


# --- simulation ---------------------------------------------------------------------------------


def test_simulation_shows_reach_and_cost_of_a_processed_purchase_and_writes_nothing(marketer_client):
    contact = ContactFactory(livemode=False)
    base_rule()
    processed_purchase("T-1", contact=contact, lines=(("A", 2000),))
    draft = campaign(status="draft", outcomes=[{"kind": "points", "points": 100}])
    written = (CampaignAward.objects.count(), LedgerEntry.objects.count(), OutboxEvent.objects.count())

    url = reverse("admin:campaigns_campaign_simulate", args=[draft.pk])
    response = marketer_client.get(url, {"days": "30"})

    assert response.status_code == 200
    result = response.context["result"]
    assert result["reach"] == {"contacts": 1, "transactions": 1, "events": 0}
    assert (result["cost"]["awards"], result["cost"]["points"]) == (1, 100)
    content = response.content.decode()
    assert "Awards and points per day" in content and "Contacts reached" in content
    assert sum(day["points"] for day in result["per_day"]) == 100
    assert (CampaignAward.objects.count(), LedgerEntry.objects.count(), OutboxEvent.objects.count()) == written


def test_simulation_page_without_days_shows_the_form_only(marketer_client):
    draft = campaign(status="draft")
    response = marketer_client.get(reverse("admin:campaigns_campaign_simulate", args=[draft.pk]))
    assert response.status_code == 200
    assert response.context["result"] is None


def test_simulation_refuses_a_period_out_of_range(marketer_client):
    draft = campaign(status="draft")
    response = marketer_client.get(reverse("admin:campaigns_campaign_simulate", args=[draft.pk]), {"days": "400"})
    assert response.status_code == 200
    assert response.context["result"] is None
    assert response.context["form"].errors["days"]


def test_simulation_needs_the_view_campaign_permission(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    draft = campaign(status="draft")
    response = client.get(reverse("admin:campaigns_campaign_simulate", args=[draft.pk]), {"days": "30"})
    assert response.status_code == 403


# --- audience upload ----------------------------------------------------------------------------


def test_audience_upload_counts_matched_and_unmatched_lines(marketer_client):
    listed = campaign(status="draft", audience="list")
    first, second = ContactFactory(livemode=False), ContactFactory(livemode=False)
    live = ContactFactory(livemode=True)
    url = reverse("admin:campaigns_campaign_upload_audience", args=[listed.pk])
    csv_file = SimpleUploadedFile("members.csv", f"member\n{first.member_number}\n".encode(), "text/csv")
    typed = f"{second.email}\nnobody@example.com, {live.member_number}"

    response = marketer_client.post(url, {"members": typed, "csv_file": csv_file})

    assert response.status_code == 200
    result = response.context["result"]
    assert (result["matched"], result["unmatched_count"], result["members"]) == (2, 2, 2)
    assert set(CampaignAudienceMember.objects.filter(campaign=listed).values_list("contact_id", flat=True)) == {
        first.pk,
        second.pk,
    }
    content = response.content.decode()
    assert "nobody@example.com" in content


def test_audience_upload_is_offered_only_for_a_list_audience(marketer_client):
    everyone = campaign(status="draft", audience="all")
    url = reverse("admin:campaigns_campaign_upload_audience", args=[everyone.pk])
    assert marketer_client.get(url).status_code == 403
    listed = campaign(status="draft", audience="list", name="Listed")
    page = marketer_client.get(reverse("admin:campaigns_campaign_change", args=[listed.pk]))
    assert reverse("admin:campaigns_campaign_upload_audience", args=[listed.pk]) in page.content.decode()


# --- progress, awards, events -------------------------------------------------------------------


def test_progress_lists_participants_with_their_goal_progress_and_searches_by_member_number(marketer_client):
    base_rule()
    goal = campaign(status="active", goal_metric="visits", goal_target=3)
    contact, other = ContactFactory(livemode=False), ContactFactory(livemode=False)
    processed_purchase("T-1", contact=contact)
    processed_purchase("T-2", contact=contact)
    processed_purchase("T-3", contact=other)
    url = reverse("admin:campaigns_campaign_progress", args=[goal.pk])

    response = marketer_client.get(url)
    assert response.status_code == 200
    assert response.context["total"] == 2
    content = response.content.decode()
    assert "2 of 3" in content and "1 of 3" in content

    found = marketer_client.get(url, {"q": contact.member_number})
    assert found.context["total"] == 1
    assert contact.member_number in found.content.decode()


def test_awards_are_listed_read_only_with_the_contacts_member_number(marketer_client):
    base_rule()
    bonus = campaign(status="active")
    contact = ContactFactory(livemode=False)
    processed_purchase("T-1", contact=contact)
    award = CampaignAward.objects.get(campaign=bonus)

    listing = marketer_client.get(
        reverse("admin:campaigns_campaignaward_changelist"), {"campaign__id__exact": str(bonus.pk)}
    )
    assert listing.status_code == 200
    assert contact.member_number in listing.content.decode()
    detail = marketer_client.post(reverse("admin:campaigns_campaignaward_change", args=[award.pk]), {"points": "1"})
    assert detail.status_code == 403
    award.refresh_from_db()
    assert award.points == 100


def test_failed_events_are_queued_again_by_the_action(client, django_user_model):
    admin_user = django_user_model.objects.create_user("integrator", password="x", is_staff=True)
    admin_user.groups.add(Group.objects.get(name="Integration admins"))
    client.force_login(admin_user)
    contact = ContactFactory(livemode=False)
    failed = Event.objects.create(
        livemode=False, external_id="E-1", contact=contact, type="app_opened", status="failed", failure_reason="x"
    )
    processed = Event.objects.create(
        livemode=False, external_id="E-2", contact=contact, type="app_opened", status="processed"
    )
    changelist = reverse("admin:campaigns_event_changelist")
    assert client.get(changelist, {"status__exact": "failed"}).status_code == 200

    response = client.post(
        changelist, {"action": "requeue_failed", "_selected_action": [str(failed.pk), str(processed.pk)]}, follow=True
    )

    failed.refresh_from_db()
    processed.refresh_from_db()
    assert (failed.status, processed.status) == ("queued", "processed")
    assert "1 event(s) queued again (1 not failed, left alone)." in response.content.decode()


def test_marketers_see_events_but_cannot_requeue_them(marketer_client):
    contact = ContactFactory(livemode=False)
    failed = Event.objects.create(livemode=False, external_id="E-1", contact=contact, type="x", status="failed")
    changelist = reverse("admin:campaigns_event_changelist")
    assert marketer_client.get(changelist).status_code == 200
    marketer_client.post(changelist, {"action": "requeue_failed", "_selected_action": [str(failed.pk)]})
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_the_campaign_list_shows_what_a_campaign_without_budget_has_given(marketer_client):
    """The row's counters only guard budgets; the list sums the awards themselves."""
    base_rule()
    generous = campaign(name="No budget", outcomes=[{"kind": "points", "points": 550}])
    for number in range(2):
        processed_purchase(f"T-{number}", contact=ContactFactory(livemode=False))
    assert Campaign.objects.get(pk=generous.pk).awards_count == 0  # no budget: the row does not count

    response = marketer_client.get(CHANGELIST)

    row = next(obj for obj in response.context["cl"].result_list if obj.pk == generous.pk)
    assert (row.awards_given, row.points_given) == (2, 1100)
    assert "1,100" in response.content.decode()
