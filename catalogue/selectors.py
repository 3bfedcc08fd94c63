"""Reads of the catalogue."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from catalogue.models import Brand, Merchant, Product, ProductFamily, Venue
from core.exceptions import ValidationError


def merchant_list(*, livemode: bool) -> QuerySet[Merchant]:
    return Merchant.objects.filter(livemode=livemode)


def venue_list(*, livemode: bool) -> QuerySet[Venue]:
    return Venue.objects.filter(livemode=livemode).select_related("merchant")


def venues_in_mode(*, livemode: bool, venue_ids: list) -> list[Venue]:
    """The venues named by id, all of this mode; ValidationError naming the unknown ones (offers
    and campaigns restrict to venues this way)."""
    venues = list(Venue.objects.filter(livemode=livemode, pk__in=venue_ids))
    if len(venues) != len(set(map(str, venue_ids))):
        found = {str(venue.pk) for venue in venues}
        missing = [str(venue_id) for venue_id in venue_ids if str(venue_id) not in found]
        raise ValidationError.for_field("venues", f"Unknown venue(s) in this mode: {', '.join(missing)}.")
    return venues


def product_list(*, livemode: bool) -> QuerySet[Product]:
    return Product.objects.filter(livemode=livemode).select_related("family", "brand")


def basket_lines_classified(*, livemode: bool, lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of basket lines with `family` and `brand` filled from the catalogue where the line
    omits them and its SKU is known. One query, whatever the number of lines."""
    lines = [dict(line) for line in lines]
    wanted = {line["sku"] for line in lines if not (line.get("family") and line.get("brand"))}
    if not wanted:
        return lines
    known = {sku: (family, brand) for sku, family, brand in product_classifications(livemode=livemode, skus=wanted)}
    for line in lines:
        family, brand = known.get(line["sku"], (None, None))
        if not line.get("family") and family:
            line["family"] = family
        if not line.get("brand") and brand:
            line["brand"] = brand
    return lines


_CLASSIFICATION_SQL = (
    f"SELECT product.sku, family.code, brand.code FROM {Product._meta.db_table} AS product "
    f"LEFT JOIN {ProductFamily._meta.db_table} AS family ON family.id = product.family_id "
    f"LEFT JOIN {Brand._meta.db_table} AS brand ON brand.id = product.brand_id "
    # A join, not `sku = ANY(%s)`: the statement is prepared, and a generic plan tests each
    # product against the array one element at a time (6 ms for 500 SKUs, against 0.3 ms when
    # the array is a constant PostgreSQL can hash).
    "JOIN unnest(%s::text[]) AS wanted (sku) ON wanted.sku = product.sku "
    "WHERE product.livemode = %s"
)


def product_classifications(*, livemode: bool, skus: set[str]) -> list[tuple[str, str | None, str | None]]:
    """(sku, family code, brand code) of the known SKUs, in one query. On PostgreSQL the SKUs go
    as one array parameter: `sku IN (%s, …)` with a thousand placeholders cost 2.6 ms of CPU to
    build and bind, this 0.5 ms (measured, 1,000-line basket)."""
    if connection.vendor != "postgresql":
        return list(
            Product.objects.filter(livemode=livemode, sku__in=skus)
            .order_by()
            .values_list("sku", "family__code", "brand__code")
        )
    with connection.cursor() as cursor:
        cursor.execute(_CLASSIFICATION_SQL, [list(skus), livemode])
        return cursor.fetchall()
