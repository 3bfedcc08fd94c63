"""Offer definitions: the validation shared by the admin and the management API, the 50
restriction limit, and lists replaced on update."""

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from catalogue.tests.factories import VenueFactory
from core.exceptions import LimitExceeded, ValidationError
from offers.models import Offer, OfferRestriction
from offers.services.definitions import offer_create, offer_update
from offers.tests.factories import OfferFactory

pytestmark = pytest.mark.django_db

PERCENT_OFFER = {"name": "Ten off", "benefit_type": "percent_off", "benefit_value": Decimal(10)}


def create(**overrides) -> Offer:
    return offer_create(livemode=False, **{**PERCENT_OFFER, **overrides})


def refused_field(**overrides) -> str:
    with pytest.raises(ValidationError) as caught:
        create(**overrides)
    assert caught.value.code == "VALIDATION_ERROR"
    [parameter] = caught.value.parameters
    assert not Offer.objects.exists()
    return parameter["name"]


def restrictions(count: int, *, mode: str = "include", kind: str = "sku") -> list[dict]:
    return [{"mode": mode, "kind": kind, "value": f"SKU{n}"} for n in range(count)]


def stored_restrictions(offer: Offer) -> set[tuple[str, str, str]]:
    return set(OfferRestriction.objects.filter(offer=offer).values_list("mode", "kind", "value"))


# --- creating ---------------------------------------------------------------------------------


def test_a_valid_offer_is_saved_with_its_restrictions_and_venues():
    venue = VenueFactory()

    offer = create(
        channels=["pos", "web", "mobile", "social"],
        days_of_week=[1, 7],
        hour_from=time(8),
        hour_until=time(20),
        restrictions=[{"kind": "family", "value": " dairy "}, {"mode": "exclude", "kind": "brand", "value": "acme"}],
        venues=[str(venue.pk)],
    )

    offer.refresh_from_db()
    assert (offer.livemode, offer.benefit_value, offer.channels) == (
        False,
        Decimal(10),
        ["pos", "web", "mobile", "social"],
    )
    assert stored_restrictions(offer) == {("include", "family", "dairy"), ("exclude", "brand", "acme")}
    assert list(offer.venues.all()) == [venue]


def test_the_same_restriction_given_twice_is_stored_once():
    offer = create(restrictions=[{"kind": "sku", "value": "A"}, {"kind": "sku", "value": "A "}])

    assert stored_restrictions(offer) == {("include", "sku", "A")}


@pytest.mark.parametrize("name", ["", "   ", None])
def test_an_offer_needs_a_name(name):
    assert refused_field(name=name) == "name"


def test_an_unknown_benefit_is_refused():
    assert refused_field(benefit_type="free_lunch") == "benefit_type"


# --- benefits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "100.01", "150", "-5"])
def test_a_percentage_must_be_above_zero_and_at_most_a_hundred(value):
    assert refused_field(benefit_value=Decimal(value)) == "benefit_value"


@pytest.mark.parametrize("value", ["0.01", "100"])
def test_a_percentage_up_to_a_hundred_is_accepted(value):
    assert create(benefit_value=Decimal(value)).benefit_value == Decimal(value)


@pytest.mark.parametrize("benefit_type", ["amount_off", "fixed_price"])
@pytest.mark.parametrize("currency", ["", None, "XYZ", "EURO"])
def test_an_amount_needs_a_valid_currency(benefit_type, currency):
    assert refused_field(benefit_type=benefit_type, benefit_value=Decimal(5), currency=currency) == "currency"


def test_an_amount_currency_is_stored_in_upper_case():
    offer = create(benefit_type="amount_off", benefit_value=Decimal(5), currency=" sek ")

    offer.refresh_from_db()
    assert offer.currency == "SEK"


def test_an_amount_off_of_nothing_is_refused():
    assert refused_field(benefit_type="amount_off", benefit_value=Decimal(0), currency="EUR") == "benefit_value"


@pytest.mark.parametrize("value", ["1", "0.5", "0"])
def test_a_points_multiplier_must_be_above_one(value):
    assert refused_field(benefit_type="points_multiplier", benefit_value=Decimal(value)) == "benefit_value"


def test_a_points_multiplier_above_one_is_accepted():
    assert create(benefit_type="points_multiplier", benefit_value=Decimal("1.5")).benefit_value == Decimal("1.5")


@pytest.mark.parametrize("value", ["10.5", "0.1", "0", "-100"])
def test_bonus_points_must_be_a_positive_whole_number(value):
    assert refused_field(benefit_type="bonus_points", benefit_value=Decimal(value)) == "benefit_value"


def test_whole_bonus_points_are_accepted():
    assert create(benefit_type="bonus_points", benefit_value=Decimal("250.0000")).benefit_value == 250


def test_a_currency_given_to_a_percentage_must_still_be_real():
    assert refused_field(currency="ZZZ") == "currency"


def test_an_unknown_scope_is_refused():
    assert refused_field(applies_to="everything") == "applies_to"


@pytest.mark.parametrize("field", ["cap_amount", "min_spend", "budget_amount"])
def test_money_limits_cannot_be_negative(field):
    assert refused_field(**{field: -1}) == field


def test_a_minimum_quantity_cannot_be_negative():
    assert refused_field(min_quantity=Decimal("-0.5")) == "min_quantity"


# --- conditions -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [["fax"], ["pos", "kiosk"], ["POS"]])
def test_an_unknown_channel_is_refused(channels):
    assert refused_field(channels=channels) == "channels"


@pytest.mark.parametrize("day", [0, 8, -1, True, "1", 1.0])
def test_days_must_be_iso_weekdays(day):
    assert refused_field(days_of_week=[1, day]) == "days_of_week"


@pytest.mark.parametrize(("hour_from", "hour_until"), [(time(18), time(9)), (time(9), time(9))])
def test_the_closing_hour_must_come_after_the_opening_hour(hour_from, hour_until):
    assert refused_field(hour_from=hour_from, hour_until=hour_until) == "hour_until"


def test_an_opening_or_closing_hour_alone_is_accepted():
    assert create(hour_from=time(18)).hour_from == time(18)
    assert create(name="Morning", hour_until=time(10)).hour_until == time(10)


@pytest.mark.parametrize(
    "valid_until", [datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)], ids=["before", "same"]
)
def test_the_validity_must_end_after_it_starts(valid_until):
    assert refused_field(valid_from=datetime(2025, 6, 1, tzinfo=UTC), valid_until=valid_until) == "valid_until"


# --- catalogue restrictions -------------------------------------------------------------------


def test_fifty_restrictions_are_accepted():
    offer = create(restrictions=restrictions(25) + restrictions(25, mode="exclude", kind="brand"))

    assert OfferRestriction.objects.filter(offer=offer).count() == 50


def test_fifty_one_restrictions_exceed_the_limit_and_nothing_is_saved():
    with pytest.raises(LimitExceeded) as caught:
        create(restrictions=restrictions(51))

    assert caught.value.code == "LIMIT_EXCEEDED"
    assert caught.value.parameters == [{"name": "restrictions", "limit": 50}]
    assert not Offer.objects.exists()
    assert not OfferRestriction.objects.exists()


@pytest.mark.parametrize(
    ("restriction", "field"),
    [
        ({"mode": "only", "kind": "sku", "value": "A"}, "restrictions.1.mode"),
        ({"kind": "colour", "value": "red"}, "restrictions.1.kind"),
        ({"value": "A"}, "restrictions.1.kind"),
        ({"kind": "sku", "value": "  "}, "restrictions.1.value"),
        ({"kind": "sku"}, "restrictions.1.value"),
    ],
)
def test_a_malformed_restriction_is_refused_by_position(restriction, field):
    assert refused_field(restrictions=[{"kind": "sku", "value": "OK"}, restriction]) == field


# --- venues -----------------------------------------------------------------------------------


def test_venues_of_the_other_mode_are_refused():
    live_venue = VenueFactory(merchant__livemode=True)

    assert refused_field(venues=[str(live_venue.pk)]) == "venues"


def test_unknown_venues_are_refused():
    assert refused_field(venues=["5b0fd8d4-6f0f-4c8a-9a4e-2f0d6a1a0c11"]) == "venues"


# --- updating ---------------------------------------------------------------------------------


def test_restrictions_given_on_update_replace_the_old_ones():
    offer = create(restrictions=restrictions(3))

    offer_update(offer=offer, restrictions=[{"mode": "exclude", "kind": "family", "value": "tobacco"}])

    assert stored_restrictions(offer) == {("exclude", "family", "tobacco")}


def test_restrictions_left_out_of_an_update_are_kept():
    offer = create(restrictions=restrictions(2))

    offer_update(offer=offer, name="Renamed")

    assert stored_restrictions(offer) == {("include", "sku", "SKU0"), ("include", "sku", "SKU1")}
    assert Offer.objects.get(pk=offer.pk).name == "Renamed"


def test_an_empty_list_on_update_removes_every_restriction():
    offer = create(restrictions=restrictions(2))

    offer_update(offer=offer, restrictions=[])

    assert stored_restrictions(offer) == set()


def test_fifty_one_restrictions_on_update_change_nothing():
    offer = create(restrictions=restrictions(2))

    with pytest.raises(LimitExceeded):
        offer_update(offer=offer, name="Renamed", restrictions=restrictions(51))

    assert stored_restrictions(offer) == {("include", "sku", "SKU0"), ("include", "sku", "SKU1")}
    assert Offer.objects.get(pk=offer.pk).name == "Ten off"


def test_an_invalid_update_changes_nothing():
    offer = create(restrictions=restrictions(1))

    with pytest.raises(ValidationError) as caught:
        offer_update(offer=offer, benefit_value=Decimal(0), restrictions=[])

    assert caught.value.parameters[0]["name"] == "benefit_value"
    assert Offer.objects.get(pk=offer.pk).benefit_value == Decimal(10)
    assert stored_restrictions(offer) == {("include", "sku", "SKU0")}


def test_venues_given_on_update_replace_the_old_ones():
    first, second = VenueFactory(), VenueFactory()
    offer = create(venues=[str(first.pk)])

    offer_update(offer=offer, venues=[str(second.pk)])

    assert list(Offer.objects.get(pk=offer.pk).venues.all()) == [second]


def test_venues_of_the_other_mode_are_refused_on_update_and_nothing_changes():
    test_venue = VenueFactory()
    offer = create(venues=[str(test_venue.pk)])
    live_venue = VenueFactory(merchant__livemode=True)

    with pytest.raises(ValidationError) as caught:
        offer_update(offer=offer, name="Renamed", venues=[str(live_venue.pk)])

    assert caught.value.parameters[0]["name"] == "venues"
    saved = Offer.objects.get(pk=offer.pk)
    assert (saved.name, list(saved.venues.all())) == ("Ten off", [test_venue])


def test_a_live_offer_takes_live_venues_only():
    live_venue, test_venue = VenueFactory(merchant__livemode=True), VenueFactory()
    live_offer = OfferFactory(livemode=True)

    offer_update(offer=live_offer, venues=[str(live_venue.pk)])
    with pytest.raises(ValidationError):
        offer_update(offer=live_offer, venues=[str(test_venue.pk)])

    assert list(Offer.objects.get(pk=live_offer.pk).venues.all()) == [live_venue]


def test_an_update_is_validated_like_a_creation():
    offer = create()

    with pytest.raises(ValidationError) as caught:
        offer_update(offer=offer, hour_from=time(12), hour_until=time(11))

    assert caught.value.parameters[0]["name"] == "hour_until"
