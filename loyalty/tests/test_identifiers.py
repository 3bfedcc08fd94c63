"""The normalisers contacts are identified by (core.validators) and the member number they carry."""

import pytest

from core.exceptions import ValidationError
from core.validators import is_valid_member_number, luhn_check_digit, normalize_email, normalize_phone
from loyalty.services import member_number_generate

STORED_PHONE = "+46707234567"


@pytest.mark.parametrize(
    "typed",
    [
        "+46707234567",
        "+46 70-723 45 67",
        "+46 70 723 45 67",
        "+46 (0)70 723 45 67",
        "0046707234567",
        "0046 70 723 45 67",
        "070 723 45 67",
        "070-723 45 67",
        "0707234567",
        "070.723.45.67",
        "(070) 7234567",
        "46707234567",
        "  070 723 45 67  ",
    ],
)
def test_a_phone_written_in_any_usual_format_normalises_to_e164(typed):
    assert normalize_phone(typed) == STORED_PHONE


def test_a_national_number_is_read_in_the_default_region(settings):
    settings.PHONE_DEFAULT_REGION = "GB"

    assert normalize_phone("07400 123456") == "+447400123456"


def test_an_explicit_region_overrides_the_default_region():
    assert normalize_phone("07400 123456", region="GB") == "+447400123456"


def test_a_foreign_number_in_international_form_keeps_its_country():
    assert normalize_phone("+44 7400 123456") == "+447400123456"


@pytest.mark.parametrize("garbage", ["123", "abc", "070 723", "+46 70 723 45 67 89 12", "+999 1234567"])
def test_an_invalid_phone_is_refused_naming_the_field(garbage):
    with pytest.raises(ValidationError) as error:
        normalize_phone(garbage)

    assert error.value.code == "VALIDATION_ERROR"
    assert [parameter["name"] for parameter in error.value.parameters] == ["mobile_phone"]


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_an_empty_phone_is_refused(empty):
    with pytest.raises(ValidationError):
        normalize_phone(empty)


def test_a_phone_error_names_the_field_the_caller_gives():
    with pytest.raises(ValidationError) as error:
        normalize_phone("nope", field="match_key")

    assert error.value.parameters[0]["name"] == "match_key"


def test_an_email_keeps_its_local_part_and_lower_cases_its_domain():
    assert normalize_email("Ana.Svensson@Example.COM") == "Ana.Svensson@example.com"


def test_an_email_is_stripped_of_surrounding_whitespace():
    assert normalize_email("  ana@example.com \n") == "ana@example.com"


@pytest.mark.parametrize("garbage", ["ana", "ana@", "@example.com", "ana@example", "ana @example.com", "a@@b.se"])
def test_an_invalid_email_is_refused_naming_the_field(garbage):
    with pytest.raises(ValidationError) as error:
        normalize_email(garbage)

    assert [parameter["name"] for parameter in error.value.parameters] == ["email"]


@pytest.mark.parametrize("empty", ["", "  ", None])
def test_an_empty_email_is_refused(empty):
    with pytest.raises(ValidationError):
        normalize_email(empty)


def test_an_email_error_names_the_field_the_caller_gives():
    with pytest.raises(ValidationError) as error:
        normalize_email("nope", field="match_key")

    assert error.value.parameters[0]["name"] == "match_key"


@pytest.mark.parametrize(
    ("body", "check_digit"),
    [("7992739871", "3"), ("4111111111111111"[:-1], "1"), ("0", "0"), ("1", "8"), ("18", "2")],
)
def test_the_luhn_check_digit_matches_known_values(body, check_digit):
    assert luhn_check_digit(body) == check_digit


def test_a_member_number_with_its_luhn_check_digit_is_valid():
    assert is_valid_member_number("79927398713")


@pytest.mark.parametrize("wrong_digit", ["0", "1", "2", "4", "5", "6", "7", "8", "9"])
def test_a_member_number_with_any_other_check_digit_is_invalid(wrong_digit):
    assert not is_valid_member_number("7992739871" + wrong_digit)


@pytest.mark.parametrize("malformed", ["", "7", "7992739871a", "79927 398713", "-79927398713"])
def test_a_member_number_that_is_not_all_digits_or_too_short_is_invalid(malformed):
    assert not is_valid_member_number(malformed)


def test_a_swapped_pair_of_digits_is_caught_by_the_check_digit():
    assert not is_valid_member_number("79927398173")


def test_generated_member_numbers_have_twelve_digits_the_prefix_and_a_valid_check_digit(settings):
    settings.MEMBER_NUMBER_PREFIX = "7"
    numbers = {member_number_generate() for _ in range(200)}

    assert len(numbers) == 200
    for number in numbers:
        assert len(number) == 12
        assert number.isdigit()
        assert number.startswith("7")
        assert is_valid_member_number(number)


def test_a_longer_prefix_still_gives_twelve_digit_member_numbers(settings):
    settings.MEMBER_NUMBER_PREFIX = "42"

    number = member_number_generate()

    assert len(number) == 12
    assert number.startswith("42")
    assert is_valid_member_number(number)
