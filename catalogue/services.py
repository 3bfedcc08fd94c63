"""Writes to the catalogue. Uniqueness is the database's job; these turn its refusals into
precise domain errors and keep modes consistent."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from catalogue.exceptions import DuplicateNumber, DuplicateSku
from catalogue.models import (
    MAX_CATALOGUE_RESTRICTIONS,
    Brand,
    CatalogueRestriction,
    Merchant,
    Product,
    ProductFamily,
    Venue,
    validate_time_zone,
)
from core.exceptions import LimitExceeded, ValidationError

MERCHANT_FIELDS = ("number", "name")
VENUE_FIELDS = ("number", "name", "time_zone", "address", "is_active")
PRODUCT_FIELDS = ("name",)


def _save_unique(instance, error: Exception) -> None:
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise error from None


def merchant_create(*, livemode: bool, number: str, name: str) -> Merchant:
    """Raises DuplicateNumber when the number is taken in this mode."""
    merchant = Merchant(livemode=livemode, number=number, name=name)
    _save_unique(merchant, DuplicateNumber(parameters=[DuplicateNumber.parameter("number", value=number)]))
    return merchant


def merchant_update(*, merchant: Merchant, **changes: Any) -> Merchant:
    for field, value in changes.items():
        if field in MERCHANT_FIELDS:
            setattr(merchant, field, value)
    _save_unique(merchant, DuplicateNumber(parameters=[DuplicateNumber.parameter("number", value=merchant.number)]))
    return merchant


def _check_time_zone(value: str) -> None:
    try:
        validate_time_zone(value)
    except DjangoValidationError as error:
        raise ValidationError.for_field("time_zone", error.messages[0]) from None


def venue_create(
    *, merchant: Merchant, number: str, name: str, time_zone: str = "UTC", address: str = "", is_active: bool = True
) -> Venue:
    """The venue takes its merchant's mode. Raises DuplicateNumber, ValidationError (time zone)."""
    _check_time_zone(time_zone)
    venue = Venue(
        livemode=merchant.livemode,
        merchant=merchant,
        number=number,
        name=name,
        time_zone=time_zone,
        address=address,
        is_active=is_active,
    )
    _save_unique(venue, DuplicateNumber(parameters=[DuplicateNumber.parameter("number", value=number)]))
    return venue


def venue_update(*, venue: Venue, **changes: Any) -> Venue:
    if "time_zone" in changes:
        _check_time_zone(changes["time_zone"])
    for field, value in changes.items():
        if field in VENUE_FIELDS:
            setattr(venue, field, value)
    _save_unique(venue, DuplicateNumber(parameters=[DuplicateNumber.parameter("number", value=venue.number)]))
    return venue


def product_family_get_or_create(*, livemode: bool, code: str) -> ProductFamily:
    family, _ = ProductFamily.objects.get_or_create(livemode=livemode, code=code, defaults={"name": code})
    return family


def brand_get_or_create(*, livemode: bool, code: str) -> Brand:
    brand, _ = Brand.objects.get_or_create(livemode=livemode, code=code, defaults={"name": code})
    return brand


def _apply_classification(product: Product, changes: dict[str, Any]) -> None:
    if "family" in changes:
        code = changes["family"]
        product.family = product_family_get_or_create(livemode=product.livemode, code=code) if code else None
    if "brand" in changes:
        code = changes["brand"]
        product.brand = brand_get_or_create(livemode=product.livemode, code=code) if code else None


@transaction.atomic
def product_create(
    *, livemode: bool, sku: str, name: str = "", family: str | None = None, brand: str | None = None
) -> Product:
    """Family and brand are given by code and created when new. Raises DuplicateSku."""
    product = Product(livemode=livemode, sku=sku, name=name)
    _apply_classification(product, {"family": family, "brand": brand})
    _save_unique(product, DuplicateSku(parameters=[DuplicateSku.parameter("sku", value=sku)]))
    return product


@transaction.atomic
def product_update(*, product: Product, **changes: Any) -> Product:
    for field, value in changes.items():
        if field in PRODUCT_FIELDS:
            setattr(product, field, value)
    _apply_classification(product, changes)
    product.save()
    return product


RESTRICTION_MODES = ("include", "exclude")


def restrictions_check(restrictions: list[dict[str, str]], *, owner: str) -> list[tuple[str, str, str]]:
    """The catalogue restrictions of an offer or a campaign (`[{mode?, kind, value}]`) as sorted,
    de-duplicated (mode, kind, value) triples. Raises LimitExceeded beyond 50 and
    ValidationError naming `restrictions.N.field`."""
    if len(restrictions) > MAX_CATALOGUE_RESTRICTIONS:
        raise LimitExceeded(
            f"At most {MAX_CATALOGUE_RESTRICTIONS} catalogue restrictions per {owner}; got {len(restrictions)}.",
            parameters=[LimitExceeded.parameter("restrictions", limit=MAX_CATALOGUE_RESTRICTIONS)],
        )
    triples = set()
    for index, restriction in enumerate(restrictions):
        mode = restriction.get("mode", "include")
        kind, value = restriction.get("kind"), (restriction.get("value") or "").strip()
        if mode not in RESTRICTION_MODES:
            raise ValidationError.for_field(f"restrictions.{index}.mode", "Use include or exclude.")
        if kind not in CatalogueRestriction.Kind.values:
            raise ValidationError.for_field(f"restrictions.{index}.kind", "Use sku, family or brand.")
        if not value:
            raise ValidationError.for_field(f"restrictions.{index}.value", "A value is required.")
        triples.add((mode, kind, value))
    return sorted(triples)
