"""Product synchronisation: up to 10,000 catalogue rows upserted by a worker in batches, with
progress and per-row errors on the sync row. Also: SKUs first met in a purchase are created."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from catalogue.models import Brand, Product, ProductFamily
from catalogue.selectors import product_classifications
from core.baskets import BasketLine
from core.exceptions import LimitExceeded, ValidationError
from transactions.models import ProductSync

MAX_SYNC_ROWS = 10_000
BATCH_SIZE = 500
ROW_FIELDS = {"sku", "name", "family", "brand"}


def _row_errors(index: int, row: Any) -> list[dict]:
    if not isinstance(row, dict):
        return [{"row": index, "field": "", "error": "Each row must be an object."}]
    errors = []
    unknown = set(row) - ROW_FIELDS
    if unknown:
        errors.append({"row": index, "field": sorted(unknown)[0], "error": "Unknown field."})
    for name in ROW_FIELDS:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            errors.append({"row": index, "field": name, "error": "Must be a string."})
        elif isinstance(value, str) and len(value) > (200 if name == "name" else 64):
            errors.append({"row": index, "field": name, "error": "Too long."})
    if not isinstance(row.get("sku"), str) or not row["sku"].strip():
        errors.append({"row": index, "field": "sku", "error": "A SKU is required."})
    return errors


def product_sync_create(*, livemode: bool, rows: Any) -> ProductSync:
    """Accept a sync (rows are checked one by one by the worker; a bad row never fails the
    others). Raises ValidationError (not a list), LimitExceeded (over 10,000 rows)."""
    if not isinstance(rows, list) or not rows:
        raise ValidationError.for_field("products", "A non-empty list of products is required.")
    if len(rows) > MAX_SYNC_ROWS:
        raise LimitExceeded(
            f"At most {MAX_SYNC_ROWS:,} products per sync; got {len(rows):,}.",
            parameters=[LimitExceeded.parameter("products", limit=MAX_SYNC_ROWS)],
        )
    sync = ProductSync.objects.create(livemode=livemode, rows=rows, total=len(rows))
    from transactions.tasks import product_sync_run

    transaction.on_commit(lambda: product_sync_run.delay(str(sync.pk)))
    return sync


def _codes(model, livemode: bool, codes: set[str]) -> dict[str, int]:
    model.objects.bulk_create([model(livemode=livemode, code=code, name=code) for code in codes], ignore_conflicts=True)
    return dict(model.objects.filter(livemode=livemode, code__in=codes).values_list("code", "pk"))


def _upsert(livemode: bool, rows: list[dict]) -> tuple[int, int]:
    families = _codes(ProductFamily, livemode, {row["family"] for row in rows if row.get("family")})
    brands = _codes(Brand, livemode, {row["brand"] for row in rows if row.get("brand")})
    skus = [row["sku"].strip() for row in rows]
    existing = set(Product.objects.filter(livemode=livemode, sku__in=skus).values_list("sku", flat=True))
    Product.objects.bulk_create(
        [
            Product(
                livemode=livemode,
                sku=row["sku"].strip(),
                name=row.get("name") or "",
                family_id=families.get(row.get("family")),
                brand_id=brands.get(row.get("brand")),
            )
            for row in rows
        ],
        update_conflicts=True,
        unique_fields=["livemode", "sku"],
        update_fields=["name", "family", "brand", "updated_at"],
    )
    created = len({sku for sku in skus if sku not in existing})
    return created, len(rows) - created


def product_sync_run(*, sync_id) -> ProductSync:
    """Upsert the rows in batches (later rows of one SKU win). Safe to run again."""
    sync = ProductSync.objects.get(pk=sync_id)
    if sync.status == ProductSync.Status.DONE:
        return sync
    ProductSync.objects.filter(pk=sync.pk).update(
        status=ProductSync.Status.RUNNING, processed=0, created_count=0, updated_count=0
    )
    errors: list[dict] = []
    for start in range(0, len(sync.rows), BATCH_SIZE):
        batch, good = sync.rows[start : start + BATCH_SIZE], {}
        for offset, row in enumerate(batch):
            row_errors = _row_errors(start + offset, row)
            if row_errors:
                errors += row_errors
            else:
                good[row["sku"].strip()] = row  # the last row of a SKU wins
        created = updated = 0
        if good:
            with transaction.atomic():
                created, updated = _upsert(sync.livemode, list(good.values()))
        ProductSync.objects.filter(pk=sync.pk).update(
            processed=F("processed") + len(batch),
            created_count=F("created_count") + created,
            updated_count=F("updated_count") + updated,
        )
    ProductSync.objects.filter(pk=sync.pk).update(
        status=ProductSync.Status.DONE, errors=errors[:10_000], finished_at=timezone.now()
    )
    sync.refresh_from_db()
    return sync


def lines_classified_and_learned(
    *, livemode: bool, lines: list[BasketLine], known: dict[str, tuple[str | None, str | None]] | None = None
) -> list[BasketLine]:
    """The lines with family and brand filled from the catalogue where the till left them out;
    SKUs the catalogue does not know yet join it (with the family/brand the line gave). One
    query when every SKU is known, none when the caller read `known` (sku → family and brand
    codes of the SKUs the catalogue has) already."""
    if known is None:
        wanted = {line.sku for line in lines}
        known = {sku: (family, brand) for sku, family, brand in product_classifications(livemode=livemode, skus=wanted)}
    unknown = {line.sku: line for line in lines if line.sku not in known}
    if unknown:
        families = _codes(ProductFamily, livemode, {line.family for line in unknown.values() if line.family})
        brands = _codes(Brand, livemode, {line.brand for line in unknown.values() if line.brand})
        Product.objects.bulk_create(
            [
                Product(
                    livemode=livemode, sku=sku, family_id=families.get(line.family), brand_id=brands.get(line.brand)
                )
                for sku, line in unknown.items()
            ],
            ignore_conflicts=True,
        )
    return [line.classified(*known.get(line.sku, (None, None))) for line in lines]
