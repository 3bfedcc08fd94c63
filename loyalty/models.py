"""Contacts and their identifiers.

- `Contact`: profile, consents, custom attributes, status; a generated `member_number` with a
  Luhn check digit. The database keeps every identifier unique per mode: member number, mobile
  phone (stored E.164), email (case-insensitively, a unique index on `lower(email)`).
- `ContactExternalId`: an integrator's own id for the contact, unique per (mode, source, value);
  `source` namespaces ids of different systems ("" when the integrator gives none).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

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
