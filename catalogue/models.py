"""Catalogue and places: the low layer every app may use.

- `Merchant` (unique `number` per mode) and its `Venue`s (unique `number` per merchant): the
  numbers printed in receipt codes. A venue has the time zone that day/hour conditions use.
- `ProductFamily`, `Brand` (unique `code` per mode) and `Product` (unique `sku` per mode).
A venue's and a product's mode always equal their merchant's / family's (checked in services).
"""

from __future__ import annotations

import uuid
import zoneinfo

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from core.models import LivemodeModel


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise DjangoValidationError(f"'{value}' is not a known IANA time zone.")


class Merchant(LivemodeModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=32, help_text="The merchant number printed in receipt codes.")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=["livemode", "number"], name="merchant_number_unique_per_mode")]

    def __str__(self) -> str:
        return f"{self.name} ({self.number})"


class Venue(LivemodeModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="venues")
    number = models.CharField(max_length=32, help_text="The venue number printed in receipt codes.")
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    address = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("merchant__name", "name")
        constraints = [models.UniqueConstraint(fields=["merchant", "number"], name="venue_number_unique_per_merchant")]

    def __str__(self) -> str:
        return f"{self.name} ({self.number})"

    def clean(self) -> None:
        if self.merchant_id and self.merchant.livemode != self.livemode:
            raise DjangoValidationError({"livemode": "A venue has its merchant's mode."})


class ProductFamily(LivemodeModel):
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("code",)
        verbose_name_plural = "product families"
        constraints = [models.UniqueConstraint(fields=["livemode", "code"], name="product_family_code_unique_per_mode")]

    def __str__(self) -> str:
        return self.name or self.code


class Brand(LivemodeModel):
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("code",)
        constraints = [models.UniqueConstraint(fields=["livemode", "code"], name="brand_code_unique_per_mode")]

    def __str__(self) -> str:
        return self.name or self.code


class Product(LivemodeModel):
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    family = models.ForeignKey(ProductFamily, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("sku",)
        constraints = [models.UniqueConstraint(fields=["livemode", "sku"], name="product_sku_unique_per_mode")]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}".strip()

    def clean(self) -> None:
        for related in (self.family, self.brand):
            if related is not None and related.livemode != self.livemode:
                raise DjangoValidationError({"livemode": "Family and brand must be of the product's mode."})


class CatalogueRestriction(models.Model):
    """One catalogue restriction (a SKU, a product family or a brand) of a rule, offer or
    campaign. Concrete subclasses add the foreign key to their owner; each owner allows at most
    MAX_CATALOGUE_RESTRICTIONS of them (checked by its service and admin)."""

    class Kind(models.TextChoices):
        SKU = "sku", "SKU"
        FAMILY = "family", "Product family"
        BRAND = "brand", "Brand"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=64)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


MAX_CATALOGUE_RESTRICTIONS = 50


def line_matches_restrictions(line: dict, restrictions: frozenset[tuple[str, str]]) -> bool:
    """Does a basket line (with `sku` and optional `family`/`brand`) fall under any
    (kind, value) restriction? Pure; callers build the frozenset once per rule."""
    return (
        ("sku", line.get("sku")) in restrictions
        or ("family", line.get("family")) in restrictions
        or ("brand", line.get("brand")) in restrictions
    )
