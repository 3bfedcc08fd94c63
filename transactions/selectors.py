"""Reads of the transactions app: a stored purchase's lines as the engines see them, and receipt
codes (the QR and barcode payloads a till prints on the receipt of an anonymous purchase, so the
contact can claim it later)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from django.db import connection

from catalogue.models import Brand, Product, ProductFamily
from core.baskets import BasketLine
from transactions.models import Claim, Transaction, TransactionItem

SEPARATOR = ";"


@dataclass(frozen=True)
class ReceiptCode:
    """What a receipt code carries: the numbers printed on the receipt and its net amount in
    minor units (`amount_x100` of the contract: cents for 2-decimal currencies)."""

    merchant_number: str
    venue_number: str
    receipt_number: str
    amount: int
    code_format: str = Claim.Format.QR

    @property
    def qr(self) -> str:
        """`receipt_number;merchant_number;venue_number;amount_x100`"""
        return SEPARATOR.join((self.receipt_number, self.merchant_number, self.venue_number, str(self.amount)))

    @property
    def barcode(self) -> str:
        """`merchant_number;receipt_number;amount_x100;venue_number`"""
        return SEPARATOR.join((self.merchant_number, self.receipt_number, str(self.amount), self.venue_number))

    def as_dict(self) -> dict[str, str]:
        return {"qr": self.qr, "barcode": self.barcode}


def transaction_receipt_code(txn: Transaction) -> ReceiptCode | None:
    """The receipt code of a purchase sent without any contact (neither a contact nor an
    identifier waiting for one) that names a venue and a receipt number; None otherwise."""
    if txn.contact_id is not None or txn.match_key or txn.venue_id is None or not txn.receipt_number:
        return None
    venue = txn.venue
    return ReceiptCode(
        merchant_number=venue.merchant.number,
        venue_number=venue.number,
        receipt_number=txn.receipt_number,
        amount=txn.net_amount,
    )


class ItemRow(NamedTuple):
    id: int
    sku: str
    family: str
    brand: str
    quantity: Decimal
    amount: int
    discount_allocated: int


_ITEM_COLUMNS = ", ".join(f"item.{name}" for name in ItemRow._fields)
# The lines with what the catalogue knows of their SKUs, in one round trip.
_ITEMS_WITH_CATALOGUE_SQL = (
    f"SELECT {_ITEM_COLUMNS}, product.id IS NOT NULL, family.code, brand.code "
    f"FROM {TransactionItem._meta.db_table} AS item "
    f"LEFT JOIN {Product._meta.db_table} AS product ON product.livemode = %s AND product.sku = item.sku "
    f"LEFT JOIN {ProductFamily._meta.db_table} AS family ON family.id = product.family_id "
    f"LEFT JOIN {Brand._meta.db_table} AS brand ON brand.id = product.brand_id "
    "WHERE item.transaction_id = %s ORDER BY item.line_number"
)


def purchase_items(*, livemode: bool, transaction_id) -> tuple[list[ItemRow], dict | None]:
    """A purchase's lines in order, as rows, and on PostgreSQL (family code, brand code) of each
    of their SKUs the catalogue knows (None elsewhere): processing reads both for every purchase,
    in one plain statement (the ORM spent longer building the lines' query than PostgreSQL took
    to answer it)."""
    if connection.vendor != "postgresql":
        rows = [
            ItemRow(*row)
            for row in TransactionItem.objects.filter(transaction_id=transaction_id)
            .order_by("line_number")
            .values_list(*ItemRow._fields)
        ]
        return rows, None  # the catalogue is read by lines_classified_and_learned
    with connection.cursor() as cursor:
        cursor.execute(_ITEMS_WITH_CATALOGUE_SQL, [livemode, transaction_id])
        fetched = cursor.fetchall()
    split = len(ItemRow._fields)
    return (
        [ItemRow(*row[:split]) for row in fetched],
        {row[1]: (row[split + 1], row[split + 2]) for row in fetched if row[split]},
    )


def item_lines(items) -> list[BasketLine]:
    """A stored purchase's lines as the engines see them: what each line cost after its share of
    order-level discounts (before the catalogue fills in families and brands)."""
    return [
        BasketLine.of(
            sku=item.sku,
            amount=item.amount - item.discount_allocated,
            quantity=item.quantity,
            family=item.family or None,
            brand=item.brand or None,
        )
        for item in items
    ]
