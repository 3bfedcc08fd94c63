"""Contacts and their identifiers; wallets (accounts, ledger, lots), tiers and earning rules.

- `Contact`: profile, consents, custom attributes, status; a generated `member_number` with a
  Luhn check digit. The database keeps every identifier unique per mode: member number, mobile
  phone (stored E.164), email (case-insensitively, a unique index on `lower(email)`).
- `ContactExternalId`: an integrator's own id for the contact, unique per (mode, source, value);
  `source` namespaces ids of different systems ("" when the integrator gives none).
- `ContactErasure`: the audit row of a GDPR erasure (who, when; one per contact). An erased
  contact keeps its row (the ledger points at it) with every personal field emptied and its
  member number replaced by an unusable `erased-…` tombstone.
- `Account`: one per contact, kind (points/open/commerce) and currency. `balance` always equals
  the sum of its `LedgerEntry` rows (both written in one database transaction); a check
  constraint refuses a negative available money balance.
- `LedgerEntry`: append-only (a trigger refuses UPDATE and DELETE), unique `idempotency_key`
  per mode so one cause can never post twice; sign checked by kind.
- `Lot`: what a credit has left (0 <= remaining <= amount), with expiry and pending dates;
  `LotConsumption` records which lots a debit took from.
- `Program` (one per mode), `Tier`, `ContactTier`, `TierHistory`, `EarningRule` with at most 50
  `EarningRuleExclusion`s, `SpendCondition`, `WalletPreference`, `Payout`, `SpendToken`.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from catalogue.models import CatalogueRestriction
from core.models import LivemodeModel


class Contact(LivemodeModel):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"
        ERASED = "erased", "Erased"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member_number = models.CharField(max_length=20, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    email = models.CharField(max_length=254, null=True, blank=True)
    mobile_phone = models.CharField(max_length=20, null=True, blank=True, help_text="E.164, e.g. +46707234567")
    email_consent = models.BooleanField(default=False)
    sms_consent = models.BooleanField(default=False)
    consents_updated_at = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["livemode", "member_number"], name="contact_member_number_unique"),
            models.UniqueConstraint(
                "livemode", "mobile_phone", name="contact_mobile_phone_unique", condition=Q(mobile_phone__isnull=False)
            ),
            models.UniqueConstraint(
                "livemode", Lower("email"), name="contact_email_unique_ci", condition=Q(email__isnull=False)
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "blocked", "erased"]), name="contact_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["livemode", "-created_at"], name="contact_mode_created")]
        permissions = [("erase_contact", "Can erase a contact's personal data (GDPR)")]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name or 'Contact'} ({self.member_number})"

    @property
    def consents(self) -> dict[str, bool]:
        return {"email": self.email_consent, "sms": self.sms_consent}


class ContactExternalId(LivemodeModel):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="external_ids")
    source = models.CharField(max_length=64, blank=True, default="")
    value = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "external id"
        constraints = [
            models.UniqueConstraint(fields=["livemode", "source", "value"], name="external_id_unique_per_source"),
        ]
        indexes = [models.Index(fields=["livemode", "value"], name="external_id_mode_value")]

    def __str__(self) -> str:
        return f"{self.source}:{self.value}" if self.source else self.value


class ContactErasure(LivemodeModel):
    """Audit of a GDPR erasure: which contact, by whom (a staff user or an API key prefix),
    when. No personal data; one row per contact (a repeated erasure changes nothing)."""

    contact = models.OneToOneField(Contact, on_delete=models.PROTECT, related_name="erasure")
    erased_by = models.CharField(max_length=150, help_text="user:<username> or api-key:<key prefix>")
    erased_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-erased_at",)

    def __str__(self) -> str:
        return f"erasure of {self.contact_id}"


class Program(LivemodeModel):
    """The program's settings, one row per mode (marketers edit it in the admin)."""

    class SpendOrder(models.TextChoices):
        OPEN_FIRST = "open_first", "Open balance first"
        COMMERCE_FIRST = "commerce_first", "Commerce balance first"

    class NegativePointsPolicy(models.TextChoices):
        ALLOW_DEBT = "allow_debt", "Go negative (debt paid by future earnings)"
        CLAMP = "clamp", "Stop at zero and record the shortfall"

    class TierBasis(models.TextChoices):
        POINTS = "points", "Points earned"
        SPEND = "spend", "Money spent"

    class DowngradePolicy(models.TextChoices):
        NEVER = "never", "Never"
        PERIOD_END = "period_end", "At the end of the qualification period"
        AFTER_GRACE = "after_grace", "After N days below the threshold"

    name = models.CharField(max_length=100, default="Loyalty program")
    currency = models.CharField(max_length=3, default="EUR", help_text="Currency of money thresholds (tiers).")
    points_expiry_months = models.PositiveSmallIntegerField(
        null=True, blank=True, default=12, help_text="Default lifetime of earned points; empty = never expire."
    )
    pending_days = models.PositiveSmallIntegerField(
        default=0, help_text="Days earned points are held before they can be spent (the return window)."
    )
    spend_order = models.CharField(max_length=16, choices=SpendOrder.choices, default=SpendOrder.COMMERCE_FIRST)
    negative_points_policy = models.CharField(
        max_length=16, choices=NegativePointsPolicy.choices, default=NegativePointsPolicy.CLAMP
    )
    spend_requires_otp = models.BooleanField(default=False, help_text="Spending needs a one-time spend token.")
    otp_ttl_seconds = models.PositiveIntegerField(default=300)
    otp_max_attempts = models.PositiveSmallIntegerField(default=5)
    tier_basis = models.CharField(max_length=8, choices=TierBasis.choices, default=TierBasis.POINTS)
    tier_window_months = models.PositiveSmallIntegerField(default=12)
    tier_downgrade_policy = models.CharField(
        max_length=16, choices=DowngradePolicy.choices, default=DowngradePolicy.PERIOD_END
    )
    tier_downgrade_grace_days = models.PositiveSmallIntegerField(default=30)
    self_service_claims = models.BooleanField(
        default=True,
        help_text="Contacts may claim receipts that were never sent (awarded at the base earning rate).",
    )
    claim_window_days = models.PositiveSmallIntegerField(
        default=30, help_text="Days after a purchase during which its receipt can be claimed."
    )
    claims_per_day = models.PositiveSmallIntegerField(
        default=5, help_text="Receipts one contact may claim in any 24 hours."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode"], name="program_one_per_mode"),
            models.CheckConstraint(condition=Q(otp_max_attempts__gte=1), name="program_otp_attempts_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({'live' if self.livemode else 'test'})"


class Account(LivemodeModel):
    """A contact's balance of one kind: points, or money (open / commerce) in one currency.

    `balance` is the sum of the account's ledger entries, kept in the same database transaction
    as each entry; `pending` is the part not yet spendable. Amounts are integers: points, or the
    currency's minor unit. The database refuses a negative available money balance.
    """

    class Kind(models.TextChoices):
        POINTS = "points", "Points"
        OPEN = "open", "Open money balance"
        COMMERCE = "commerce", "Commerce money balance"

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="accounts")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    currency = models.CharField(max_length=3, blank=True, default="", help_text="Empty for points.")
    balance = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "kind", "currency"], name="account_unique_per_contact"),
            models.CheckConstraint(condition=Q(pending__gte=0), name="account_pending_not_negative"),
            models.CheckConstraint(
                condition=Q(kind="points") | Q(balance__gte=models.F("pending")),
                name="account_money_available_not_negative",
            ),
            models.CheckConstraint(
                condition=(Q(kind="points") & Q(currency="")) | (~Q(kind="points") & ~Q(currency="")),
                name="account_currency_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.currency}".strip()

    @property
    def available(self) -> int:
        return self.balance - self.pending


class LedgerEntry(LivemodeModel):
    """One signed movement on an account. Rows are inserted, never updated or deleted (a
    database trigger refuses both); a mistake is corrected by a compensating entry. The unique
    `idempotency_key` makes each cause post at most once."""

    class Kind(models.TextChoices):
        EARN = "earn", "Earn"
        SPEND = "spend", "Spend"
        EXPIRE = "expire", "Expire"
        REVERSE = "reverse", "Reverse"
        ADJUST = "adjust", "Manual adjustment"
        PAYOUT = "payout", "Pay-out"

    class Source(models.TextChoices):
        TRANSACTION = "transaction", "Transaction"
        RETURN = "return", "Return"
        CAMPAIGN = "campaign", "Campaign"
        OFFER = "offer", "Offer"
        CLAIM = "claim", "Receipt claim"
        MANUAL = "manual", "Manual adjustment"
        EXPIRY = "expiry", "Expiry"
        PAYOUT = "payout", "Pay-out"
        SYSTEM = "system", "System"

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.BigIntegerField(help_text="Signed: points, or minor units of the account's currency.")
    balance_after = models.BigIntegerField()
    source_type = models.CharField(max_length=16, choices=Source.choices)
    source_id = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=200)
    reverses = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals")
    qualifying_points = models.BigIntegerField(default=0, help_text="Counts towards a points-based tier.")
    qualifying_spend = models.BigIntegerField(default=0, help_text="Minor units counting towards a spend-based tier.")
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    occurred_at = models.DateTimeField(default=timezone.now, help_text="When the cause happened (business time).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        permissions = [
            ("adjust_balance", "Can post manual balance adjustments"),
            ("view_liability", "Can view the liability report"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["livemode", "idempotency_key"], name="ledger_entry_idempotency_key_unique"),
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_amount_not_zero"),
            models.CheckConstraint(
                condition=~Q(kind__in=["earn"]) | Q(amount__gt=0), name="ledger_entry_earn_positive"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["spend", "expire", "payout"]) | Q(amount__lt=0),
                name="ledger_entry_debit_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["contact", "-id"], name="ledger_entry_contact_id"),
            models.Index(fields=["contact", "occurred_at"], name="ledger_entry_contact_occurred"),
            models.Index(fields=["source_type", "source_id"], name="ledger_entry_source"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} ({self.idempotency_key})"


class SpendCondition(LivemodeModel):
    """Where and when a commerce balance may be spent: products (by SKU, family or brand),
    venues, days of the week and hours. An empty dimension places no limit."""

    name = models.CharField(max_length=200)
    venues = models.ManyToManyField("catalogue.Venue", blank=True, related_name="+")
    days_of_week = models.JSONField(default=list, blank=True, help_text="ISO weekdays 1 (Mon) to 7 (Sun); empty = any.")
    hour_from = models.TimeField(null=True, blank=True)
    hour_until = models.TimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class SpendConditionRestriction(CatalogueRestriction):
    condition = models.ForeignKey(SpendCondition, on_delete=models.CASCADE, related_name="restrictions")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["condition", "kind", "value"], name="spend_condition_restriction_unique")
        ]


class Lot(models.Model):
    """What one credit left to spend: spending takes from lots soonest-to-expire first, expiry
    removes what a lot still holds, a pending lot is not spendable until released."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lots")
    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="lots")
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    pending_until = models.DateTimeField(null=True, blank=True)
    is_pending = models.BooleanField(default=False)
    spend_condition = models.ForeignKey(
        SpendCondition, null=True, blank=True, on_delete=models.PROTECT, related_name="lots"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="lot_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")), name="lot_remaining_in_range"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "expires_at"], name="lot_open_by_expiry", condition=Q(remaining__gt=0)),
            models.Index(fields=["expires_at"], name="lot_expiry_due", condition=Q(remaining__gt=0)),
            models.Index(fields=["pending_until"], name="lot_pending_due", condition=Q(is_pending=True)),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount}"


class LotConsumption(models.Model):
    """How much a debit (spend, expiry, reversal, pay-out) took from one lot: what a reversal
    of that debit gives back."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="consumptions")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="consumptions")
    amount = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="lot_consumption_positive")]

    def __str__(self) -> str:
        return f"{self.amount} from lot {self.lot_id}"


class PointsShortfall(models.Model):
    """Points a reversal could not take back because the contact had already spent them
    (program policy `clamp`): a record for finance, never a negative balance."""

    entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    original_entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="shortfalls")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="shortfalls")
    amount = models.BigIntegerField()
    source_id = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="points_shortfall_positive")]

    def __str__(self) -> str:
        return f"shortfall {self.amount}"


class WalletPreference(models.Model):
    """A contact's auto-spend preference and where back-end reductions are paid out."""

    class AutoSpend(models.TextChoices):
        OFF = "off", "Off"
        ALL = "all", "Spend everything available"
        ABOVE_THRESHOLD = "above_threshold", "Spend what is above a threshold"

    class PayoutMethod(models.TextChoices):
        CARD = "card", "Payment card"
        BANK_TRANSFER = "bank_transfer", "Bank transfer"
        PAYPAL = "paypal", "PayPal"
        WALLET = "wallet", "Open balance"

    contact = models.OneToOneField(
        Contact, on_delete=models.CASCADE, primary_key=True, related_name="wallet_preference"
    )
    auto_spend = models.CharField(max_length=16, choices=AutoSpend.choices, default=AutoSpend.OFF)
    auto_spend_threshold = models.BigIntegerField(default=0, help_text="Minor units kept when spending above it.")
    payout_method = models.CharField(max_length=16, choices=PayoutMethod.choices, default=PayoutMethod.WALLET)
    payout_reference = models.CharField(max_length=100, blank=True, help_text="Masked card, IBAN or account.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(auto_spend_threshold__gte=0), name="wallet_preference_threshold_ok")
        ]

    def __str__(self) -> str:
        return f"wallet preference of {self.contact_id}"


class Payout(LivemodeModel):
    """Money a back-end reduction pays back to the contact (pending → paid or failed)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="payouts")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(help_text="Minor units.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    method = models.CharField(max_length=16, choices=WalletPreference.PayoutMethod.choices)
    reference = models.CharField(max_length=100, blank=True)
    source_id = models.CharField(max_length=100, blank=True, help_text="The purchase that asked for it.")
    idempotency_key = models.CharField(max_length=200)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode", "idempotency_key"], name="payout_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"payout {self.amount} {self.currency} ({self.status})"


class SpendToken(LivemodeModel):
    """A one-time spend code (OTP): only its hash is kept; single use; locked after too many
    wrong attempts; superseded when a newer one is issued."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="spend_tokens")
    code_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["contact", "-created_at"], name="spend_token_contact_recent")]

    def __str__(self) -> str:
        return f"spend token {self.pk}"


class Tier(LivemodeModel):
    """A tier level: reached when the contact's qualifying value (points earned or money spent
    within the program's rolling window) meets `threshold`."""

    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(help_text="Higher rank = higher tier.")
    threshold = models.BigIntegerField(help_text="Points, or minor units of the program currency.")
    multiplier = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("1.00"))
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("rank",)
        constraints = [
            models.UniqueConstraint(fields=["livemode", "rank"], name="tier_rank_unique_per_mode"),
            models.UniqueConstraint(fields=["livemode", "name"], name="tier_name_unique_per_mode"),
            models.CheckConstraint(condition=Q(threshold__gte=0), name="tier_threshold_not_negative"),
            models.CheckConstraint(condition=Q(multiplier__gte=0), name="tier_multiplier_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class ContactTier(models.Model):
    """A contact's current tier and the dates its downgrade policy needs."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, primary_key=True, related_name="tier_status")
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    achieved_at = models.DateTimeField(null=True, blank=True)
    period_ends_at = models.DateTimeField(null=True, blank=True)
    below_threshold_since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.tier or 'no tier'}"


class TierHistory(LivemodeModel):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="tier_history")
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    qualifying_value = models.BigIntegerField()
    reason = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "tier history"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.from_tier or '-'} → {self.to_tier or '-'}"


class EarningRule(LivemodeModel):
    """An always-on economy rule: points per unit of currency spent, optionally for one tier,
    with catalogue exclusions. Rules in force at a purchase's time each add their points."""

    class Rounding(models.TextChoices):
        DOWN = "down", "Down"
        HALF_UP = "half_up", "Half up"
        UP = "up", "Up"

    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    currency = models.CharField(max_length=3)
    points_per_unit = models.DecimalField(max_digits=10, decimal_places=4, help_text="Points per 1.00 spent.")
    tier = models.ForeignKey(
        Tier,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="earning_rules",
        help_text="Only contacts in this tier; empty = everyone.",
    )
    apply_tier_multiplier = models.BooleanField(default=True)
    rounding = models.CharField(max_length=8, choices=Rounding.choices, default=Rounding.DOWN)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    expiry_months = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Overrides the program default.")
    pending_days = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Overrides the program default.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(condition=Q(points_per_unit__gte=0), name="earning_rule_rate_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True) | Q(valid_until__isnull=True) | Q(valid_until__gt=F("valid_from")),
                name="earning_rule_validity_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class EarningRuleExclusion(CatalogueRestriction):
    rule = models.ForeignKey(EarningRule, on_delete=models.CASCADE, related_name="exclusions")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "kind", "value"], name="earning_rule_exclusion_unique")]


class ContactChange(models.Model):
    """One committed change to a contact, for the change feed (`GET /contacts/changes`).

    Append-only, written by the services in the same database transaction as the change. `xid`
    is the writing transaction's id (PostgreSQL `pg_current_xact_id()`, 0 elsewhere): the feed
    only hands out rows below the oldest running transaction, in (xid, id) order, so a row can
    never appear behind a cursor that was already given out. No foreign key to the contact: an
    erasure's tombstone outlives the contact's data.
    """

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        IDENTIFIERS_CHANGED = "identifiers_changed", "Identifiers changed"
        TIER_CHANGED = "tier_changed", "Tier changed"
        ERASED = "erased", "Erased"

    id = models.BigAutoField(primary_key=True)
    livemode = models.BooleanField()
    contact_id = models.UUIDField()
    kind = models.CharField(max_length=24, choices=Kind.choices)
    xid = models.BigIntegerField(default=0, help_text="The writing transaction's id (PostgreSQL).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["livemode", "xid", "id"], name="contact_change_feed_order"),
            models.Index(fields=["contact_id", "xid", "id"], name="contact_change_by_contact"),
            models.Index(fields=["created_at"], name="contact_change_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.contact_id}"


class ContactChangeHorizon(models.Model):
    """Per mode, the feed position (xid, change id) up to which erasure tombstones were purged:
    a cursor before it may have missed an erasure and must start over."""

    livemode = models.BooleanField(primary_key=True)
    xid = models.BigIntegerField(default=0)
    change_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"purged up to ({self.xid}, {self.change_id})"
