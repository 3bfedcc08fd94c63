"""Reads of campaigns: engine specs (cached per process by `(id, updated_at)`), the campaigns in
force for a cause, goal progress per contact, and lists for the API."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum

from campaigns.models import (
    Campaign,
    CampaignAudienceMember,
    CampaignAward,
    CampaignOutcome,
    CampaignRestriction,
    Event,
    GoalContribution,
)
from campaigns.services.engine import CampaignSpec, OutcomeSpec, period_start

# A campaign counts causes that happened in its window, even when they arrive late; draft and
# paused campaigns count nothing.
LIVE_STATUSES = (Campaign.Status.SCHEDULED, Campaign.Status.ACTIVE, Campaign.Status.ENDED)
PURCHASE_TRIGGERS = (Campaign.Trigger.PURCHASE,)
EVENT_TRIGGERS = (
    Campaign.Trigger.EVENT,
    Campaign.Trigger.CONTACT_REGISTERED,
    Campaign.Trigger.TIER_CHANGED,
    Campaign.Trigger.BIRTHDAY,
)

_SPEC_CACHE: dict[tuple, CampaignSpec] = {}
_SPEC_CACHE_SIZE = 2000


def campaign_specs(campaigns: list[Campaign]) -> dict:
    """Engine specs for campaigns: four queries for those not cached (restrictions, outcomes,
    venues, tiers), none when all are."""
    specs, missing = {}, []
    for campaign in campaigns:
        spec = _SPEC_CACHE.get((campaign.pk, campaign.updated_at))
        if spec is None:
            missing.append(campaign)
        else:
            specs[campaign.pk] = spec
    if not missing:
        return specs
    ids = [campaign.pk for campaign in missing]
    restrictions: dict = {campaign_id: ([], []) for campaign_id in ids}
    for campaign_id, mode, kind, value in CampaignRestriction.objects.filter(campaign_id__in=ids).values_list(
        "campaign_id", "mode", "kind", "value"
    ):
        restrictions[campaign_id][0 if mode == CampaignRestriction.Mode.INCLUDE else 1].append((kind, value))
    outcomes: dict = {campaign_id: [] for campaign_id in ids}
    for outcome in CampaignOutcome.objects.filter(campaign_id__in=ids).select_related("message_variant"):
        outcomes[outcome.campaign_id].append(
            OutcomeSpec(
                kind=outcome.kind,
                points=outcome.points,
                multiplier=outcome.multiplier,
                cashback_percent=outcome.cashback_percent,
                cashback_amount=outcome.cashback_amount,
                cashback_cap=outcome.cashback_cap,
                balance=outcome.balance,
                spend_condition_id=outcome.spend_condition_id,
                offer_id=str(outcome.offer_id) if outcome.offer_id else None,
                message_variant=outcome.message_variant.name if outcome.message_variant_id else None,
                message_template=outcome.message_variant.template if outcome.message_variant_id else None,
            )
        )
    venues: dict = {campaign_id: [] for campaign_id in ids}
    for campaign_id, venue_id in Campaign.venues.through.objects.filter(campaign_id__in=ids).values_list(
        "campaign_id", "venue_id"
    ):
        venues[campaign_id].append(str(venue_id))
    tiers: dict = {campaign_id: [] for campaign_id in ids}
    for campaign_id, tier_id in Campaign.audience_tiers.through.objects.filter(campaign_id__in=ids).values_list(
        "campaign_id", "tier_id"
    ):
        tiers[campaign_id].append(tier_id)
    if len(_SPEC_CACHE) > _SPEC_CACHE_SIZE:
        _SPEC_CACHE.clear()
    for campaign in missing:
        includes, excludes = restrictions[campaign.pk]
        spec = _spec(campaign, includes, excludes, venues[campaign.pk], tiers[campaign.pk], outcomes[campaign.pk])
        _SPEC_CACHE[(campaign.pk, campaign.updated_at)] = spec
        specs[campaign.pk] = spec
    return specs


def _spec(campaign: Campaign, includes, excludes, venue_ids, tier_ids, outcomes) -> CampaignSpec:
    return CampaignSpec(
        id=str(campaign.pk),
        name=campaign.name,
        trigger=campaign.trigger,
        event_type=campaign.event_type,
        to_tier_id=campaign.to_tier_id,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        time_zone=campaign.time_zone,
        audience=campaign.audience,
        audience_tier_ids=frozenset(tier_ids),
        audience_filters=tuple(campaign.audience_filters or ()),
        currency=campaign.currency,
        min_spend=campaign.min_spend,
        min_quantity=campaign.min_quantity,
        channels=frozenset(campaign.channels or ()),
        venue_ids=frozenset(venue_ids),
        days_of_week=frozenset(campaign.days_of_week or ()),
        hour_from=campaign.hour_from,
        hour_until=campaign.hour_until,
        event_filters=tuple(campaign.event_filters or ()),
        nth_purchase=campaign.nth_purchase,
        includes=frozenset(includes),
        excludes=frozenset(excludes),
        goal_metric=campaign.goal_metric,
        goal_target=campaign.goal_target,
        goal_period=campaign.goal_period,
        goal_period_days=campaign.goal_period_days,
        limit_per_contact=campaign.limit_per_contact,
        limit_period=campaign.limit_period,
        limit_period_days=campaign.limit_period_days,
        has_budget=any(
            value is not None for value in (campaign.budget_awards, campaign.budget_points, campaign.budget_money)
        ),
        budget_awards=campaign.budget_awards,
        budget_points=campaign.budget_points,
        budget_money=campaign.budget_money,
        priority=campaign.priority,
        stops_lower_priority=campaign.stops_lower_priority,
        outcomes=tuple(outcomes),
    )


# Asked for every purchase processed and every event: the ORM took longer to build this query
# than PostgreSQL takes to answer it.
_IN_FORCE_SQL = (
    f"SELECT id, updated_at FROM {Campaign._meta.db_table} WHERE livemode = %s AND trigger = ANY(%s) "
    "AND status = ANY(%s) AND (starts_at IS NULL OR starts_at <= %s) AND (ends_at IS NULL OR ends_at > %s) "
    "ORDER BY id"
)


def _in_force(*, livemode: bool, triggers, at: datetime) -> list[tuple[uuid.UUID, datetime]]:
    """(id, updated_at) of the campaigns of these triggers in force at `at`."""
    if connection.vendor != "postgresql":
        return list(
            Campaign.objects.filter(livemode=livemode, trigger__in=triggers, status__in=LIVE_STATUSES)
            .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=at), Q(ends_at__isnull=True) | Q(ends_at__gt=at))
            .order_by("id")
            .values_list("id", "updated_at")
        )
    with connection.cursor() as cursor:
        cursor.execute(_IN_FORCE_SQL, [livemode, list(triggers), list(LIVE_STATUSES), at, at])
        return cursor.fetchall()


def campaigns_in_force(*, livemode: bool, triggers, at: datetime) -> list[CampaignSpec]:
    """Specs of the campaigns that may fire for a cause of these triggers that happened at `at`
    (one query, plus the spec queries for campaigns changed since they were cached)."""
    campaigns = _in_force(livemode=livemode, triggers=triggers, at=at)
    if not campaigns:
        return []
    cached = [_SPEC_CACHE.get(key) for key in campaigns]
    if all(cached):
        return cached  # type: ignore[return-value]
    full = list(Campaign.objects.filter(pk__in=[campaign_id for campaign_id, _ in campaigns]))
    return list(campaign_specs(full).values())


def audience_lists_holding(*, contact_id, campaign_ids: list[str]) -> frozenset[str]:
    """Which of these (list-audience) campaigns have the contact on their uploaded list."""
    if not campaign_ids:
        return frozenset()
    return frozenset(
        str(campaign_id)
        for campaign_id in CampaignAudienceMember.objects.filter(
            contact_id=contact_id, campaign_id__in=campaign_ids
        ).values_list("campaign_id", flat=True)
    )


def goal_progress_at(*, campaign_id, contact_id, at: datetime, start: datetime | None) -> tuple[int, datetime | None]:
    """(progress, last award): what the contact's causes up to `at` added to the goal since the
    period's `start` and since their last award of the campaign (an award starts the goal over)."""
    contributions = GoalContribution.objects.filter(campaign_id=campaign_id, contact_id=contact_id, occurred_at__lte=at)
    if start is not None:
        contributions = contributions.filter(occurred_at__gte=start)
    last_award = (
        CampaignAward.objects.filter(campaign_id=campaign_id, contact_id=contact_id, occurred_at__lte=at)
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )
    if last_award is not None:
        contributions = contributions.filter(occurred_at__gt=last_award)
    return contributions.aggregate(total=Sum("amount"))["total"] or 0, last_award


def goal_progress(*, campaign: Campaign, contact_id, at: datetime) -> dict:
    """Where a contact stands on a campaign's goal at `at`: progress in the current period since
    the last award, the target, and the period's start."""
    start = period_start(campaign.goal_period, campaign.goal_period_days, at, campaign.time_zone, campaign.starts_at)
    progress, last_award = goal_progress_at(campaign_id=campaign.pk, contact_id=contact_id, at=at, start=start)
    return {
        "campaign_id": str(campaign.pk),
        "metric": campaign.goal_metric,
        "progress": progress,
        "target": campaign.goal_target,
        "period": campaign.goal_period,
        "period_started_at": start,
        "last_award_at": last_award,
    }


def contact_goal_progress(*, livemode: bool, contact_id, at: datetime) -> list[dict]:
    """Progress of a contact on every live campaign that has a goal."""
    campaigns = Campaign.objects.filter(livemode=livemode, status__in=LIVE_STATUSES).exclude(goal_metric="")
    return [goal_progress(campaign=campaign, contact_id=contact_id, at=at) for campaign in campaigns]


def campaign_list(*, livemode: bool, status: str | None = None, trigger: str | None = None) -> QuerySet[Campaign]:
    campaigns = Campaign.objects.filter(livemode=livemode)
    if status:
        campaigns = campaigns.filter(status=status)
    if trigger:
        campaigns = campaigns.filter(trigger=trigger)
    return (
        campaigns.select_related("to_tier")
        .prefetch_related("restrictions", "outcomes", "venues", "audience_tiers")
        .order_by("-created_at", "id")
    )


def campaign_award_totals(campaigns: list[Campaign]) -> dict:
    """What each campaign has given, summed from its awards in one grouped query. (The row's
    counters move only for campaigns with a budget, where they guard it.) Money counts in the
    campaign's currency only."""
    totals = {campaign.pk: {"awards_count": 0, "points_awarded": 0, "money_awarded": 0} for campaign in campaigns}
    currency_of = {campaign.pk: campaign.currency for campaign in campaigns}
    rows = (
        CampaignAward.objects.filter(campaign_id__in=list(totals))
        .order_by()  # the model's ordering would join the GROUP BY
        .values_list("campaign_id", "currency")
        .annotate(count=Count("id"), points=Sum("points"), money=Sum("money"))
    )
    for campaign_id, currency, count, points, money in rows:
        total = totals[campaign_id]
        total["awards_count"] += count
        total["points_awarded"] += points or 0
        if currency in ("", currency_of[campaign_id]):
            total["money_awarded"] += money or 0
    return totals


def event_get(*, livemode: bool, event_id) -> Event | None:
    return Event.objects.filter(livemode=livemode, pk=event_id).select_related("contact").first()


def event_find(*, livemode: bool, reference: str) -> Event | None:
    """An event by our id (a uuid) or by the sender's id."""
    try:
        event = event_get(livemode=livemode, event_id=uuid.UUID(reference))
    except ValueError:
        event = None
    return event or Event.objects.filter(livemode=livemode, external_id=reference).first()
