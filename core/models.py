"""Platform models: API keys, idempotency records, the outbox and webhooks, message variants.

- `ApiKey`: only a hash of the key is stored; the key's prefix (`lk_live_…`/`lk_test_…`) is
  the primary key, so the prefix is unique by construction. `livemode` fixes which data the key
  sees; `scopes` which endpoints it may call.
- `IdempotencyRecord`: unique per (api key, Idempotency-Key); the first request to insert the
  row owns it, so two concurrent requests with one key can never both run.
- `OutboxEvent`: a domain event written in the transaction of the change it reports;
  `WebhookDelivery` is unique per (endpoint, event): an event is fanned out to an endpoint once
  (and delivered at least once).
- `MessageVariant`: a JSON message template; names unique per mode.
- `LivemodeModel`: the abstract base for every root object (`livemode` separates test data
  from live data; queries always filter on it).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import get_random_string
from rest_framework_api_key.crypto import KeyGenerator
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager


class LivemodeModel(models.Model):
    livemode = models.BooleanField(default=True, help_text="Live data; test-mode data is only visible to test keys.")

    class Meta:
        abstract = True


class ApiKeyManager(BaseAPIKeyManager):
    # SHA-512 of a 40-character random secret: a password hasher's slowness buys nothing here
    # and would cost every request a few hundred milliseconds.
    key_generator = KeyGenerator(prefix_length=12, secret_key_length=40)

    def assign_key(self, obj: ApiKey) -> str:
        mode = "live" if obj.livemode else "test"
        prefix = f"lk_{mode}_{get_random_string(12)}"
        key = f"{prefix}.{get_random_string(40)}"
        obj.id = prefix
        obj.prefix = prefix
        obj.hashed_key = self.key_generator.hash(key)
        return key


class ApiKey(AbstractAPIKey):
    class Scope(models.TextChoices):
        INTEGRATION = "integration", "Integration (contacts, offers, transactions, orders)"
        MANAGEMENT = "management", "Management (program configuration)"

    id = models.CharField(max_length=40, primary_key=True, editable=False)
    prefix = models.CharField(max_length=40, unique=True, editable=False)
    livemode = models.BooleanField(default=False, help_text="Live keys see live data; test keys see test data only.")
    scopes = models.JSONField(default=list, help_text="integration and/or management")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )

    objects = ApiKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    @property
    def mode(self) -> str:
        return "live" if self.livemode else "test"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class IdempotencyRecord(models.Model):
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({'completed' if self.is_completed else 'in flight'})"

    @property
    def is_completed(self) -> bool:
        return self.response_status is not None


class OutboxEvent(models.Model):
    """A domain event, written in the same database transaction as the change it reports, so
    the event exists if and only if the change committed. Delivery (webhooks) reads from here."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="Stable across retries.")
    livemode = models.BooleanField()
    event_type = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Fanned out to webhook endpoints.")

    class Meta:
        verbose_name = "outbox event"
        indexes = [
            models.Index(fields=["id"], name="outbox_event_undispatched", condition=Q(dispatched_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class MessageVariant(LivemodeModel):
    """A message shape configured for an external system: a JSON template whose string values
    may name facts of the event (`"{{ contact.member_number }}"`). A campaign's message outcome
    and an external offer's `offer.issued` carry the rendered message (core.messages). Names are
    unique per mode; like every piece of program configuration, a variant belongs to one mode, so
    a test key can never change what live messages look like."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True)
    template = models.JSONField(
        default=dict,
        help_text='JSON object; strings like "{{ contact.member_number }}" are filled in from the event\'s facts.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode", "name"], name="message_variant_name_unique_per_mode"),
        ]

    def __str__(self) -> str:
        return self.name


class WebhookEndpoint(LivemodeModel):
    """Where domain events are delivered, signed in the Standard Webhooks form with `secret`
    (shown once, at creation). Disabled automatically after too many failures in a row, or at
    once when the receiver answers 410 Gone."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    event_types = models.JSONField(default=list, blank=True, help_text="Subscribed event types; empty = all.")
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event for one endpoint: delivered at least once, with the event's stable id as
    `webhook-id`. Retries are due times kept here (not broker countdowns); a worker leases a
    due delivery by pushing `next_attempt_at` forward, so a killed worker's lease just runs out."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (gave up)"

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_once_per_endpoint")]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.status_code or self.error}"
