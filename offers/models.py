"""Offers: definitions marketers configure, and the offers issued to contacts.

- `Offer`: benefit, conditions (with at most 50 `OfferRestriction`s), limits, stacking,
  validity. Its counters (`issued_count`, `redeemed_count`, `discount_given`) change only by
  conditional `UPDATE … SET x = x + 1 WHERE <limit holds>`, so budgets hold under parallel
  redemption; check constraints keep them within the budget.
- `IssuedOffer`: one offer in one contact's wallet, with the state machine
  available → locked → redeemed, locked → available, redeemed → available (reinstate),
  available|locked → expired|revoked. Every change is one guarded UPDATE on the expected status
  (see `offers.services.issued.TRANSITIONS`) and writes an `IssuedOfferTransition` row.
  A check constraint ties `locked` to a transaction and a lock deadline.
- `OfferContactUsage`: redemptions per (offer, contact), kept within the per-contact limit by a
  conditional update and a check constraint.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from catalogue.models import CatalogueRestriction
from core.models import LivemodeModel
from loyalty.models import Contact


class Offer(LivemodeModel):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ARCHIVED = "archived", "Archived"

    class Benefit(models.TextChoices):
        PERCENT_OFF = "percent_off", "Percent off"
        AMOUNT_OFF = "amount_off", "Amount off"
        FIXED_PRICE = "fixed_price", "Fixed price"
        FREE_ITEM = "free_item", "Free item (cheapest qualifying)"
        BONUS_POINTS = "bonus_points", "Bonus points"
        POINTS_MULTIPLIER = "points_multiplier", "Points multiplier"

    class AppliesTo(models.TextChoices):
        BASKET = "basket", "Whole basket"
        QUALIFYING_ITEMS = "qualifying_items", "Qualifying items only"

    class Channel(models.TextChoices):
        POS = "pos", "Point of sale"
        WEB = "web", "Web"
        MOBILE = "mobile", "Mobile"
        SOCIAL = "social", "Social"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    image_url = models.URLField(blank=True)
    terms = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    # Benefit
    benefit_type = models.CharField(max_length=20, choices=Benefit.choices)
    benefit_value = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        default=0,
        help_text="Percent (10 = 10 %), amount or fixed price in the offer currency, bonus points, or multiplier.",
    )
    currency = models.CharField(max_length=3, blank=True, help_text="For amount off and fixed price.")
    applies_to = models.CharField(max_length=16, choices=AppliesTo.choices, default=AppliesTo.QUALIFYING_ITEMS)
    cap_amount = models.BigIntegerField(null=True, blank=True, help_text="Largest discount, minor units.")
    # Conditions
    min_spend = models.BigIntegerField(default=0, help_text="Minor units of qualifying items.")
    min_quantity = models.DecimalField(max_digits=10, decimal_places=3, default=0)
    channels = models.JSONField(default=list, blank=True, help_text="Empty = every channel.")
    venues = models.ManyToManyField("catalogue.Venue", blank=True, related_name="+")
    days_of_week = models.JSONField(default=list, blank=True, help_text="ISO weekdays 1 (Mon) to 7 (Sun); empty = any.")
    hour_from = models.TimeField(null=True, blank=True, help_text="In the venue's time zone.")
    hour_until = models.TimeField(null=True, blank=True)
    # Limits
    redemptions_per_contact = models.PositiveIntegerField(null=True, blank=True)
    budget_count = models.PositiveIntegerField(null=True, blank=True, help_text="Total redemptions allowed.")
    budget_amount = models.BigIntegerField(null=True, blank=True, help_text="Total discount allowed, minor units.")
    # Stacking
    priority = models.IntegerField(default=0, help_text="Higher applies first.")
    is_exclusive = models.BooleanField(default=False, help_text="Cannot be combined with other offers.")
    is_external = models.BooleanField(default=False, help_text="Redemptions come back from an external system.")
    message_variant = models.ForeignKey(
        "core.MessageVariant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="External offers: the message shape `offer.issued` carries to the external system.",
    )
    # Counters (atomic updates only)
    issued_count = models.PositiveIntegerField(default=0, editable=False)
    redeemed_count = models.PositiveIntegerField(default=0, editable=False)
    discount_given = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-priority", "name")
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_count__isnull=True) | Q(redeemed_count__lte=F("budget_count")),
                name="offer_redemptions_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(budget_amount__isnull=True) | Q(discount_given__lte=F("budget_amount")),
                name="offer_discount_within_budget",
            ),
            models.CheckConstraint(condition=Q(discount_given__gte=0), name="offer_discount_given_not_negative"),
            models.CheckConstraint(condition=Q(benefit_value__gte=0), name="offer_benefit_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True) | Q(valid_until__isnull=True) | Q(valid_until__gt=F("valid_from")),
                name="offer_validity_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OfferRestriction(CatalogueRestriction):
    class Mode(models.TextChoices):
        INCLUDE = "include", "Include"
        EXCLUDE = "exclude", "Exclude"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="restrictions")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.INCLUDE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["offer", "mode", "kind", "value"], name="offer_restriction_unique")
        ]


class IssuedOffer(LivemodeModel):
    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        LOCKED = "locked", "Locked"
        REDEEMED = "redeemed", "Redeemed"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="issued")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="issued_offers")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.AVAILABLE)
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    locked_transaction_id = models.CharField(max_length=100, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    locked_discount = models.BigIntegerField(default=0, help_text="Minor units the lock priced.")
    redeemed_transaction_id = models.CharField(max_length=100, blank=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_discount = models.BigIntegerField(default=0, help_text="Minor units given at redemption.")
    external_reference = models.CharField(max_length=100, null=True, blank=True)
    source = models.CharField(max_length=16, default="api")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["available", "locked", "redeemed", "expired", "revoked"]),
                name="issued_offer_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="locked") | (~Q(locked_transaction_id="") & Q(locked_until__isnull=False)),
                name="issued_offer_lock_has_transaction",
            ),
            models.CheckConstraint(
                condition=~Q(status="redeemed") | Q(redeemed_at__isnull=False), name="issued_offer_redeemed_has_time"
            ),
            models.UniqueConstraint(
                fields=["livemode", "external_reference"],
                condition=Q(external_reference__isnull=False),
                name="issued_offer_external_reference_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["contact", "status"], name="issued_offer_contact_status"),
            models.Index(fields=["locked_until"], condition=Q(status="locked"), name="issued_offer_locks_due"),
        ]

    def __str__(self) -> str:
        return f"{self.offer_id} → {self.contact_id} ({self.status})"


class IssuedOfferTransition(models.Model):
    """The history of an issued offer: every state change, by whom, for which transaction."""

    issued_offer = models.ForeignKey(IssuedOffer, on_delete=models.CASCADE, related_name="transitions")
    action = models.CharField(max_length=16)
    from_status = models.CharField(max_length=10)
    to_status = models.CharField(max_length=10)
    transaction_id = models.CharField(max_length=100, blank=True)
    discount = models.BigIntegerField(default=0)
    actor = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("id",)
        indexes = [models.Index(fields=["issued_offer", "id"], name="issued_offer_transition_order")]

    def __str__(self) -> str:
        return f"{self.action}: {self.from_status} → {self.to_status}"


class OfferContactUsage(models.Model):
    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="usage")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    redeemed_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["offer", "contact"], name="offer_usage_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.redeemed_count}"


class OfferIssueJob(LivemodeModel):
    """An admin's bulk issuance (member numbers, a tier, or an uploaded CSV), run by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="issue_jobs")
    member_numbers = models.JSONField(default=list, blank=True)
    tier = models.ForeignKey("loyalty.Tier", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    issued = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"issue {self.offer_id}: {self.processed}/{self.total}"
