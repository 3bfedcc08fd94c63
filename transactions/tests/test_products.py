"""Product sync: up to 10,000 rows upserted by a worker in batches, progress and per-row errors
on the sync; SKUs first met in a purchase join the catalogue. Service level, then the two
endpoints."""

from __future__ import annotations

import pytest

from catalogue.models import Brand, Product, ProductFamily
from catalogue.tests.factories import ProductFactory
from core.baskets import BasketLine
from core.exceptions import LimitExceeded, ValidationError
from core.tests.assertions import assert_error_body
from transactions.models import ProductSync
from transactions.services import products
from transactions.services.products import lines_classified_and_learned, product_sync_create, product_sync_run

pytestmark = pytest.mark.django_db


def run(rows, *, livemode=False) -> ProductSync:
    return product_sync_run(sync_id=product_sync_create(livemode=livemode, rows=rows).pk)


# --- service ----------------------------------------------------------------------------------


def test_a_sync_creates_products_with_their_families_and_brands():
    sync = run([{"sku": "A1", "name": "Milk", "family": "dairy", "brand": "arla"}, {"sku": "B2"}])

    assert (sync.status, sync.total, sync.processed, sync.created_count, sync.updated_count) == ("done", 2, 2, 2, 0)
    assert sync.errors == [] and sync.finished_at is not None
    milk = Product.objects.get(sku="A1")
    assert (milk.name, milk.family.code, milk.brand.code, milk.livemode) == ("Milk", "dairy", "arla", False)
    assert Product.objects.get(sku="B2").family is None


def test_a_sync_updates_products_that_exist():
    ProductFactory(sku="A1", name="Old name")

    sync = run([{"sku": "A1", "name": "New name", "family": "bakery"}])

    assert (sync.created_count, sync.updated_count) == (0, 1)
    product = Product.objects.get(sku="A1")
    assert (product.name, product.family.code) == ("New name", "bakery")


def test_the_last_row_of_a_sku_wins():
    run([{"sku": "A1", "name": "first"}, {"sku": "A1", "name": "second"}])

    assert Product.objects.get(sku="A1").name == "second"


def test_families_and_brands_are_created_once_and_shared():
    run([{"sku": f"S{n}", "family": "dairy", "brand": "arla"} for n in range(5)])

    assert ProductFamily.objects.filter(code="dairy").count() == 1
    assert Brand.objects.filter(code="arla").count() == 1


def test_bad_rows_are_reported_one_by_one_and_do_not_stop_the_others():
    rows = [
        {"sku": "GOOD"},
        {"sku": ""},
        {"sku": "X", "colour": "red"},
        {"sku": "Y", "name": 42},
        {"sku": "Z" * 65},
        "not an object",
        {"sku": "ALSO-GOOD", "family": "f"},
    ]

    sync = run(rows)

    assert sync.processed == 7 and sync.created_count == 2
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["ALSO-GOOD", "GOOD"]
    assert sorted((error["row"], error["field"]) for error in sync.errors) == [
        (1, "sku"),
        (2, "colour"),
        (3, "name"),
        (4, "sku"),
        (5, ""),
    ]


def test_a_sync_of_more_than_10000_rows_is_refused():
    with pytest.raises(LimitExceeded) as error:
        product_sync_create(livemode=False, rows=[{"sku": f"S{n}"} for n in range(10_001)])

    assert error.value.parameters[0]["name"] == "products"
    assert not ProductSync.objects.exists()


def test_a_sync_of_10000_rows_is_accepted_and_done_in_batches(monkeypatch):
    seen = []
    upsert = products._upsert

    def counting(livemode, rows):
        seen.append(len(rows))
        return upsert(livemode, rows)

    monkeypatch.setattr(products, "_upsert", counting)

    sync = run([{"sku": f"S{n:05d}"} for n in range(10_000)])

    assert (sync.status, sync.processed, sync.created_count) == ("done", 10_000, 10_000)
    assert seen == [products.BATCH_SIZE] * (10_000 // products.BATCH_SIZE)
    assert Product.objects.count() == 10_000


@pytest.mark.parametrize("rows", [[], {"sku": "A"}, "A1"])
def test_a_sync_needs_a_non_empty_list(rows):
    with pytest.raises(ValidationError) as error:
        product_sync_create(livemode=False, rows=rows)

    assert error.value.parameters[0]["name"] == "products"


def test_running_a_finished_sync_again_changes_nothing():
    sync = run([{"sku": "A1", "name": "synced"}])
    Product.objects.filter(sku="A1").update(name="changed since")

    again = product_sync_run(sync_id=sync.pk)

    assert (again.status, again.processed, again.created_count) == ("done", 1, 1)
    assert Product.objects.get(sku="A1").name == "changed since"


def test_a_sync_writes_only_its_own_mode():
    ProductFactory(sku="A1", name="test", livemode=False)

    run([{"sku": "A1", "name": "live"}], livemode=True)

    assert Product.objects.get(sku="A1", livemode=False).name == "test"
    assert Product.objects.get(sku="A1", livemode=True).name == "live"


def test_skus_met_in_a_purchase_are_created_and_known_ones_left_alone():
    known = ProductFactory(sku="KNOWN", name="Known")

    lines = lines_classified_and_learned(
        livemode=False,
        lines=[
            BasketLine(sku="KNOWN", amount=100),
            BasketLine(sku="NEW", amount=100, family="dairy", brand="arla"),
        ],
    )

    assert (lines[0].family, lines[0].brand) == (known.family.code, known.brand.code)
    assert Product.objects.get(sku="KNOWN").name == "Known"
    new = Product.objects.get(sku="NEW")
    assert (new.family.code, new.brand.code) == ("dairy", "arla")


# --- API --------------------------------------------------------------------------------------


def test_post_products_sync_answers_202_with_a_process_id_and_get_reports_progress(
    client_test, django_capture_on_commit_callbacks
):
    rows = [{"sku": "A1", "family": "dairy"}, {"sku": ""}]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_test.post("/api/v1/products/sync", {"products": rows}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["total"] == 2
    detail = client_test.get(f"/api/v1/products/sync/{body['process_id']}")
    assert detail.status_code == 200
    progress = detail.json()
    assert (progress["status"], progress["processed"], progress["created"], progress["updated"]) == ("done", 2, 1, 0)
    assert progress["errors"] == [{"row": 1, "field": "sku", "error": "A SKU is required."}]
    assert progress["finished_at"] is not None


def test_post_products_sync_over_10000_rows_is_limit_exceeded(client_test):
    response = client_test.post(
        "/api/v1/products/sync", {"products": [{"sku": f"S{n}"} for n in range(10_001)]}, format="json"
    )

    assert_error_body(response, 400, "LIMIT_EXCEEDED", ["products", "limit", "10000"])
    assert not ProductSync.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"), [({}, "products"), ({"products": []}, "products"), ({"items": []}, "items")]
)
def test_post_products_sync_without_a_list_of_products_is_a_validation_error(client_test, payload, field):
    response = client_test.post("/api/v1/products/sync", payload, format="json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert body["parameters"][0] == field
    assert not ProductSync.objects.exists()


def test_post_products_sync_is_idempotent_with_an_idempotency_key(client_test, django_capture_on_commit_callbacks):
    payload = {"products": [{"sku": "A1"}]}
    with django_capture_on_commit_callbacks(execute=True):
        first = client_test.post("/api/v1/products/sync", payload, format="json", HTTP_IDEMPOTENCY_KEY="sync-1")
    again = client_test.post("/api/v1/products/sync", payload, format="json", HTTP_IDEMPOTENCY_KEY="sync-1")

    assert again.status_code == 202 and again.json()["process_id"] == first.json()["process_id"]
    assert ProductSync.objects.count() == 1


@pytest.mark.parametrize("process_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid"])
def test_get_an_unknown_sync_is_not_found(client_test, process_id):
    assert_error_body(
        client_test.get(f"/api/v1/products/sync/{process_id}"), 404, "NOT_FOUND", ["process_id", process_id]
    )


def test_a_live_key_cannot_see_a_test_sync(client_test, client_live):
    sync = product_sync_create(livemode=False, rows=[{"sku": "A1"}])

    assert_error_body(client_live.get(f"/api/v1/products/sync/{sync.pk}"), 404, "NOT_FOUND")
    assert client_test.get(f"/api/v1/products/sync/{sync.pk}").status_code == 200
