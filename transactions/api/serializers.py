"""Parsing of the purchase and return payloads: the envelope with DRF serializers, the lines,
discounts and payments in plain Python (a 1,000-line purchase must be accepted in well under
250 ms), every error naming its field."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from rest_framework import serializers

from core.api.serializers import ContactReferenceSerializer, StrictCharField, StrictSerializer
from core.baskets import MAX_BASKET_LINES, parse_money, parse_quantity
from core.exceptions import LimitExceeded, ValidationError
from core.money import check_currency

MAX_DISCOUNTS = 100
MAX_PAYMENTS = 100
MAX_CUSTOM_ELEMENTS = 1000
CHANNELS = ("pos", "web", "mobile", "social")


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


class SpendSerializer(StrictSerializer):
    amount = serializers.DecimalField(
        max_digits=18, decimal_places=4, min_value=0, required=False, allow_null=True, coerce_to_string=False
    )
    otp = StrictCharField(required=False, allow_blank=True, max_length=12)
    reduction = serializers.ChoiceField(choices=["front_end", "back_end"])


class PurchaseEnvelopeSerializer(StrictSerializer):
    id = StrictCharField(max_length=100)
    contact = ContactReferenceSerializer(required=False, allow_null=True)
    occurred_at = serializers.DateTimeField()
    currency = StrictCharField(max_length=3)
    venue = serializers.JSONField(
        required=False, allow_null=True, help_text='A venue id, or {"merchant_number": "...", "number": "..."}.'
    )
    channel = serializers.ChoiceField(choices=CHANNELS, required=False, default="pos")
    receipt_number = StrictCharField(required=False, allow_blank=True, max_length=64)
    items = serializers.JSONField(help_text="At most 1,000 lines: sku, quantity, unit_price, amount, tax_included.")
    discounts = serializers.JSONField(required=False, help_text="At most 100: amount, issued_offer_id?, description?")
    payments = serializers.JSONField(required=False, help_text="At most 100: method, amount.")
    tax_total = serializers.DecimalField(
        max_digits=18, decimal_places=4, min_value=0, required=False, coerce_to_string=False
    )
    spend = SpendSerializer(required=False, allow_null=True)
    custom = serializers.JSONField(required=False, help_text="Free data, at most 1,000 elements.")


def count_elements(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(count_elements(item) for item in value.values())
    if isinstance(value, list):
        return len(value) + sum(count_elements(item) for item in value)
    return 0


def parse_discounts(raw: Any, currency: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError.for_field("discounts", "Must be a list.")
    if len(raw) > MAX_DISCOUNTS:
        raise LimitExceeded(
            f"At most {MAX_DISCOUNTS} discounts.",
            parameters=[LimitExceeded.parameter("discounts", limit=MAX_DISCOUNTS)],
        )
    discounts = []
    for index, discount in enumerate(raw):
        where = f"discounts.{index}"
        if not isinstance(discount, dict) or "amount" not in discount:
            raise ValidationError.for_field(f"{where}.amount", "Each discount needs an amount.")
        unknown = set(discount) - {"amount", "issued_offer_id", "description"}
        if unknown:
            raise ValidationError.for_field(f"{where}.{sorted(unknown)[0]}", "Unknown field.")
        issued_offer_id = discount.get("issued_offer_id")
        if issued_offer_id is not None:
            try:
                issued_offer_id = str(uuid.UUID(str(issued_offer_id)))
            except ValueError:
                raise ValidationError.for_field(f"{where}.issued_offer_id", "Not an issued offer id.") from None
        discounts.append(
            {
                "amount": parse_money(discount["amount"], currency=currency, field=f"{where}.amount"),
                "issued_offer_id": issued_offer_id,
                "description": str(discount.get("description") or "")[:200],
            }
        )
    return discounts


def parse_payments(raw: Any, currency: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError.for_field("payments", "Must be a list.")
    if len(raw) > MAX_PAYMENTS:
        raise LimitExceeded(
            f"At most {MAX_PAYMENTS} payments.", parameters=[LimitExceeded.parameter("payments", limit=MAX_PAYMENTS)]
        )
    payments = []
    for index, payment in enumerate(raw):
        if not isinstance(payment, dict) or "amount" not in payment:
            raise ValidationError.for_field(f"payments.{index}.amount", "Each payment needs an amount.")
        amount = parse_money(payment["amount"], currency=currency, field=f"payments.{index}.amount")
        payments.append({"method": str(payment.get("method") or "")[:32], "amount": amount})
    return payments


def parse_custom(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError.for_field("custom", "Must be an object.")
    if count_elements(raw) > MAX_CUSTOM_ELEMENTS:
        raise LimitExceeded(
            f"At most {MAX_CUSTOM_ELEMENTS} custom elements.",
            parameters=[LimitExceeded.parameter("custom", limit=MAX_CUSTOM_ELEMENTS)],
        )
    return raw


def parse_returned_items(raw: Any) -> list[dict[str, Any]]:
    """Returned lines: `sku`, `quantity` (default 1) and optionally the original `line` number."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError.for_field("items", "Must be a list.")
    if len(raw) > MAX_BASKET_LINES:
        raise LimitExceeded(
            f"At most {MAX_BASKET_LINES} lines.", parameters=[LimitExceeded.parameter("items", limit=MAX_BASKET_LINES)]
        )
    items = []
    for index, item in enumerate(raw):
        where = f"items.{index}"
        if not isinstance(item, dict) or not isinstance(item.get("sku"), str) or not item["sku"].strip():
            raise ValidationError.for_field(f"{where}.sku", "Each returned line needs its SKU.")
        line = item.get("line")
        if line is not None and (not isinstance(line, int) or isinstance(line, bool) or line < 0):
            raise ValidationError.for_field(f"{where}.line", "A line number of the original purchase.")
        quantity = parse_quantity(item.get("quantity", 1), f"{where}.quantity")
        items.append({"sku": item["sku"].strip(), "quantity": quantity, "line": line})
    return items


def currency_of(data: dict) -> str:
    return check_currency(data.get("currency") or "")


class VoidInputSerializer(StrictSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=500)


class ReturnEnvelopeSerializer(StrictSerializer):
    id = StrictCharField(max_length=100)
    transaction_id = StrictCharField(
        required=False,
        allow_null=True,
        max_length=100,
        help_text="The original purchase's id; omit for an ad hoc return.",
    )
    contact = ContactReferenceSerializer(required=False, allow_null=True, help_text="For an ad hoc return.")
    occurred_at = serializers.DateTimeField(required=False)
    currency = StrictCharField(max_length=3, required=False)
    items = serializers.JSONField(required=False, allow_null=True, help_text="Returned lines: sku, quantity, line?")
    amount = serializers.DecimalField(
        max_digits=18,
        decimal_places=4,
        min_value=0,
        required=False,
        coerce_to_string=False,
        help_text="Ad hoc: the total returned.",
    )


class ProductSyncInputSerializer(StrictSerializer):
    products = serializers.JSONField(help_text="Up to 10,000 rows: sku, name?, family?, brand?")


class ClaimInputSerializer(StrictSerializer):
    contact = ContactReferenceSerializer()
    code = StrictCharField(
        max_length=200,
        help_text="The scanned payload: QR `receipt;merchant;venue;amount_x100` or barcode "
        "`merchant;receipt;amount_x100;venue`.",
    )
