"""Orders placed by contacts and fulfilled (or cancelled) by store agents.

- `Order`: status new → in_progress → completed, new | in_progress → cancelled (with a reason);
  every change is one guarded UPDATE on the expected status (`orders.services.TRANSITIONS`),
  so of a complete and a cancel racing on one order exactly one wins; each change writes an
  `OrderStatusChange`. A check constraint ties `cancelled` to a reason.
- `OrderLine`: the ordered items. `OrderCancellationReason`: what agents may give, kept by their
  managers. `OrderAgent`: the venues whose orders an agent works on.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.models import LivemodeModel


class OrderCancellationReason(LivemodeModel):
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=["livemode", "code"], name="cancellation_reason_code_unique")]

    def __str__(self) -> str:
        return self.name


class Order(LivemodeModel):
    class Status(models.TextChoices):
        NEW = "new", "New"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class Fulfilment(models.TextChoices):
        PICK_UP = "pick_up", "Pick-up"
        DELIVERY = "delivery", "Delivery"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact = models.ForeignKey("loyalty.Contact", on_delete=models.PROTECT, related_name="orders")
    venue = models.ForeignKey("catalogue.Venue", on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    fulfilment = models.CharField(max_length=10, choices=Fulfilment.choices, default=Fulfilment.PICK_UP)
    notes = models.TextField(blank=True)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(help_text="Minor units.")
    cancellation_reason = models.ForeignKey(
        OrderCancellationReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    transaction = models.ForeignKey(
        "transactions.Transaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The purchase completing the order created.",
    )
    placed_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-placed_at",)
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["new", "in_progress", "completed", "cancelled"]), name="order_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(cancellation_reason__isnull=False),
                name="order_cancelled_has_reason",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["livemode", "status", "venue", "-placed_at"], name="order_queue")]

    def __str__(self) -> str:
        return f"order {str(self.pk)[:8]} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_number = models.PositiveIntegerField()
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    quantity = models.DecimalField(max_digits=16, decimal_places=6)
    unit_price = models.BigIntegerField()
    amount = models.BigIntegerField()

    class Meta:
        ordering = ("line_number",)
        constraints = [models.UniqueConstraint(fields=["order", "line_number"], name="order_line_unique")]

    def __str__(self) -> str:
        return f"{self.sku} × {self.quantity}"


class OrderStatusChange(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12)
    actor = models.CharField(max_length=150, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.from_status or '-'} → {self.to_status}"


class OrderAgent(models.Model):
    """A staff user's venues: their order queue shows those venues' orders."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="order_agent")
    venues = models.ManyToManyField("catalogue.Venue", related_name="+")

    def __str__(self) -> str:
        return str(self.user)
