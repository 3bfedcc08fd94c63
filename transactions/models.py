"""Purchases sent by integrators, their processing, voids, returns and product syncs.

- `Transaction`: unique `external_id` (the integrator's `id`) per mode — the database decides
  which of any number of concurrent duplicates is stored; `fingerprint` tells a replay from a
  conflicting reuse. Status moves queued → processed | failed | unmatched | anonymous, and any
  of those → voided, by guarded updates; each step is a `TransactionEvent`.
- `TransactionItem`: the lines, with what each earned and what has been returned of it; a
  check constraint keeps returns within what was bought.
- `TransactionDiscount`: discounts, possibly naming the issued offer they redeemed.
- `Return`: unique `external_id` per mode; against an original transaction or ad hoc.
- `ProductSync`: a bulk catalogue upsert run by a worker, with progress and per-row errors.
- `Claim`: a receipt (QR or barcode payload) claimed by a contact; unique (mode, merchant
  number, venue number, receipt number) — the database decides which of two concurrent claims
  of one receipt wins, so a receipt is awarded once.
"""

from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from core.models import LivemodeModel


class Transaction(LivemodeModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        UNMATCHED = "unmatched", "Unmatched (contact not known yet)"
        ANONYMOUS = "anonymous", "Anonymous"
        VOIDED = "voided", "Voided"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    external_id = models.CharField(max_length=100, help_text="The integrator's id, unique per mode.")
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    contact = models.ForeignKey(
        "loyalty.Contact", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions"
    )
    match_key_type = models.CharField(max_length=16, blank=True)
    match_key = models.CharField(max_length=254, blank=True, help_text="Normalised secondary key, when unmatched.")
    match_source = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    venue = models.ForeignKey("catalogue.Venue", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(max_length=8, blank=True)
    receipt_number = models.CharField(max_length=64, blank=True)
    amount = models.BigIntegerField(help_text="Sum of the lines, minor units.")
    discount_total = models.BigIntegerField(default=0)
    tax_total = models.BigIntegerField(default=0)
    payments = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    custom = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    spend_requested = models.BigIntegerField(null=True, blank=True)
    spend_reduction = models.CharField(max_length=10, blank=True)
    spend_approved = models.BigIntegerField(default=0)
    points_earned = models.BigIntegerField(default=0)
    response = models.JSONField(
        default=dict, blank=True, encoder=DjangoJSONEncoder, help_text="The first answer, replayed to retries."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    failure_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode", "external_id"], name="transaction_external_id_unique"),
            models.CheckConstraint(
                condition=Q(amount__gte=0) & Q(discount_total__gte=0) & Q(tax_total__gte=0),
                name="transaction_amounts_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="transaction_status_received"),
            models.Index(fields=["contact", "-occurred_at"], name="transaction_contact_occurred"),
            models.Index(
                fields=["livemode", "match_key_type", "match_key"],
                name="transaction_unmatched_key",
                condition=Q(status="unmatched"),
            ),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def net_amount(self) -> int:
        return max(0, self.amount - self.discount_total)


class TransactionItem(models.Model):
    transaction = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="items")
    line_number = models.PositiveIntegerField()
    sku = models.CharField(max_length=64)
    family = models.CharField(max_length=64, blank=True)
    brand = models.CharField(max_length=64, blank=True)
    quantity = models.DecimalField(max_digits=16, decimal_places=6)
    unit_price = models.BigIntegerField(null=True, blank=True)
    amount = models.BigIntegerField()
    tax_included = models.BigIntegerField(default=0)
    discount_allocated = models.BigIntegerField(default=0, help_text="Order-level discounts spread on this line.")
    points_earned = models.BigIntegerField(default=0)
    returned_quantity = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    returned_amount = models.BigIntegerField(default=0)

    class Meta:
        ordering = ("line_number",)
        constraints = [
            models.UniqueConstraint(fields=["transaction", "line_number"], name="transaction_item_line_unique"),
            models.CheckConstraint(
                condition=Q(returned_quantity__lte=F("quantity")), name="transaction_item_returns_within_quantity"
            ),
            models.CheckConstraint(
                condition=Q(returned_amount__lte=F("amount")), name="transaction_item_returns_within_amount"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} × {self.quantity}"


class TransactionDiscount(models.Model):
    transaction = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="discounts")
    amount = models.BigIntegerField()
    issued_offer = models.ForeignKey(
        "offers.IssuedOffer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gte=0), name="transaction_discount_not_negative")]

    def __str__(self) -> str:
        return f"-{self.amount}"


class TransactionEvent(models.Model):
    """The processing history of a transaction (received, processed, failed, voided, …)."""

    transaction = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=24)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.kind


class Return(LivemodeModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    external_id = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=64)
    original = models.ForeignKey(Transaction, null=True, blank=True, on_delete=models.PROTECT, related_name="returns")
    contact = models.ForeignKey("loyalty.Contact", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    occurred_at = models.DateTimeField()
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    points_reversed = models.BigIntegerField(default=0)
    items = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    response = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode", "external_id"], name="return_external_id_unique"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="return_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return self.external_id


class ProductSync(LivemodeModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    rows = models.JSONField(default=list, encoder=DjangoJSONEncoder)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sync {self.pk}: {self.processed}/{self.total}"


class Claim(LivemodeModel):
    """A receipt claimed by a contact: either a stored anonymous purchase given to the contact
    (reclaim) or a purchase recorded from the payload alone (self-service)."""

    class Kind(models.TextChoices):
        RECLAIM = "reclaim", "Reclaim of a stored purchase"
        SELF_SERVICE = "self_service", "Self-service purchase"

    class Format(models.TextChoices):
        QR = "qr", "QR code"
        BARCODE = "barcode", "Barcode"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact = models.ForeignKey("loyalty.Contact", on_delete=models.PROTECT, related_name="claims")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    code_format = models.CharField(max_length=8, choices=Format.choices)
    code = models.CharField(max_length=200, help_text="The scanned payload, as sent.")
    merchant_number = models.CharField(max_length=32)
    venue_number = models.CharField(max_length=32)
    receipt_number = models.CharField(max_length=64)
    amount = models.BigIntegerField(help_text="Net amount of the receipt, minor units.")
    transaction = models.OneToOneField(Transaction, on_delete=models.PROTECT, related_name="claim")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["livemode", "merchant_number", "venue_number", "receipt_number"], name="claim_receipt_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="claim_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["contact", "-created_at"], name="claim_contact_created")]

    def __str__(self) -> str:
        return f"{self.merchant_number};{self.venue_number};{self.receipt_number}"
