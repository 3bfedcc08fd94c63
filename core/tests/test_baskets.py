"""The fast basket parser: valid lines, money with each currency's decimals, and errors that name
the exact field in the contract's shape."""

import dataclasses
from decimal import Decimal

import pytest

from core.baskets import MAX_BASKET_LINES, BasketLine, parse_basket_lines, with_classification
from core.exceptions import LimitExceeded, ValidationError


def error_fields(error) -> list[str]:
    return [parameter["name"] for parameter in error.parameters]


def rejected_field(items, *, currency="EUR", **kwargs) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_basket_lines(items, currency=currency, **kwargs)
    assert caught.value.code == "VALIDATION_ERROR"
    [name] = error_fields(caught.value)
    return name


GOOD_LINE = {"sku": "MILK", "quantity": 1, "amount": "1.00"}


# --- valid lines ------------------------------------------------------------------------------


def test_a_line_with_an_amount_is_kept_in_minor_units():
    [line] = parse_basket_lines(
        [{"sku": "MILK", "quantity": 2, "unit_price": "1.50", "amount": "2.80", "family": "dairy", "brand": "acme"}],
        currency="EUR",
    )

    assert line == BasketLine(
        sku="MILK", amount=280, quantity=Decimal(2), unit_price=150, family="dairy", brand="acme", tax_included=0
    )


def test_the_amount_is_unit_price_times_quantity_when_not_given():
    [whole, weighed] = parse_basket_lines(
        [
            {"sku": "MILK", "quantity": 3, "unit_price": "1.50"},
            {"sku": "CHEESE", "quantity": "0.25", "unit_price": "12.00"},
        ],
        currency="EUR",
    )

    assert (whole.amount, whole.unit_price, whole.quantity) == (450, 150, Decimal(3))
    assert (weighed.amount, weighed.unit_price, weighed.quantity) == (300, 1200, Decimal("0.25"))


def test_the_quantity_is_one_when_not_given():
    [line] = parse_basket_lines([{"sku": "MILK", "amount": "1.00"}], currency="EUR")

    assert line.quantity == Decimal(1)


@pytest.mark.parametrize("quantity", [2, "2", 2.0, "2.000"])
def test_a_quantity_may_be_a_number_or_a_decimal_string(quantity):
    [line] = parse_basket_lines([{"sku": "MILK", "quantity": quantity, "amount": "1.00"}], currency="EUR")

    assert line.quantity == Decimal(2)


@pytest.mark.parametrize(
    ("currency", "amount", "minor_units"),
    [
        ("EUR", "12.50", 1250),
        ("EUR", "12.5", 1250),
        ("EUR", "12", 1200),
        ("EUR", 12, 1200),
        ("JPY", "1250", 1250),
        ("JPY", 1250, 1250),
        ("BHD", "1.255", 1255),
        ("eur", "0.01", 1),
    ],
)
def test_money_is_read_with_the_currencys_decimals(currency, amount, minor_units):
    [line] = parse_basket_lines([{"sku": "A", "amount": amount}], currency=currency)

    assert line.amount == minor_units


@pytest.mark.parametrize(("currency", "amount"), [("JPY", "12.5"), ("JPY", "1.0000001"), ("EUR", "12.505")])
def test_more_decimals_than_the_currency_has_are_refused(currency, amount):
    assert rejected_field([{"sku": "A", "amount": amount}], currency=currency) == "items.0.amount"


def test_text_fields_are_trimmed_and_empty_ones_dropped():
    [line] = parse_basket_lines([{"sku": "  MILK ", "amount": "1", "family": " dairy ", "brand": ""}], currency="EUR")

    assert (line.sku, line.family, line.brand) == ("MILK", "dairy", None)


def test_tax_included_is_kept_in_minor_units():
    [line] = parse_basket_lines([{"sku": "A", "amount": "12.00", "tax_included": "2.40"}], currency="EUR")

    assert line.tax_included == 240


def test_an_empty_basket_has_no_lines():
    assert parse_basket_lines([], currency="EUR") == []


def test_a_missing_basket_is_empty_only_when_not_required():
    assert parse_basket_lines(None, currency="EUR", required=False) == []
    assert rejected_field(None) == "items"


def test_exactly_a_thousand_lines_are_accepted():
    lines = parse_basket_lines([GOOD_LINE] * MAX_BASKET_LINES, currency="EUR")

    assert len(lines) == 1000


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["amount", "unit_price", "tax_included"])
def test_a_negative_amount_is_refused_naming_the_line_and_field(field):
    items = [GOOD_LINE, GOOD_LINE, {"sku": "C", "amount": "1.00", field: "-0.01"}]

    assert rejected_field(items) == f"items.2.{field}"


@pytest.mark.parametrize("quantity", [0, "0", -1, "-0.5", "abc", "", None, [], {}, "NaN", "Infinity", float("inf")])
def test_a_quantity_that_is_not_a_positive_number_is_refused(quantity):
    items = [GOOD_LINE, {"sku": "B", "quantity": quantity, "amount": "1.00"}]

    assert rejected_field(items) == "items.1.quantity"


@pytest.mark.parametrize("field", ["quantity", "amount", "unit_price"])
@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(field, value):
    assert rejected_field([{"sku": "A", "amount": "1.00", field: value}]) == f"items.0.{field}"


@pytest.mark.parametrize("amount", ["ten", "", "1,00", "NaN", "Infinity", "²", "1.²", "-", ".", 1.5, [], {}])
def test_an_amount_that_is_not_a_decimal_is_refused(amount):
    assert rejected_field([{"sku": "A", "amount": amount}]) == "items.0.amount"


def test_an_unknown_line_field_is_refused_by_name():
    assert rejected_field([GOOD_LINE, {**GOOD_LINE, "discount": "0.50"}]) == "items.1.discount"


def test_a_line_needs_an_amount_or_a_unit_price():
    assert rejected_field([{"sku": "A", "quantity": 2}]) == "items.0.amount"


@pytest.mark.parametrize("sku", [None, "", "   ", 123, "X" * 65])
def test_a_line_needs_a_short_text_sku(sku):
    assert rejected_field([{"sku": sku, "amount": "1.00"}]) == "items.0.sku"


@pytest.mark.parametrize(("field", "text"), [("sku", "A\x00B"), ("family", "\x00"), ("brand", "br\ud800and")])
def test_text_postgresql_cannot_store_is_refused_naming_the_field(field, text):
    """A null character or a lone surrogate would fail in the database (a 500): it is the
    caller's error, named."""
    assert rejected_field([{"sku": "A", "amount": "1.00", field: text}]) == f"items.0.{field}"


def test_other_unicode_text_is_kept():
    (line,) = parse_basket_lines([{"sku": "Å-é-☃", "amount": "1.00", "brand": 'q"uo\\te'}], currency="EUR")
    assert (line.sku, line.brand) == ("Å-é-☃", 'q"uo\\te')


@pytest.mark.parametrize("item", ["MILK", 3, ["MILK"], None])
def test_each_line_must_be_an_object(item):
    assert rejected_field([GOOD_LINE, item]) == "items.1"


@pytest.mark.parametrize("items", [{"sku": "A", "amount": "1"}, "MILK", 3, ("A",)])
def test_the_lines_must_be_a_list(items):
    assert rejected_field(items) == "items"


def test_more_than_a_thousand_lines_exceed_the_limit():
    with pytest.raises(LimitExceeded) as caught:
        parse_basket_lines([GOOD_LINE] * (MAX_BASKET_LINES + 1), currency="EUR")

    assert caught.value.code == "LIMIT_EXCEEDED"
    assert caught.value.parameters == [{"name": "items", "limit": 1000}]


def test_errors_name_the_field_under_the_given_prefix():
    assert rejected_field([{"sku": "A", "amount": "-1"}], field="basket.items") == "basket.items.0.amount"
    with pytest.raises(LimitExceeded) as caught:
        parse_basket_lines([GOOD_LINE] * 1001, currency="EUR", field="basket.items")
    assert error_fields(caught.value) == ["basket.items"]


def test_an_unknown_currency_is_refused():
    assert rejected_field([GOOD_LINE], currency="XYZ") == "currency"


@pytest.mark.parametrize("field", ["amount", "unit_price", "tax_included"])
@pytest.mark.parametrize("amount", ["1e999999", "1e1000000", "1e20", "10000000000000", "9" * 5000, 10**13])
def test_an_absurdly_large_amount_is_refused_rather_than_crashing(field, amount):
    item = {"sku": "A", "amount": "1.00", field: amount}

    assert rejected_field([item]) == f"items.0.{field}"


@pytest.mark.parametrize("quantity", ["1e999999", "1e-999999", "10000001", "0.0000001"])
def test_an_absurd_quantity_is_refused_rather_than_crashing(quantity):
    assert rejected_field([{"sku": "A", "quantity": quantity, "unit_price": "1.00"}]) == "items.0.quantity"


def test_the_largest_line_amount_is_still_accepted():
    [line] = parse_basket_lines(
        [{"sku": "A", "amount": "9999999999999.99", "unit_price": 999999999999}], currency="EUR"
    )

    assert (line.amount, line.unit_price) == (10**15 - 1, 99999999999900)


def test_a_unit_price_times_quantity_too_large_for_a_line_is_refused():
    assert rejected_field([{"sku": "A", "quantity": "1000000", "unit_price": "9999999999.99"}]) == "items.0.amount"


# --- classification ---------------------------------------------------------------------------


def test_classification_fills_only_what_the_line_does_not_say():
    lines = [BasketLine(sku="A", amount=1, family="given"), BasketLine(sku="B", amount=1)]

    classified = with_classification(lines, [{"family": "catalogue", "brand": "acme"}, {}])

    assert [(line.family, line.brand) for line in classified] == [("given", "acme"), (None, None)]


@pytest.mark.parametrize(
    "values",
    [
        ("A", 250),
        ("B", 999, Decimal("1.5"), 666, "wine", "acme", 12),
        ("C", 0, Decimal(0), None, None, "acme", 0),
    ],
)
def test_the_fast_constructor_builds_the_same_frozen_line(values):
    fast, plain = BasketLine.of(*values), BasketLine(*values)
    # `of` lists the fields again: a field added to the class and not to it fails here.
    assert set(vars(fast)) == {field.name for field in dataclasses.fields(BasketLine)}
    assert fast == plain
    assert hash(fast) == hash(plain)
    assert repr(fast) == repr(plain)
    assert dataclasses.asdict(fast) == dataclasses.asdict(plain)
    assert dataclasses.replace(fast, brand="other").brand == "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.amount = 1
