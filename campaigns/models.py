"""Campaigns: marketer rules that turn behaviours (purchases, events) into outcomes.

- `Campaign`: when it runs (status, window, time zone), what triggers it, whom it reaches
  (audience), what must hold (conditions, with at most 50 `CampaignRestriction`s, an optional
  goal accumulated over a period), what it gives (`CampaignOutcome`s) and its limits. Budget
  counters move only by conditional `UPDATE … WHERE spent + x <= budget`, backed by check
  constraints, so a budget holds under parallel processing.
- `CampaignAudienceMember`: the uploaded list of an audience of kind `list`.
- `Event`: a behaviour reported over `POST /events` (or raised by the system: contact
  registered, tier changed, birthday). Unique per mode on the sender's id, so a retried event
  is stored once; processed by a worker.
- `CampaignParticipation`: one row per (campaign, contact), the lock that serialises one
  contact's evaluations of one campaign (goal progress and per-contact limits are read and
  written under it).
- `GoalContribution`: what one cause added to a contact's goal; unique per (campaign, cause),
  so re-processing never counts a purchase twice.
- `CampaignAward`: one firing of a campaign for a contact and a cause, unique per
  (campaign, cause, contact): the idempotency record of every outcome it posted.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from catalogue.models import CatalogueRestriction
from core.models import LivemodeModel
from loyalty.models import Contact


class Campaign(LivemodeModel):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ENDED = "ended", "Ended"

    class Trigger(models.TextChoices):
        PURCHASE = "purchase", "Purchase processed"
        EVENT = "event", "Event (POST /events)"
        CONTACT_REGISTERED = "contact_registered", "Contact registered"
        TIER_CHANGED = "tier_changed", "Tier changed"
        BIRTHDAY = "birthday", "Birthday"

    class Audience(models.TextChoices):
        ALL = "all", "Every contact"
        TIERS = "tiers", "Contacts in given tiers"
        ATTRIBUTES = "attributes", "Contacts matching attribute filters"
        LIST = "list", "An uploaded list"

    class GoalMetric(models.TextChoices):
        NONE = "", "No goal (every qualifying cause)"
        SPEND = "spend", "Spend (minor units of qualifying items)"
        VISITS = "visits", "Visits (qualifying purchases or events)"
        QUANTITY = "quantity", "Quantity of qualifying items"

    class Period(models.TextChoices):
        CAMPAIGN = "campaign", "Whole campaign"
        DAY = "day", "Calendar day"
        WEEK = "week", "Calendar week"
        MONTH = "month", "Calendar month"
        YEAR = "year", "Calendar year"
        ROLLING = "rolling", "Rolling number of days"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Empty with no end: evergreen.")
    ends_at = models.DateTimeField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="Calendar periods and birthdays.")
    # Trigger
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.PURCHASE)
    event_type = models.CharField(max_length=64, blank=True, help_text="For event triggers, e.g. app_opened.")
    to_tier = models.ForeignKey(
        "loyalty.Tier", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Tier changed to."
    )
    # Audience
    audience = models.CharField(max_length=10, choices=Audience.choices, default=Audience.ALL)
    audience_tiers = models.ManyToManyField("loyalty.Tier", blank=True, related_name="+")
    audience_filters = models.JSONField(
        default=list, blank=True, help_text='[{"attribute": "city", "operator": "eq", "value": "Oslo"}]'
    )
    # Conditions
    currency = models.CharField(max_length=3, blank=True, help_text="Of minimum spend, spend goals and cashback.")
    min_spend = models.BigIntegerField(default=0, help_text="Minor units of qualifying items.")
    min_quantity = models.DecimalField(max_digits=10, decimal_places=3, default=0)
    channels = models.JSONField(default=list, blank=True, help_text="Empty = every channel.")
    venues = models.ManyToManyField("catalogue.Venue", blank=True, related_name="+")
    days_of_week = models.JSONField(default=list, blank=True, help_text="ISO weekdays 1 (Mon) to 7 (Sun); empty = any.")
    hour_from = models.TimeField(null=True, blank=True, help_text="In the venue's (else the campaign's) time zone.")
    hour_until = models.TimeField(null=True, blank=True)
    event_filters = models.JSONField(
        default=list, blank=True, help_text='On the event\'s attributes: [{"attribute", "operator", "value"}].'
    )
    nth_purchase = models.PositiveIntegerField(null=True, blank=True, help_text="Only the contact's nth purchase.")
    # Goal
    goal_metric = models.CharField(max_length=10, choices=GoalMetric.choices, default=GoalMetric.NONE, blank=True)
    goal_target = models.BigIntegerField(default=0, help_text="Minor units for spend, a count for visits/quantity.")
    goal_period = models.CharField(max_length=10, choices=Period.choices, default=Period.CAMPAIGN)
    goal_period_days = models.PositiveIntegerField(default=30, help_text="For rolling periods.")
    # Limits
    limit_per_contact = models.PositiveIntegerField(null=True, blank=True, help_text="Awards per contact per period.")
    limit_period = models.CharField(max_length=10, choices=Period.choices, default=Period.CAMPAIGN)
    limit_period_days = models.PositiveIntegerField(default=30, help_text="For rolling periods.")
    budget_awards = models.PositiveIntegerField(null=True, blank=True, help_text="Total awards allowed.")
    budget_points = models.BigIntegerField(null=True, blank=True, help_text="Total points allowed.")
    budget_money = models.BigIntegerField(null=True, blank=True, help_text="Total cashback allowed, minor units.")
    # Stacking
    priority = models.IntegerField(default=0, help_text="Higher is evaluated first.")
    stops_lower_priority = models.BooleanField(default=False, help_text="When it awards, lower campaigns are skipped.")
    # Counters (conditional updates only; kept when the campaign has a budget)
    awards_count = models.PositiveIntegerField(default=0, editable=False)
    points_awarded = models.BigIntegerField(default=0, editable=False)
    money_awarded = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-priority", "name")
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_awards__isnull=True) | Q(awards_count__lte=F("budget_awards")),
                name="campaign_awards_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(budget_points__isnull=True) | Q(points_awarded__lte=F("budget_points")),
                name="campaign_points_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(budget_money__isnull=True) | Q(money_awarded__lte=F("budget_money")),
                name="campaign_money_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="campaign_window_ordered",
            ),
        ]
        indexes = [models.Index(fields=["livemode", "trigger", "status"], name="campaign_by_trigger")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_evergreen(self) -> bool:
        return self.starts_at is None and self.ends_at is None


class CampaignRestriction(CatalogueRestriction):
    class Mode(models.TextChoices):
        INCLUDE = "include", "Include"
        EXCLUDE = "exclude", "Exclude"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="restrictions")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.INCLUDE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "mode", "kind", "value"], name="campaign_restriction_unique")
        ]


class CampaignOutcome(models.Model):
    """One thing a campaign gives when it fires."""

    class Kind(models.TextChoices):
        POINTS = "points", "Award points"
        POINTS_MULTIPLIER = "points_multiplier", "Multiply the purchase's points"
        CASHBACK = "cashback", "Cashback"
        ISSUE_OFFER = "issue_offer", "Issue an offer"
        MESSAGE = "message", "Send a webhook message"

    class Balance(models.TextChoices):
        OPEN = "open", "Open balance"
        COMMERCE = "commerce", "Commerce balance"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="outcomes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    points = models.BigIntegerField(default=0, help_text="Points to award.")
    multiplier = models.DecimalField(
        max_digits=6, decimal_places=2, default=1, help_text="2 = double the purchase's base points."
    )
    cashback_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=0, help_text="Percent of the qualifying amount."
    )
    cashback_amount = models.BigIntegerField(default=0, help_text="Fixed cashback, minor units of the currency.")
    cashback_cap = models.BigIntegerField(null=True, blank=True, help_text="Largest cashback, minor units.")
    balance = models.CharField(max_length=8, choices=Balance.choices, default=Balance.OPEN)
    spend_condition = models.ForeignKey(
        "loyalty.SpendCondition", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    offer = models.ForeignKey("offers.Offer", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    message_variant = models.ForeignKey(
        "core.MessageVariant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ("id",)
        constraints = [
            models.CheckConstraint(condition=Q(points__gte=0), name="campaign_outcome_points_not_negative"),
            models.CheckConstraint(condition=Q(cashback_amount__gte=0), name="campaign_outcome_cashback_not_negative"),
        ]

    def __str__(self) -> str:
        return self.get_kind_display()


class CampaignAudienceMember(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="audience_members")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="campaign_audience_member_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.contact_id}"


class Event(LivemodeModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        API = "api", "API"
        SYSTEM = "system", "System"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    external_id = models.CharField(max_length=100, help_text="The sender's id, or a system key.")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.API)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField(default=timezone.now)
    attributes = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True, help_text="Of the request, to tell a retry from a clash.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    awards_count = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-received_at",)
        constraints = [
            models.UniqueConstraint(fields=["livemode", "external_id"], name="event_unique_per_mode"),
        ]
        indexes = [
            models.Index(fields=["received_at"], name="event_queued", condition=Q(status="queued")),
            models.Index(fields=["livemode", "type", "occurred_at"], name="event_by_type"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.external_id}"


class CampaignParticipation(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="participations")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="campaign_participation_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.contact_id}"


class GoalContribution(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="contributions")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    cause = models.CharField(max_length=120, help_text="txn:<id> or event:<id>")
    amount = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "cause"], name="goal_contribution_once_per_cause")]
        indexes = [models.Index(fields=["campaign", "contact", "occurred_at"], name="goal_contribution_window")]

    def __str__(self) -> str:
        return f"{self.cause}: {self.amount}"


class CampaignAward(models.Model):
    """What a campaign gave a contact for a cause; the key of every posting it made."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="awards")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="campaign_awards")
    livemode = models.BooleanField()
    cause = models.CharField(max_length=120, help_text="txn:<id>, event:<id>")
    occurred_at = models.DateTimeField(help_text="The cause's business time.")
    points = models.BigIntegerField(default=0)
    money = models.BigIntegerField(default=0, help_text="Cashback, minor units of `currency`.")
    currency = models.CharField(max_length=3, blank=True)
    offers_issued = models.PositiveIntegerField(default=0)
    messages_sent = models.PositiveIntegerField(default=0)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-id",)
        constraints = [
            models.UniqueConstraint(fields=["campaign", "cause", "contact"], name="campaign_award_once_per_cause"),
        ]
        indexes = [models.Index(fields=["campaign", "contact", "occurred_at"], name="campaign_award_by_contact")]

    def __str__(self) -> str:
        return f"{self.campaign_id} → {self.contact_id} ({self.cause})"
