"""Reads of the catalogue."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from catalogue.models import Merchant, Product, Venue


def merchant_list(*, livemode: bool) -> QuerySet[Merchant]:
    return Merchant.objects.filter(livemode=livemode)


def venue_list(*, livemode: bool) -> QuerySet[Venue]:
    return Venue.objects.filter(livemode=livemode).select_related("merchant")


def product_list(*, livemode: bool) -> QuerySet[Product]:
    return Product.objects.filter(livemode=livemode).select_related("family", "brand")


def basket_lines_classified(*, livemode: bool, lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of basket lines with `family` and `brand` filled from the catalogue where the line
    omits them and its SKU is known. One query, whatever the number of lines."""
    lines = [dict(line) for line in lines]
    wanted = {line["sku"] for line in lines if not (line.get("family") and line.get("brand"))}
    if not wanted:
        return lines
    known = {
        sku: (family, brand)
        for sku, family, brand in Product.objects.filter(livemode=livemode, sku__in=wanted).values_list(
            "sku", "family__code", "brand__code"
        )
    }
    for line in lines:
        family, brand = known.get(line["sku"], (None, None))
        if not line.get("family") and family:
            line["family"] = family
        if not line.get("brand") and brand:
            line["brand"] = brand
    return lines
