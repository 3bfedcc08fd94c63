"""Money at the edges: amounts are stored as integers in the currency's minor unit (cents, öre),
which makes sums exact and lets the database check signs; they cross the API as decimal strings.

Points are plain integers and never pass through here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from core.exceptions import ValidationError

# ISO 4217 codes with their minor-unit exponent (the number of decimals).
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2,
    "AUD": 2,
    "BGN": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CLP": 0,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EGP": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MAD": 2,
    "MXN": 2,
    "MYR": 2,
    "NOK": 2,
    "NZD": 2,
    "OMR": 3,
    "PHP": 2,
    "PLN": 2,
    "QAR": 2,
    "RON": 2,
    "RSD": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TND": 3,
    "TRY": 2,
    "TWD": 2,
    "UAH": 2,
    "USD": 2,
    "VND": 0,
    "ZAR": 2,
}


def check_currency(currency: str, *, field: str = "currency") -> str:
    """The ISO 4217 code in upper case, or ValidationError naming `field`."""
    code = (currency or "").strip().upper()
    if code not in CURRENCY_EXPONENTS:
        raise ValidationError.for_field(field, f"'{currency}' is not a supported ISO 4217 currency code.")
    return code


def to_minor(amount: Decimal | str | int, currency: str, *, field: str = "amount") -> int:
    """A decimal amount → integer minor units. More decimals than the currency has is an error
    (12.345 EUR is not an amount anyone can pay), not a silent rounding."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        raise ValidationError.for_field(field, f"'{amount}' is not a decimal amount.") from None
    if not value.is_finite():
        raise ValidationError.for_field(field, f"'{amount}' is not a decimal amount.")
    exponent = CURRENCY_EXPONENTS[check_currency(currency)]
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ValidationError.for_field(field, f"{currency} amounts have at most {exponent} decimals.")
    return int(scaled)


def format_minor(minor: int, currency: str) -> str:
    """Minor units as the API writes money: a decimal string with the currency's decimals.
    (Integer arithmetic: responses can carry thousands of amounts.)"""
    exponent = CURRENCY_EXPONENTS[currency]
    if exponent == 0:
        return str(minor)
    whole, fraction = divmod(abs(minor), 10**exponent)
    return f"{'-' if minor < 0 else ''}{whole}.{fraction:0{exponent}d}"
