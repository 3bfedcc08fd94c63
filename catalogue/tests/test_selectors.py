import pytest

from catalogue.selectors import basket_lines_classified, merchant_list, product_list, venue_list
from catalogue.tests.factories import (
    BrandFactory,
    MerchantFactory,
    ProductFactory,
    ProductFamilyFactory,
    VenueFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def latte():
    return ProductFactory(
        sku="LATTE",
        family=ProductFamilyFactory(code="coffee"),
        brand=BrandFactory(code="house"),
    )


# --- basket_lines_classified -----------------------------------------------------------------


def test_a_known_sku_gets_its_family_and_brand_from_the_catalogue(latte):
    lines = basket_lines_classified(livemode=False, lines=[{"sku": "LATTE", "quantity": 2, "amount": "9.80"}])

    assert lines == [{"sku": "LATTE", "quantity": 2, "amount": "9.80", "family": "coffee", "brand": "house"}]


def test_a_family_and_brand_the_line_gives_are_kept(latte):
    lines = basket_lines_classified(livemode=False, lines=[{"sku": "LATTE", "family": "drinks", "brand": "own"}])

    assert lines == [{"sku": "LATTE", "family": "drinks", "brand": "own"}]


def test_only_what_the_line_omits_is_filled_in(latte):
    lines = basket_lines_classified(
        livemode=False, lines=[{"sku": "LATTE", "family": "drinks"}, {"sku": "LATTE", "brand": "own"}]
    )

    assert lines == [
        {"sku": "LATTE", "family": "drinks", "brand": "house"},
        {"sku": "LATTE", "family": "coffee", "brand": "own"},
    ]


def test_an_empty_family_on_the_line_counts_as_omitted(latte):
    lines = basket_lines_classified(livemode=False, lines=[{"sku": "LATTE", "family": "", "brand": None}])

    assert lines == [{"sku": "LATTE", "family": "coffee", "brand": "house"}]


def test_an_unknown_sku_is_left_alone(latte):
    lines = basket_lines_classified(
        livemode=False, lines=[{"sku": "UNKNOWN", "quantity": 1}, {"sku": "UNKNOWN-2", "family": "x"}]
    )

    assert lines == [{"sku": "UNKNOWN", "quantity": 1}, {"sku": "UNKNOWN-2", "family": "x"}]


def test_a_product_without_family_or_brand_adds_nothing():
    ProductFactory(sku="PLAIN", family=None, brand=None)

    lines = basket_lines_classified(livemode=False, lines=[{"sku": "PLAIN"}])

    assert lines == [{"sku": "PLAIN"}]


def test_the_other_modes_catalogue_is_not_used(latte):
    ProductFactory(
        sku="LIVE-ONLY",
        livemode=True,
        family=ProductFamilyFactory(code="tea", livemode=True),
        brand=BrandFactory(code="live-brand", livemode=True),
    )

    test_lines = basket_lines_classified(livemode=False, lines=[{"sku": "LIVE-ONLY"}])
    live_lines = basket_lines_classified(livemode=True, lines=[{"sku": "LATTE"}, {"sku": "LIVE-ONLY"}])

    assert test_lines == [{"sku": "LIVE-ONLY"}]
    assert live_lines == [{"sku": "LATTE"}, {"sku": "LIVE-ONLY", "family": "tea", "brand": "live-brand"}]


def test_the_lines_given_are_not_changed(latte):
    given = [{"sku": "LATTE"}]

    basket_lines_classified(livemode=False, lines=given)

    assert given == [{"sku": "LATTE"}]


def test_the_lines_keep_their_order_and_duplicates(latte):
    ProductFactory(sku="BUN", family=ProductFamilyFactory(code="bakery"), brand=None)

    lines = basket_lines_classified(
        livemode=False, lines=[{"sku": "BUN"}, {"sku": "X"}, {"sku": "LATTE"}, {"sku": "BUN"}]
    )

    assert [(line["sku"], line.get("family")) for line in lines] == [
        ("BUN", "bakery"),
        ("X", None),
        ("LATTE", "coffee"),
        ("BUN", "bakery"),
    ]


def test_a_generator_of_lines_is_accepted(latte):
    lines = basket_lines_classified(livemode=False, lines=({"sku": sku} for sku in ["LATTE"]))

    assert lines == [{"sku": "LATTE", "family": "coffee", "brand": "house"}]


@pytest.mark.parametrize("line_count", [5, 500])
def test_classifying_a_basket_takes_one_query_whatever_its_size(django_assert_num_queries, line_count):
    products = ProductFactory.create_batch(50)
    lines = [{"sku": products[index % len(products)].sku, "quantity": 1} for index in range(line_count)]
    lines += [{"sku": f"UNKNOWN-{index}"} for index in range(line_count // 5)]

    with django_assert_num_queries(1):
        classified = basket_lines_classified(livemode=False, lines=lines)

    assert len(classified) == len(lines)
    assert all(line.get("family") for line in classified[:line_count])


def test_a_fully_classified_basket_needs_no_query(django_assert_num_queries, latte):
    with django_assert_num_queries(0):
        lines = basket_lines_classified(livemode=False, lines=[{"sku": "LATTE", "family": "a", "brand": "b"}])

    assert lines == [{"sku": "LATTE", "family": "a", "brand": "b"}]


# --- lists -------------------------------------------------------------------------------------


def test_the_lists_hold_only_the_modes_objects():
    test_venue = VenueFactory()
    live_venue = VenueFactory(merchant=MerchantFactory(livemode=True))
    test_product = ProductFactory()
    live_product = ProductFactory(livemode=True)

    assert list(merchant_list(livemode=False)) == [test_venue.merchant]
    assert list(merchant_list(livemode=True)) == [live_venue.merchant]
    assert list(venue_list(livemode=False)) == [test_venue]
    assert list(venue_list(livemode=True)) == [live_venue]
    assert list(product_list(livemode=False)) == [test_product]
    assert list(product_list(livemode=True)) == [live_product]


def test_reading_listed_venues_merchants_takes_one_query(django_assert_num_queries):
    VenueFactory.create_batch(5)

    with django_assert_num_queries(1):
        numbers = [venue.merchant.number for venue in venue_list(livemode=False)]

    assert len(numbers) == 5


def test_reading_listed_products_families_and_brands_takes_one_query(django_assert_num_queries):
    ProductFactory.create_batch(5)

    with django_assert_num_queries(1):
        codes = [(product.family.code, product.brand.code) for product in product_list(livemode=False)]

    assert len(codes) == 5
