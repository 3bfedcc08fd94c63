import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue.models import Brand, Merchant, Product, ProductFamily, Venue
from catalogue.tests.factories import (
    BrandFactory,
    MerchantFactory,
    ProductFactory,
    ProductFamilyFactory,
    VenueFactory,
)
from core.tests.assertions import assert_error_body

pytestmark = pytest.mark.django_db

MERCHANTS = "/api/v1/merchants"
VENUES = "/api/v1/venues"
PRODUCTS = "/api/v1/products"
SOME_ID = "6f1c1d2e-8a55-4a4e-9f57-1f0d3c6b2a10"


def assert_error(response, status, code, *parameters):
    """The contract's error body, its `parameters` exactly `parameters`: each offending field or id,
    followed by its offending value where there is one (`"id", "<uuid>"`)."""
    return assert_error_body(response, status, code, parameters)


def _all_pages(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.json()
    pages = [response.json()]
    while pages[-1]["next"]:
        response = client.get(pages[-1]["next"])
        assert response.status_code == 200, response.json()
        pages.append(response.json())
    return pages


@pytest.fixture
def live_management_client(make_client):
    return make_client(livemode=True, scopes=("integration", "management"), name="live management")


# --- scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", MERCHANTS, None),
        ("post", MERCHANTS, {"number": "100", "name": "Acme"}),
        ("get", f"{MERCHANTS}/{SOME_ID}", None),
        ("patch", f"{MERCHANTS}/{SOME_ID}", {"name": "Acme"}),
        ("get", VENUES, None),
        ("post", VENUES, {"merchant": SOME_ID, "number": "1", "name": "Main street"}),
        ("get", f"{VENUES}/{SOME_ID}", None),
        ("patch", f"{VENUES}/{SOME_ID}", {"name": "Main street"}),
        ("get", PRODUCTS, None),
        ("post", PRODUCTS, {"sku": "SKU-1"}),
        ("get", f"{PRODUCTS}/SKU-1", None),
        ("patch", f"{PRODUCTS}/SKU-1", {"name": "Coffee"}),
    ],
)
def test_a_key_without_the_management_scope_is_denied_every_catalogue_endpoint(client_test, method, path, body):
    response = getattr(client_test, method)(path, body, format="json") if body else getattr(client_test, method)(path)

    assert_error(response, 403, "PERMISSION_DENIED")
    assert Merchant.objects.count() == 0
    assert Product.objects.count() == 0


def test_a_key_with_only_the_management_scope_may_manage_but_not_integrate(make_client):
    management_only = make_client(livemode=False, scopes=("management",))

    assert management_only.get(MERCHANTS).status_code == 200
    assert_error(management_only.get("/api/v1/contacts"), 403, "PERMISSION_DENIED")


def test_the_catalogue_without_an_api_key_is_unauthenticated(client):
    assert_error(client.get(MERCHANTS), 401, "AUTHENTICATION_FAILED")


# --- merchants -------------------------------------------------------------------------------


def test_a_merchant_is_created(management_client):
    response = management_client.post(MERCHANTS, {"number": "1001", "name": "Acme Coffee"}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    merchant = Merchant.objects.get()
    assert body["id"] == str(merchant.pk)
    assert (body["number"], body["name"], body["livemode"]) == ("1001", "Acme Coffee", False)
    assert merchant.livemode is False


def test_a_merchant_created_with_a_live_key_is_live(live_management_client):
    response = live_management_client.post(MERCHANTS, {"number": "1001", "name": "Acme"}, format="json")

    assert response.status_code == 201
    assert response.json()["livemode"] is True
    assert Merchant.objects.get().livemode is True


def test_a_duplicate_merchant_number_is_refused(management_client):
    MerchantFactory(number="1001")

    response = management_client.post(MERCHANTS, {"number": "1001", "name": "Copy"}, format="json")

    assert_error(response, 409, "DUPLICATE_NUMBER", "number", "1001")
    assert Merchant.objects.count() == 1


def test_a_merchant_number_of_the_other_mode_may_be_reused(management_client):
    MerchantFactory(number="1001", livemode=True)

    response = management_client.post(MERCHANTS, {"number": "1001", "name": "Test Acme"}, format="json")

    assert response.status_code == 201, response.json()
    assert Merchant.objects.filter(number="1001").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Acme"}, "number"),
        ({"number": "1001"}, "name"),
        ({"number": 1001, "name": "Acme"}, "number"),
        ({"number": "1" * 33, "name": "Acme"}, "number"),
        ({"number": "1001", "name": "Acme", "city": "Lund"}, "city"),
        ({"number": "1001", "name": "Acme", "livemode": True}, "livemode"),
    ],
)
def test_an_invalid_merchant_is_refused_naming_the_field(management_client, body, field):
    assert_error(management_client.post(MERCHANTS, body, format="json"), 400, "VALIDATION_ERROR", field)
    assert Merchant.objects.count() == 0


def test_merchants_are_listed_in_cursor_pages(management_client):
    merchants = MerchantFactory.create_batch(5)
    MerchantFactory(livemode=True)

    pages = _all_pages(management_client, MERCHANTS, page_size=2)

    assert [len(page["results"]) for page in pages] == [2, 2, 1]
    assert all("next" in page and "results" in page for page in pages)
    listed = [merchant["id"] for page in pages for merchant in page["results"]]
    assert sorted(listed) == sorted(str(merchant.pk) for merchant in merchants)


def test_a_merchant_is_read_by_its_id(management_client):
    merchant = MerchantFactory(number="1001", name="Acme")

    response = management_client.get(f"{MERCHANTS}/{merchant.pk}")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["number"], response.json()["name"]) == (
        str(merchant.pk),
        "1001",
        "Acme",
    )


@pytest.mark.parametrize("bad_id", ["not-a-uuid", SOME_ID])
def test_an_unknown_or_malformed_merchant_id_is_not_found(management_client, bad_id):
    assert_error(management_client.get(f"{MERCHANTS}/{bad_id}"), 404, "NOT_FOUND", "id", bad_id)


def test_a_merchant_patch_changes_only_the_fields_sent(management_client):
    merchant = MerchantFactory(number="1001", name="Acme")

    response = management_client.patch(f"{MERCHANTS}/{merchant.pk}", {"name": "Acme Coffee"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Acme Coffee"
    merchant.refresh_from_db()
    assert (merchant.number, merchant.name) == ("1001", "Acme Coffee")


def test_a_merchant_patch_to_a_taken_number_is_refused_and_changes_nothing(management_client):
    MerchantFactory(number="1001")
    merchant = MerchantFactory(number="2002", name="Beta")

    response = management_client.patch(
        f"{MERCHANTS}/{merchant.pk}", {"number": "1001", "name": "Beta 2"}, format="json"
    )

    assert_error(response, 409, "DUPLICATE_NUMBER", "number", "1001")
    merchant.refresh_from_db()
    assert (merchant.number, merchant.name) == ("2002", "Beta")


def test_a_merchant_of_one_mode_is_invisible_to_a_key_of_the_other(management_client, live_management_client):
    test_merchant = MerchantFactory(livemode=False, name="Test shop")
    live_merchant = MerchantFactory(livemode=True, name="Live shop")

    assert_error(
        live_management_client.get(f"{MERCHANTS}/{test_merchant.pk}"), 404, "NOT_FOUND", "id", str(test_merchant.pk)
    )
    assert_error(
        management_client.get(f"{MERCHANTS}/{live_merchant.pk}"), 404, "NOT_FOUND", "id", str(live_merchant.pk)
    )
    assert [entry["id"] for entry in live_management_client.get(MERCHANTS).json()["results"]] == [str(live_merchant.pk)]
    assert [entry["id"] for entry in management_client.get(MERCHANTS).json()["results"]] == [str(test_merchant.pk)]
    response = live_management_client.patch(f"{MERCHANTS}/{test_merchant.pk}", {"name": "Hacked"}, format="json")
    assert_error(response, 404, "NOT_FOUND", "id", str(test_merchant.pk))
    test_merchant.refresh_from_db()
    assert test_merchant.name == "Test shop"


def test_creating_a_merchant_twice_with_one_idempotency_key_creates_it_once(management_client):
    payload = {"number": "1001", "name": "Acme"}

    first = management_client.post(MERCHANTS, payload, format="json", HTTP_IDEMPOTENCY_KEY="m-1")
    again = management_client.post(MERCHANTS, payload, format="json", HTTP_IDEMPOTENCY_KEY="m-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert Merchant.objects.count() == 1


# --- venues ----------------------------------------------------------------------------------


def test_a_venue_is_created_under_a_merchant_in_its_mode(management_client):
    merchant = MerchantFactory(number="1001")

    response = management_client.post(
        VENUES,
        {
            "merchant": str(merchant.pk),
            "number": "01",
            "name": "Main street",
            "time_zone": "Europe/Stockholm",
            "address": "Storgatan 1, Lund",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    venue = Venue.objects.get()
    assert body["id"] == str(venue.pk)
    assert body["merchant"] == str(merchant.pk)
    assert body["merchant_number"] == "1001"
    assert (body["number"], body["name"], body["time_zone"]) == ("01", "Main street", "Europe/Stockholm")
    assert body["address"] == "Storgatan 1, Lund"
    assert body["is_active"] is True
    assert body["livemode"] is False
    assert venue.livemode is False


def test_a_venue_without_a_time_zone_is_in_utc(management_client):
    merchant = MerchantFactory()

    response = management_client.post(
        VENUES, {"merchant": str(merchant.pk), "number": "01", "name": "Main"}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["time_zone"] == "UTC"


@pytest.mark.parametrize("time_zone", ["Europe/Lund", "CEST+2", "europe/stockholm", ""])
def test_a_venue_with_an_unknown_time_zone_is_refused_naming_time_zone(management_client, time_zone):
    merchant = MerchantFactory()

    response = management_client.post(
        VENUES,
        {"merchant": str(merchant.pk), "number": "01", "name": "Main", "time_zone": time_zone},
        format="json",
    )

    assert_error(response, 400, "VALIDATION_ERROR", "time_zone")
    assert Venue.objects.count() == 0


def test_a_duplicate_venue_number_within_a_merchant_is_refused(management_client):
    venue = VenueFactory(number="01")

    response = management_client.post(
        VENUES, {"merchant": str(venue.merchant_id), "number": "01", "name": "Copy"}, format="json"
    )

    assert_error(response, 409, "DUPLICATE_NUMBER", "number", "01")
    assert Venue.objects.count() == 1


def test_the_same_venue_number_under_another_merchant_is_fine(management_client):
    VenueFactory(number="01")
    other_merchant = MerchantFactory()

    response = management_client.post(
        VENUES, {"merchant": str(other_merchant.pk), "number": "01", "name": "Other"}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert Venue.objects.filter(number="01").count() == 2


def test_a_venue_under_a_merchant_of_the_other_mode_is_not_found_naming_merchant(management_client):
    live_merchant = MerchantFactory(livemode=True)

    response = management_client.post(
        VENUES, {"merchant": str(live_merchant.pk), "number": "01", "name": "Main"}, format="json"
    )

    assert_error(response, 404, "NOT_FOUND", "merchant", str(live_merchant.pk))
    assert Venue.objects.count() == 0


@pytest.mark.parametrize("merchant", ["not-a-uuid", "", None, ["x"]])
def test_a_venue_with_a_malformed_merchant_id_is_refused_naming_merchant(management_client, merchant):
    response = management_client.post(VENUES, {"merchant": merchant, "number": "01", "name": "Main"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "merchant")


def test_a_venue_under_an_unknown_merchant_is_not_found(management_client):
    unknown = str(uuid.uuid4())

    response = management_client.post(VENUES, {"merchant": unknown, "number": "01", "name": "Main"}, format="json")

    assert_error(response, 404, "NOT_FOUND", "merchant", unknown)


def test_venues_are_listed_in_cursor_pages_with_their_merchant_number(management_client):
    venues = VenueFactory.create_batch(3)
    VenueFactory(merchant=MerchantFactory(livemode=True))

    pages = _all_pages(management_client, VENUES, page_size=2)

    assert [len(page["results"]) for page in pages] == [2, 1]
    listed = {venue["id"]: venue["merchant_number"] for page in pages for venue in page["results"]}
    assert listed == {str(venue.pk): venue.merchant.number for venue in venues}


def test_listing_venues_takes_as_many_queries_for_twenty_as_for_two(management_client):
    def list_queries():
        management_client.get(VENUES)
        with CaptureQueriesContext(connection) as queries:
            response = management_client.get(VENUES)
        return len(queries), len(response.json()["results"])

    VenueFactory.create_batch(2)
    few_queries, few = list_queries()
    VenueFactory.create_batch(18)
    many_queries, many = list_queries()

    assert (few, many) == (2, 20)
    assert many_queries == few_queries


def test_a_venue_is_read_by_its_id(management_client):
    venue = VenueFactory(number="07")

    response = management_client.get(f"{VENUES}/{venue.pk}")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["number"]) == (str(venue.pk), "07")


def test_a_malformed_venue_id_is_not_found(management_client):
    assert_error(management_client.get(f"{VENUES}/nope"), 404, "NOT_FOUND", "id", "nope")


def test_a_venue_patch_changes_only_the_fields_sent(management_client):
    venue = VenueFactory(number="01", name="Main", time_zone="Europe/Stockholm", address="Storgatan 1")

    response = management_client.patch(
        f"{VENUES}/{venue.pk}", {"is_active": False, "time_zone": "Europe/Helsinki"}, format="json"
    )

    assert response.status_code == 200, response.json()
    venue.refresh_from_db()
    assert (venue.number, venue.name, venue.address) == ("01", "Main", "Storgatan 1")
    assert (venue.is_active, venue.time_zone) == (False, "Europe/Helsinki")


def test_a_venue_patch_to_an_unknown_time_zone_is_refused_naming_time_zone(management_client):
    venue = VenueFactory(time_zone="Europe/Stockholm")

    response = management_client.patch(f"{VENUES}/{venue.pk}", {"time_zone": "Mars/Olympus"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "time_zone")
    venue.refresh_from_db()
    assert venue.time_zone == "Europe/Stockholm"


def test_a_venue_patch_to_a_number_taken_in_its_merchant_is_refused(management_client):
    first = VenueFactory(number="01")
    second = VenueFactory(merchant=first.merchant, number="02")

    response = management_client.patch(f"{VENUES}/{second.pk}", {"number": "01"}, format="json")

    assert_error(response, 409, "DUPLICATE_NUMBER", "number", "01")
    second.refresh_from_db()
    assert second.number == "02"


def test_a_venue_cannot_be_moved_to_another_merchant(management_client):
    venue = VenueFactory()
    other_merchant = MerchantFactory()

    response = management_client.patch(f"{VENUES}/{venue.pk}", {"merchant": str(other_merchant.pk)}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "merchant")
    venue.refresh_from_db()
    assert venue.merchant_id != other_merchant.pk


def test_a_venue_of_one_mode_is_invisible_to_a_key_of_the_other(live_management_client):
    venue = VenueFactory(name="Test venue")

    assert_error(live_management_client.get(f"{VENUES}/{venue.pk}"), 404, "NOT_FOUND", "id", str(venue.pk))
    assert live_management_client.get(VENUES).json()["results"] == []
    response = live_management_client.patch(f"{VENUES}/{venue.pk}", {"name": "X"}, format="json")
    assert_error(response, 404, "NOT_FOUND", "id", str(venue.pk))
    venue.refresh_from_db()
    assert venue.name == "Test venue"


# --- products --------------------------------------------------------------------------------


def test_a_product_is_created_with_family_and_brand_given_as_new_codes(management_client):
    response = management_client.post(
        PRODUCTS, {"sku": "SKU-1", "name": "Latte", "family": "coffee", "brand": "house"}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["sku"], body["name"], body["family"], body["brand"], body["livemode"]) == (
        "SKU-1",
        "Latte",
        "coffee",
        "house",
        False,
    )
    product = Product.objects.select_related("family", "brand").get()
    assert (product.family.code, product.family.livemode) == ("coffee", False)
    assert (product.brand.code, product.brand.livemode) == ("house", False)


def test_a_product_reuses_an_existing_family_and_brand_of_its_mode(management_client):
    family = ProductFamilyFactory(code="coffee")
    brand = BrandFactory(code="house")

    response = management_client.post(PRODUCTS, {"sku": "SKU-1", "family": "coffee", "brand": "house"}, format="json")

    assert response.status_code == 201, response.json()
    product = Product.objects.get()
    assert (product.family_id, product.brand_id) == (family.pk, brand.pk)
    assert (ProductFamily.objects.count(), Brand.objects.count()) == (1, 1)


def test_a_product_does_not_borrow_a_family_or_brand_of_the_other_mode(management_client):
    ProductFamilyFactory(code="coffee", livemode=True)
    BrandFactory(code="house", livemode=True)

    response = management_client.post(PRODUCTS, {"sku": "SKU-1", "family": "coffee", "brand": "house"}, format="json")

    assert response.status_code == 201, response.json()
    product = Product.objects.select_related("family", "brand").get()
    assert (product.family.livemode, product.brand.livemode) == (False, False)
    assert ProductFamily.objects.filter(code="coffee").count() == 2


def test_a_product_without_family_or_brand_has_none(management_client):
    response = management_client.post(PRODUCTS, {"sku": "SKU-1"}, format="json")

    assert response.status_code == 201, response.json()
    assert (response.json()["family"], response.json()["brand"], response.json()["name"]) == (None, None, "")


def test_a_duplicate_sku_is_refused_and_leaves_no_new_family_behind(management_client):
    ProductFactory(sku="SKU-1")
    families_before = ProductFamily.objects.count()

    response = management_client.post(PRODUCTS, {"sku": "SKU-1", "family": "brand-new-family"}, format="json")

    assert_error(response, 409, "DUPLICATE_SKU", "sku", "SKU-1")
    assert Product.objects.count() == 1
    assert ProductFamily.objects.count() == families_before
    assert not ProductFamily.objects.filter(code="brand-new-family").exists()


def test_a_sku_of_the_other_mode_may_be_reused(management_client):
    ProductFactory(sku="SKU-1", livemode=True)

    response = management_client.post(PRODUCTS, {"sku": "SKU-1"}, format="json")

    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Latte"}, "sku"),
        ({"sku": 1}, "sku"),
        ({"sku": ""}, "sku"),
        ({"sku": "SKU-1", "family": 3}, "family"),
        ({"sku": "SKU-1", "brand": ["house"]}, "brand"),
        ({"sku": "SKU-1", "price": "9.90"}, "price"),
    ],
)
def test_an_invalid_product_is_refused_naming_the_field(management_client, body, field):
    assert_error(management_client.post(PRODUCTS, body, format="json"), 400, "VALIDATION_ERROR", field)
    assert Product.objects.count() == 0


def test_products_are_listed_in_cursor_pages_with_codes(management_client):
    products = ProductFactory.create_batch(3)
    ProductFactory(livemode=True)

    pages = _all_pages(management_client, PRODUCTS, page_size=2)

    assert [len(page["results"]) for page in pages] == [2, 1]
    listed = {entry["sku"]: (entry["family"], entry["brand"]) for page in pages for entry in page["results"]}
    assert listed == {product.sku: (product.family.code, product.brand.code) for product in products}


def test_listing_products_takes_as_many_queries_for_twenty_as_for_two(management_client):
    def list_queries():
        management_client.get(PRODUCTS)
        with CaptureQueriesContext(connection) as queries:
            response = management_client.get(PRODUCTS)
        return len(queries), len(response.json()["results"])

    ProductFactory.create_batch(2)
    few_queries, few = list_queries()
    ProductFactory.create_batch(18)
    many_queries, many = list_queries()

    assert (few, many) == (2, 20)
    assert many_queries == few_queries


def test_a_product_is_read_by_its_sku(management_client):
    product = ProductFactory(sku="SKU-1", name="Latte")

    response = management_client.get(f"{PRODUCTS}/SKU-1")

    assert response.status_code == 200
    assert response.json()["sku"] == "SKU-1"
    assert response.json()["name"] == "Latte"
    assert response.json()["family"] == product.family.code


def test_an_unknown_sku_is_not_found_naming_sku(management_client):
    assert_error(management_client.get(f"{PRODUCTS}/NOPE"), 404, "NOT_FOUND", "sku", "NOPE")


def test_a_product_patch_changes_only_the_fields_sent(management_client):
    product = ProductFactory(sku="SKU-1", name="Latte")
    family_code, brand_code = product.family.code, product.brand.code

    response = management_client.patch(f"{PRODUCTS}/SKU-1", {"name": "Caffe latte"}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["name"], response.json()["family"], response.json()["brand"]) == (
        "Caffe latte",
        family_code,
        brand_code,
    )


def test_a_product_patch_may_change_the_family_to_a_new_code_and_clear_the_brand(management_client):
    ProductFactory(sku="SKU-1")

    response = management_client.patch(f"{PRODUCTS}/SKU-1", {"family": "tea", "brand": None}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["family"], response.json()["brand"]) == ("tea", None)
    product = Product.objects.select_related("family").get(sku="SKU-1")
    assert (product.family.code, product.family.livemode, product.brand) == ("tea", False, None)


def test_a_product_sku_cannot_be_changed(management_client):
    ProductFactory(sku="SKU-1")

    response = management_client.patch(f"{PRODUCTS}/SKU-1", {"sku": "SKU-2"}, format="json")

    assert_error(response, 400, "VALIDATION_ERROR", "sku")
    assert list(Product.objects.values_list("sku", flat=True)) == ["SKU-1"]


def test_a_product_of_one_mode_is_invisible_to_a_key_of_the_other(management_client, live_management_client):
    ProductFactory(sku="TEST-ONLY", name="Test product")
    ProductFactory(sku="LIVE-ONLY", livemode=True)

    assert_error(live_management_client.get(f"{PRODUCTS}/TEST-ONLY"), 404, "NOT_FOUND", "sku", "TEST-ONLY")
    assert_error(management_client.get(f"{PRODUCTS}/LIVE-ONLY"), 404, "NOT_FOUND", "sku", "LIVE-ONLY")
    assert [entry["sku"] for entry in live_management_client.get(PRODUCTS).json()["results"]] == ["LIVE-ONLY"]
    assert [entry["sku"] for entry in management_client.get(PRODUCTS).json()["results"]] == ["TEST-ONLY"]
    response = live_management_client.patch(f"{PRODUCTS}/TEST-ONLY", {"name": "Hacked"}, format="json")
    assert_error(response, 404, "NOT_FOUND", "sku", "TEST-ONLY")
    assert Product.objects.get(sku="TEST-ONLY").name == "Test product"


def test_a_sku_held_in_both_modes_is_read_as_each_keys_own(management_client, live_management_client):
    ProductFactory(sku="SKU-1", name="Test latte")
    ProductFactory(sku="SKU-1", name="Live latte", livemode=True)

    assert management_client.get(f"{PRODUCTS}/SKU-1").json()["name"] == "Test latte"
    assert live_management_client.get(f"{PRODUCTS}/SKU-1").json()["name"] == "Live latte"
