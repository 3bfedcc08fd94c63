import pytest

from catalogue.exceptions import DuplicateNumber, DuplicateSku
from catalogue.models import Brand, Merchant, Product, ProductFamily, Venue
from catalogue.services import (
    merchant_create,
    merchant_update,
    product_create,
    product_update,
    venue_create,
    venue_update,
)
from catalogue.tests.factories import MerchantFactory, ProductFactory, VenueFactory
from core.exceptions import ValidationError

pytestmark = pytest.mark.django_db


def test_a_merchant_number_is_unique_per_mode():
    merchant_create(livemode=False, number="1001", name="Test")
    merchant_create(livemode=True, number="1001", name="Live")

    with pytest.raises(DuplicateNumber) as error:
        merchant_create(livemode=False, number="1001", name="Copy")

    assert error.value.parameters == [{"name": "number", "value": "1001"}]
    assert Merchant.objects.count() == 2


def test_a_merchant_update_ignores_fields_it_does_not_own():
    merchant = MerchantFactory(livemode=False, number="1001")

    merchant_update(merchant=merchant, name="New name", livemode=True)

    merchant.refresh_from_db()
    assert (merchant.name, merchant.livemode) == ("New name", False)


def test_a_merchant_update_to_a_taken_number_is_a_duplicate():
    MerchantFactory(number="1001")
    merchant = MerchantFactory(number="2002")

    with pytest.raises(DuplicateNumber):
        merchant_update(merchant=merchant, number="1001")

    merchant.refresh_from_db()
    assert merchant.number == "2002"


@pytest.mark.parametrize("livemode", [False, True])
def test_a_venue_takes_its_merchants_mode(livemode):
    merchant = MerchantFactory(livemode=livemode)

    venue = venue_create(merchant=merchant, number="01", name="Main")

    assert Venue.objects.get(pk=venue.pk).livemode is livemode


def test_a_venue_with_an_unknown_time_zone_is_refused_before_anything_is_written():
    merchant = MerchantFactory()

    with pytest.raises(ValidationError) as error:
        venue_create(merchant=merchant, number="01", name="Main", time_zone="Nowhere/City")

    assert error.value.parameters[0]["name"] == "time_zone"
    assert Venue.objects.count() == 0


def test_a_venue_update_to_an_unknown_time_zone_changes_nothing():
    venue = VenueFactory(name="Main", time_zone="Europe/Stockholm")

    with pytest.raises(ValidationError):
        venue_update(venue=venue, name="Renamed", time_zone="Nowhere/City")

    venue.refresh_from_db()
    assert (venue.name, venue.time_zone) == ("Main", "Europe/Stockholm")


def test_venue_numbers_are_unique_within_a_merchant_only():
    venue = VenueFactory(number="01")
    venue_create(merchant=MerchantFactory(), number="01", name="Elsewhere")

    with pytest.raises(DuplicateNumber):
        venue_create(merchant=venue.merchant, number="01", name="Copy")

    assert Venue.objects.count() == 2


def test_a_product_gets_family_and_brand_of_its_own_mode_by_code():
    product = product_create(livemode=True, sku="SKU-1", family="coffee", brand="house")

    product.refresh_from_db()
    assert (product.family.code, product.family.livemode) == ("coffee", True)
    assert (product.brand.code, product.brand.livemode) == ("house", True)


def test_a_duplicate_sku_rolls_back_the_family_and_brand_it_created():
    ProductFactory(sku="SKU-1", family=None, brand=None)

    with pytest.raises(DuplicateSku):
        product_create(livemode=False, sku="SKU-1", family="new-family", brand="new-brand")

    assert (Product.objects.count(), ProductFamily.objects.count(), Brand.objects.count()) == (1, 0, 0)


def test_a_product_update_with_an_empty_code_clears_the_family():
    product = ProductFactory()

    product_update(product=product, family="")

    product.refresh_from_db()
    assert product.family is None
    assert product.brand is not None


def test_a_product_update_leaves_the_sku_alone():
    product = ProductFactory(sku="SKU-1")

    product_update(product=product, sku="SKU-2", name="Renamed")

    product.refresh_from_db()
    assert (product.sku, product.name) == ("SKU-1", "Renamed")
