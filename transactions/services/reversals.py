"""Voids and returns: compensating ledger entries, never edits.

A void reverses everything a purchase did (earnings, spends, pay-outs) and reinstates the offers
it redeemed. A return reverses the points of the returned lines in proportion, never more than
was bought in total (a check constraint on the lines' returned quantities backs the Python
check), or, ad hoc, at the base earning rate. Both are idempotent.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.db.models import F
from django.utils import timezone

from core.baskets import BasketLine
from core.exceptions import Conflict, IdempotencyMismatch, NotFound, ValidationError
from core.money import format_minor
from core.services import outbox_emit
from loyalty.models import Account, Contact, LedgerEntry, Payout
from loyalty.selectors.wallets import earning_rules_in_force
from loyalty.services.earning import basket_points
from loyalty.services.ledger import (
    Cause,
    account_get_or_create,
    account_spendable,
    entry_reversed_amount,
    ledger_debit,
    ledger_reverse,
)
from loyalty.services.wallets import payout_settle, program_for
from offers.exceptions import OfferNotAvailable
from offers.models import IssuedOffer
from offers.services.issued import issued_offer_reinstate
from transactions.models import Return, Transaction, TransactionEvent, TransactionItem

Status = Transaction.Status
RETURN_WINDOW = relativedelta(months=12)


def transaction_void(*, transaction: Transaction, reason: str = "") -> Transaction:
    """Cancel a purchase: every award and spend is reversed with compensating entries, pending
    pay-outs fail (money back), redeemed offers are reinstated, `transaction.voided` is emitted.
    Voiding again is a no-op. If reversing points would go below zero, the program's
    negative_points_policy decides (debt or recorded shortfall)."""
    with db_transaction.atomic():
        txn = Transaction.objects.select_for_update(of=("self",)).get(pk=transaction.pk)
        if txn.status == Status.VOIDED:
            return txn
        policy = program_for(livemode=txn.livemode).negative_points_policy
        for payout in Payout.objects.filter(
            livemode=txn.livemode, source_id=txn.external_id, status=Payout.Status.PENDING
        ):
            payout_settle(payout=payout, paid=False, failure_reason=f"purchase voided: {reason}".strip())
        # Pay-out debits are settled with their pay-out: a pending one was just failed (money
        # back), a paid one reached the contact's card and must not come back to the wallet too.
        entries = (
            LedgerEntry.objects.filter(
                livemode=txn.livemode, source_type=LedgerEntry.Source.TRANSACTION, source_id=txn.external_id
            )
            .exclude(kind__in=[LedgerEntry.Kind.REVERSE, LedgerEntry.Kind.PAYOUT])
            .order_by("id")
        )
        for entry in entries:
            if abs(entry.amount) - entry_reversed_amount(entry) > 0:  # returns may have taken part already
                ledger_reverse(
                    original=entry,
                    cause=Cause(LedgerEntry.Source.TRANSACTION, txn.external_id, f"void:{entry.pk}", reason=reason),
                    negative_policy=policy,
                )
        for issued_offer_id in txn.discounts.exclude(issued_offer=None).values_list("issued_offer_id", flat=True):
            if IssuedOffer.objects.filter(
                pk=issued_offer_id, status=IssuedOffer.Status.REDEEMED, redeemed_transaction_id=txn.external_id
            ).exists():
                try:
                    issued_offer_reinstate(issued_offer_id=issued_offer_id, actor="void", reason=reason)
                except OfferNotAvailable:
                    pass  # the offer has ended meanwhile: nothing to give back
        Transaction.objects.filter(pk=txn.pk).update(status=Status.VOIDED)
        txn.status = Status.VOIDED
        TransactionEvent.objects.create(transaction=txn, kind="voided", detail=reason)
        outbox_emit(
            livemode=txn.livemode,
            event_type="transaction.voided",
            payload={
                "id": txn.external_id,
                "transaction_id": str(txn.pk),
                "contact_id": str(txn.contact_id) if txn.contact_id else None,
                "reason": reason,
            },
        )
    return txn


def _lines_to_return(txn: Transaction, items: list[dict[str, Any]]) -> list[tuple[TransactionItem, Decimal]]:
    """Match returned lines to the original's lines (by line number, or by SKU in line order)."""
    originals = list(txn.items.all())
    picked = []
    for index, item in enumerate(items):
        quantity = item["quantity"]
        if "line" in item and item["line"] is not None:
            match = next((line for line in originals if line.line_number == item["line"]), None)
            if match is None or match.sku != item["sku"]:
                raise ValidationError.for_field(f"items.{index}.line", "No such line with that SKU in the purchase.")
            picked.append((match, quantity))
            continue
        left = quantity
        for line in originals:
            if line.sku != item["sku"] or left <= 0:
                continue
            available = line.quantity - line.returned_quantity - sum(q for l2, q in picked if l2.pk == line.pk)
            take = min(available, left)
            if take > 0:
                picked.append((line, take))
                left -= take
        if left > 0:
            raise ValidationError.for_field(
                f"items.{index}.quantity", f"More of {item['sku']} is returned than was bought (or already returned)."
            )
    return picked


def return_process(
    *,
    livemode: bool,
    external_id: str,
    fingerprint: str,
    occurred_at: datetime,
    currency: str,
    original_external_id: str | None = None,
    items: list[dict[str, Any]] | None = None,
    amount: int | None = None,
    contact: Contact | None = None,
) -> tuple[Return, bool]:
    """Record a return and reverse its points; (return, replayed?). Against an original purchase
    the returned lines' points go back in proportion; ad hoc (a total amount, no original) the
    points the base rate gives for it. Purchases older than 12 months keep their points.
    Raises NotFound, ValidationError (more than bought), IdempotencyMismatch, Conflict."""
    existing = Return.objects.filter(livemode=livemode, external_id=external_id).first()
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise IdempotencyMismatch(parameters=[IdempotencyMismatch.parameter("id", value=external_id)])
        return existing, True
    with db_transaction.atomic():
        original = None
        if original_external_id:
            original = (
                Transaction.objects.select_for_update(of=("self",))
                .select_related("contact")
                .filter(livemode=livemode, external_id=original_external_id)
                .first()
            )
            if original is None:
                raise NotFound(
                    "No such original transaction.",
                    parameters=[NotFound.parameter("transaction_id", value=original_external_id)],
                )
            if original.status == Status.VOIDED:
                raise Conflict(
                    "The original transaction was voided.",
                    parameters=[Conflict.parameter("transaction_id", value=original_external_id)],
                )
            contact = original.contact
            currency = original.currency
        try:
            with db_transaction.atomic():
                record = Return.objects.create(
                    livemode=livemode,
                    external_id=external_id,
                    fingerprint=fingerprint,
                    original=original,
                    contact=contact,
                    occurred_at=occurred_at,
                    currency=currency,
                    amount=amount or 0,
                    items=[{**item, "quantity": str(item["quantity"])} for item in items or []],
                )
        except IntegrityError:
            existing = Return.objects.get(livemode=livemode, external_id=external_id)
            if existing.fingerprint != fingerprint:
                raise IdempotencyMismatch(parameters=[IdempotencyMismatch.parameter("id", value=external_id)]) from None
            return existing, True
        if original is not None:
            points, returned_amount = _return_against(original, items or [], record)
        else:
            points, returned_amount = _return_ad_hoc(livemode, contact, currency, amount or 0, record)
        record.amount = returned_amount
        record.points_reversed = points
        record.response = {
            "id": external_id,
            "return_id": str(record.pk),
            "transaction_id": original_external_id,
            "amount": format_minor(returned_amount, currency),
            "currency": currency,
            "points_reversed": points,
            "status": "processed",
        }
        Return.objects.filter(pk=record.pk).update(
            amount=returned_amount, points_reversed=points, response=record.response
        )
        outbox_emit(livemode=livemode, event_type="return.processed", payload=record.response)
    return record, False


def _return_against(original: Transaction, items: list[dict[str, Any]], record: Return) -> tuple[int, int]:
    if not items:
        raise ValidationError.for_field("items", "A return against a purchase lists the returned lines.")
    picked = _lines_to_return(original, items)
    returned_amount, points = 0, 0
    returned_before = {line.pk: line.returned_quantity for line, _ in picked}  # read under the original's lock
    for line, quantity in picked:
        # Shares of the cumulative quantity, not of this return alone: returning every unit, in
        # any number of returns, gives back exactly the line's amount and points.
        before = returned_before[line.pk]
        after = returned_before[line.pk] = before + quantity
        line_amount = _share(line.amount, after, line.quantity) - _share(line.amount, before, line.quantity)
        line_points = _share(line.points_earned, after, line.quantity) - _share(
            line.points_earned, before, line.quantity
        )
        # Guarded: concurrent returns of one line can never exceed what was bought.
        updated = TransactionItem.objects.filter(pk=line.pk, returned_quantity__lte=line.quantity - quantity).update(
            returned_quantity=F("returned_quantity") + quantity,
            returned_amount=F("returned_amount") + line_amount,
        )
        if not updated:
            raise ValidationError.for_field("items", f"More of {line.sku} is returned than was bought.")
        returned_amount += line_amount
        points += line_points
    too_old = original.occurred_at < timezone.now() - RETURN_WINDOW
    if too_old or points <= 0 or original.contact_id is None:
        return 0, returned_amount
    earn = LedgerEntry.objects.filter(livemode=original.livemode, idempotency_key=f"txn:{original.pk}:earn").first()
    if earn is None:
        return 0, returned_amount
    policy = program_for(livemode=original.livemode).negative_points_policy
    points = min(points, earn.amount - entry_reversed_amount(earn))
    if points > 0:
        ledger_reverse(
            original=earn,
            amount=points,
            negative_policy=policy,
            cause=Cause(LedgerEntry.Source.RETURN, record.external_id, f"return:{record.pk}"),
        )
    return points, returned_amount


def _share(total: int, part: Decimal, whole: Decimal) -> int:
    return int((Decimal(total) * part / whole).to_integral_value(rounding=ROUND_HALF_UP))


def _return_ad_hoc(livemode: bool, contact: Contact | None, currency: str, amount: int, record: Return):
    if contact is None:
        raise ValidationError.for_field("contact", "An ad hoc return needs the contact (or the original purchase).")
    if amount <= 0:
        raise ValidationError.for_field("amount", "An ad hoc return needs a positive amount.")
    rules = earning_rules_in_force(livemode=livemode, currency=currency, at=record.occurred_at, tier=None)
    points = basket_points(lines=[BasketLine(sku="", amount=amount)], rules=rules, currency=currency).points
    if points <= 0:
        return 0, amount
    # Without an original there is no earning to reverse: take what the contact can give back
    # (never below zero; the rest of the points were spent).
    account = account_get_or_create(contact=contact, kind=Account.Kind.POINTS)
    take = min(points, account_spendable(account=account))
    if take > 0:
        ledger_debit(
            account=account,
            amount=take,
            kind=LedgerEntry.Kind.REVERSE,
            cause=Cause(LedgerEntry.Source.RETURN, record.external_id, f"return:{record.pk}"),
        )
    return take, amount
