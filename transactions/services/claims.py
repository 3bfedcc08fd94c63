"""Claims: a contact scans the QR code or barcode printed on a receipt and is awarded the
purchase (CRM.COM's "Contact Reclaim Purchases" and "Contact Self-Service Purchases" flows).

Reading the payload. Both formats are four `;`-separated fields; the amount (`amount_x100`,
the net amount in minor units) is the 4th field of a QR payload
(`receipt;merchant;venue;amount`) and the 3rd of a barcode payload
(`merchant;receipt;amount;venue`). A reading is possible when its amount field is all digits;
it *matches* when its merchant number and venue number name a venue of that merchant in this
mode. The first rule that decides wins:
1. exactly one possible reading matches → that one;
2. both match → the one that names a stored purchase (merchant, venue and receipt number),
   else the QR reading;
3. none matches → NotFound naming the merchant or venue number of the QR reading (of the
   barcode reading when only that one is possible).

Awarding.
- Reclaim: a stored purchase without contact (status `anonymous`) with the same merchant,
  venue, receipt number and net amount is given to the contact and queued again; normal
  processing awards it as of its `occurred_at`. Its claim window counts from `occurred_at`.
- Self-service: no stored purchase has that merchant, venue and receipt number. If the program
  allows it, a purchase is recorded from the payload (one line, sku `RECEIPT`, the amount, in
  the program's currency) and processed normally: the base earning rate. The payload carries no
  date, so the purchase occurs at the claim time (and is always within the window).
Never a spend (the vendor flows award only).

Rules: a receipt is claimed once (unique per mode on merchant, venue and receipt number:
ALREADY_CLAIMED); at most `Program.claims_per_day` claims per contact in any 24 hours
(LIMIT_EXCEEDED); a stored purchase with another amount is AMOUNT_MISMATCH.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalogue.models import Merchant, Venue
from core.exceptions import Conflict, LimitExceeded, NotFound, ValidationError
from loyalty.models import Contact
from loyalty.services.wallets import program_for
from transactions.models import Claim, Transaction, TransactionEvent, TransactionItem
from transactions.selectors import SEPARATOR, ReceiptCode
from transactions.services.intake import transaction_enqueue

Status = Transaction.Status
SELF_SERVICE_SKU = "RECEIPT"
CLAIM_CHANNEL = "claim"
MAX_CODE_LENGTH = 200
_FIELD_LIMITS = {"merchant_number": 32, "venue_number": 32, "receipt_number": 64}


class AlreadyClaimed(Conflict):
    code = "ALREADY_CLAIMED"
    default_message = "This receipt was already claimed."


class AmountMismatch(Conflict):
    code = "AMOUNT_MISMATCH"
    default_message = "The amount of the code differs from the stored purchase's."


class ClaimWindowClosed(Conflict):
    code = "CLAIM_WINDOW_CLOSED"
    default_message = "The purchase is too old to be claimed."


class NotClaimable(Conflict):
    code = "NOT_CLAIMABLE"
    default_message = "The stored purchase cannot be claimed."


class SelfServiceClaimsDisabled(Conflict):
    code = "SELF_SERVICE_CLAIMS_DISABLED"
    default_message = "Receipts that were not sent by the till cannot be claimed in this program."


class ClaimLimitExceeded(LimitExceeded):
    kind = "conflict"  # a state of the contact's recent claims, not a malformed request: 409


def _invalid_code(message: str, code: str) -> ValidationError:
    return ValidationError.for_field("code", message, value=code)


def receipt_code_readings(*, code: str) -> list[ReceiptCode]:
    """The possible readings of a scanned payload (QR first), by the position of the amount.
    Raises ValidationError naming `code` when the payload is neither format."""
    if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH:
        raise _invalid_code(f"A receipt code is a string of at most {MAX_CODE_LENGTH} characters.", str(code)[:200])
    parts = [part.strip() for part in code.strip().split(SEPARATOR)]
    if len(parts) != 4 or not all(parts):
        raise _invalid_code("A receipt code has four non-empty fields separated by ';'.", code)
    candidates = []
    if parts[3].isdigit():
        receipt, merchant, venue, amount = parts
        candidates.append(ReceiptCode(merchant, venue, receipt, int(amount), Claim.Format.QR))
    if parts[2].isdigit():
        merchant, receipt, amount, venue = parts
        candidates.append(ReceiptCode(merchant, venue, receipt, int(amount), Claim.Format.BARCODE))
    if not candidates:
        raise _invalid_code("No amount (minor units, digits only) in the QR or the barcode position.", code)
    for candidate in candidates:
        for name, limit in _FIELD_LIMITS.items():
            if len(getattr(candidate, name)) > limit:
                raise _invalid_code(f"The {name.replace('_', ' ')} is longer than {limit} characters.", code)
    return candidates


def receipt_code_resolve(*, livemode: bool, code: str) -> tuple[ReceiptCode, Venue]:
    """The reading of a scanned payload and the venue it names (rules in the module docstring).
    Raises ValidationError (`code`), NotFound (`merchant_number` / `venue_number`)."""
    readings = receipt_code_readings(code=code)
    venues = {
        (venue.merchant.number, venue.number): venue
        for venue in Venue.objects.filter(
            livemode=livemode,
            merchant__number__in=[reading.merchant_number for reading in readings],
            number__in=[reading.venue_number for reading in readings],
        ).select_related("merchant")
    }
    matching = [reading for reading in readings if (reading.merchant_number, reading.venue_number) in venues]
    if len(matching) > 1:
        stored = [reading for reading in matching if _stored_purchases(livemode, reading, venues).exists()]
        matching = stored[:1] or matching[:1]
    if matching:
        return matching[0], venues[(matching[0].merchant_number, matching[0].venue_number)]
    reading = readings[0]
    if not Merchant.objects.filter(livemode=livemode, number=reading.merchant_number).exists():
        raise NotFound(
            f"No merchant '{reading.merchant_number}' in this mode.",
            parameters=[NotFound.parameter("merchant_number", value=reading.merchant_number)],
        )
    raise NotFound(
        f"No venue '{reading.venue_number}' of merchant '{reading.merchant_number}' in this mode.",
        parameters=[NotFound.parameter("venue_number", value=reading.venue_number)],
    )


def _stored_purchases(livemode: bool, reading: ReceiptCode, venues: dict):
    venue = venues[(reading.merchant_number, reading.venue_number)]
    return Transaction.objects.filter(livemode=livemode, venue=venue, receipt_number=reading.receipt_number)


def anonymous_purchase_attach(*, transaction_id, contact: Contact, reason: str = "claimed") -> bool:
    """Give an anonymous purchase to `contact` and queue it for processing (which awards it):
    a guarded update on status `anonymous`, so it happens at most once. Call inside a database
    transaction; False when the purchase is no longer anonymous."""
    updated = Transaction.objects.filter(pk=transaction_id, status=Status.ANONYMOUS, contact__isnull=True).update(
        status=Status.QUEUED, contact=contact
    )
    if updated:
        TransactionEvent.objects.create(
            transaction_id=transaction_id, kind="attached", detail=f"{reason} by {contact.pk}"
        )
        transaction.on_commit(lambda: transaction_enqueue(transaction_id))
    return bool(updated)


def _check_daily_cap(contact: Contact, limit: int, now: datetime) -> None:
    recent = Claim.objects.filter(contact=contact, created_at__gt=now - timedelta(days=1)).count()
    if recent >= limit:
        raise ClaimLimitExceeded(
            f"At most {limit} receipts can be claimed in 24 hours.",
            parameters=[ClaimLimitExceeded.parameter("contact", value=str(contact.pk), limit=limit)],
        )


def _self_service_external_id(reading: ReceiptCode) -> str:
    external_id = f"claim:{reading.merchant_number}:{reading.venue_number}:{reading.receipt_number}"
    if len(external_id) <= 100:
        return external_id
    return "claim:" + hashlib.sha256(external_id.encode()).hexdigest()


def _reclaimed(
    livemode: bool, contact: Contact, reading: ReceiptCode, venue: Venue, window: timedelta, now: datetime
) -> Transaction | None:
    """The stored purchase the code names, given to the contact; None when there is none."""
    stored = list(
        Transaction.objects.select_for_update(of=("self",))
        .filter(livemode=livemode, venue=venue, receipt_number=reading.receipt_number)
        .order_by("received_at", "pk")
    )
    if not stored:
        return None
    same_amount = [txn for txn in stored if txn.net_amount == reading.amount]
    if not same_amount:
        raise AmountMismatch(
            "The amount of the code differs from the stored purchase's.",
            parameters=[AmountMismatch.parameter("code", value=reading.amount)],
        )
    anonymous = [txn for txn in same_amount if txn.status == Status.ANONYMOUS and txn.contact_id is None]
    if not anonymous:
        txn = same_amount[0]
        if txn.contact_id is not None or txn.match_key:
            raise AlreadyClaimed(
                "This purchase was already sent with a contact.",
                parameters=[AlreadyClaimed.parameter("code", value=reading.receipt_number)],
            )
        raise NotClaimable(
            f"The stored purchase is {txn.status}; only processed anonymous purchases can be claimed.",
            parameters=[NotClaimable.parameter("code", value=reading.receipt_number, status=txn.status)],
        )
    txn = anonymous[0]
    if now - txn.occurred_at > window:
        raise ClaimWindowClosed(
            f"Purchases can be claimed within {window.days} days.",
            parameters=[ClaimWindowClosed.parameter("code", value=reading.receipt_number, days=window.days)],
        )
    if not anonymous_purchase_attach(transaction_id=txn.pk, contact=contact):
        raise AlreadyClaimed(parameters=[AlreadyClaimed.parameter("code", value=reading.receipt_number)])
    txn.status, txn.contact = Status.QUEUED, contact
    return txn


def _self_service_purchase(
    livemode: bool, contact: Contact, reading: ReceiptCode, venue: Venue, currency: str, now: datetime
) -> Transaction:
    txn = Transaction.objects.create(
        livemode=livemode,
        external_id=_self_service_external_id(reading),
        fingerprint=hashlib.sha256(reading.qr.encode()).hexdigest(),
        contact=contact,
        occurred_at=now,
        received_at=now,
        currency=currency,
        venue=venue,
        channel=CLAIM_CHANNEL,
        receipt_number=reading.receipt_number,
        amount=reading.amount,
    )
    TransactionItem.objects.create(
        transaction=txn, line_number=0, sku=SELF_SERVICE_SKU, quantity=Decimal(1), amount=reading.amount
    )
    TransactionEvent.objects.create(transaction=txn, kind="received", detail=f"self-service claim by {contact.pk}")
    transaction.on_commit(lambda: transaction_enqueue(txn.pk))
    return txn


def claim_submit(*, livemode: bool, contact: Contact, code: str, at: datetime | None = None) -> Claim:
    """The contact claims the receipt `code` (QR or barcode payload): the stored anonymous
    purchase is given to the contact (reclaim) or one is recorded from the payload
    (self-service), and queued for processing, which awards it. A receipt is claimed once: a
    retry is ALREADY_CLAIMED (use Idempotency-Key to replay an answer). Raises ValidationError,
    NotFound, AlreadyClaimed, AmountMismatch, ClaimWindowClosed, NotClaimable,
    SelfServiceClaimsDisabled, ClaimLimitExceeded."""
    reading, venue = receipt_code_resolve(livemode=livemode, code=code)
    program = program_for(livemode=livemode)
    now = at or timezone.now()
    key = {
        "livemode": livemode,
        "merchant_number": reading.merchant_number,
        "venue_number": reading.venue_number,
        "receipt_number": reading.receipt_number,
    }
    try:
        with transaction.atomic():
            # One contact's claims one at a time, so two concurrent claims cannot both pass the cap.
            Contact.objects.select_for_update().filter(pk=contact.pk).first()
            if Claim.objects.filter(**key).exists():
                raise AlreadyClaimed(parameters=[AlreadyClaimed.parameter("code", value=reading.receipt_number)])
            _check_daily_cap(contact, program.claims_per_day, now)
            window = timedelta(days=program.claim_window_days)
            txn = _reclaimed(livemode, contact, reading, venue, window, now)
            kind = Claim.Kind.RECLAIM
            if txn is None:
                if not program.self_service_claims:
                    raise SelfServiceClaimsDisabled(
                        parameters=[SelfServiceClaimsDisabled.parameter("code", value=reading.receipt_number)]
                    )
                txn = _self_service_purchase(livemode, contact, reading, venue, program.currency, now)
                kind = Claim.Kind.SELF_SERVICE
            return Claim.objects.create(
                **key,
                contact=contact,
                kind=kind,
                code_format=reading.code_format,
                code=code.strip(),
                amount=reading.amount,
                transaction=txn,
                created_at=now,
            )
    except IntegrityError:
        # A concurrent claim of the same receipt committed first (the unique constraint decides).
        raise AlreadyClaimed(parameters=[AlreadyClaimed.parameter("code", value=reading.receipt_number)]) from None
