"""Normalisers for the identifiers contacts are found by, and the member-number check digit.

Each returns the canonical stored form or raises core.exceptions.ValidationError naming `field`.
"""

from __future__ import annotations

import re

import phonenumbers
from django.conf import settings
from email_validator import EmailNotValidError, validate_email

from core.exceptions import ValidationError

_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")


def normalize_phone(value: str, *, field: str = "mobile_phone", region: str | None = None) -> str:
    """Any usual way of writing a phone number → E.164 (`+46707234567`).

    Accepts `+46 70-723 45 67`, `0046707234567`, national `070 723 45 67` (default region from
    PHONE_DEFAULT_REGION) and, as tills often send it, the international digits without `+`.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError.for_field(field, "A phone number is required.")
    raw = _PHONE_PUNCTUATION.sub("", value.strip())
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    region = region or settings.PHONE_DEFAULT_REGION
    candidates = [raw]
    if raw.isdigit():
        candidates.append("+" + raw)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise ValidationError.for_field(field, f"'{value}' is not a valid phone number.")


def normalize_email(value: str, *, field: str = "email") -> str:
    """Syntax-checked address with the domain lower-cased; matching is case-insensitive anyway."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError.for_field(field, "An email address is required.")
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise ValidationError.for_field(field, f"'{value}' is not a valid email address: {error}") from None
    return result.normalized


def luhn_check_digit(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def is_valid_member_number(value: str) -> bool:
    return value.isdigit() and len(value) >= 2 and luhn_check_digit(value[:-1]) == value[-1]
