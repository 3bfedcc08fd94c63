"""Intake: a purchase is validated completely, stored durably and answered at once; the points
are worked out later by a worker (see processing.py).

Idempotent on the integrator's `id`: the unique constraint decides which of any number of
concurrent duplicates is stored; the others get the stored answer (same payload) or
IDEMPOTENCY_MISMATCH (another payload). Finalize (redeeming offers locked by this transaction)
and a front-end spend happen inside the same database transaction as the insert: either the
purchase, its redemptions and its spend are all stored, or none is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from core.baskets import BasketLine
from core.cache import redis_client, redis_key
from core.exceptions import IdempotencyMismatch, NotFound, ValidationError
from core.money import format_minor
from loyalty.models import Contact, LedgerEntry, WalletPreference
from loyalty.selectors import contact_get, contact_resolve
from loyalty.services.ledger import Cause
from loyalty.services.wallets import spend_token_redeem, wallet_spend
from offers.exceptions import OfferLocked, OfferNotAvailable
from offers.models import IssuedOffer
from offers.selectors import classified_lines
from offers.services.engine import spread
from offers.services.issued import issued_offer_redeem
from transactions.models import Transaction, TransactionDiscount, TransactionEvent, TransactionItem
from transactions.selectors import transaction_receipt_code

logger = logging.getLogger(__name__)


@dataclass
class Purchase:
    """A validated purchase payload (amounts in minor units)."""

    external_id: str
    fingerprint: str
    occurred_at: datetime
    currency: str
    lines: list[BasketLine]
    contact_reference: dict[str, Any] | None = None
    venue: Any = None
    channel: str = ""
    receipt_number: str = ""
    discounts: list[dict[str, Any]] = field(default_factory=list)  # {"amount", "issued_offer_id"?, "description"?}
    payments: list[dict[str, Any]] = field(default_factory=list)
    tax_total: int = 0
    spend: dict[str, Any] | None = None  # {"amount"?, "otp"?, "reduction"}
    custom: dict[str, Any] = field(default_factory=dict)


def _replay_or_conflict(existing: Transaction, purchase: Purchase) -> tuple[Transaction, dict, bool]:
    if existing.fingerprint != purchase.fingerprint:
        raise IdempotencyMismatch(
            f"Transaction '{purchase.external_id}' was already sent with different content.",
            parameters=[IdempotencyMismatch.parameter("id", value=purchase.external_id)],
        )
    return existing, existing.response, True


@dataclass
class _Buyer:
    """Who the purchase is for: the contact's id and auto-spend preference (all a purchase
    without a spend needs), or the normalised key of a contact not known yet."""

    contact_id: Any = None
    auto_spend: bool = False
    pending_key: dict[str, str] = field(default_factory=dict)


def _resolve_contact(livemode: bool, reference: dict | None) -> _Buyer:
    """The contact, or — for a secondary key that matches nobody yet — the normalised key to
    attach the purchase by later. An unknown contact *id* is an error, not a pending match."""
    if not reference:
        return _Buyer()
    if reference.get("id"):
        return _buyer_by_id(livemode, reference["id"])
    try:
        contact = contact_resolve(livemode=livemode, reference=reference)
    except NotFound:
        return _Buyer(pending_key=_normalised_key(reference))
    return _Buyer(contact_id=contact.pk, auto_spend=_wants_auto_spend(contact.pk))


def _buyer_by_id(livemode: bool, contact_id) -> _Buyer:
    """One statement at every checkout that names its contact by id: the contact's existence in
    this mode and its auto-spend preference together."""
    try:
        contact_uuid = uuid.UUID(str(contact_id))
    except ValueError:
        contact_uuid = None
    row = None
    if contact_uuid is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT contact.id, preference.auto_spend FROM {Contact._meta.db_table} AS contact "
                f"LEFT JOIN {WalletPreference._meta.db_table} AS preference ON preference.contact_id = contact.id "
                "WHERE contact.id = %s AND contact.livemode = %s",
                [Contact._meta.pk.get_db_prep_value(contact_uuid, connection), livemode],
            )
            row = cursor.fetchone()
    if row is None:  # contact_get gives the API's NotFound (or finds a contact created meanwhile)
        contact = contact_get(livemode=livemode, contact_id=contact_id, with_identifiers=False)
        return _Buyer(contact_id=contact.pk, auto_spend=_wants_auto_spend(contact.pk))
    return _Buyer(contact_id=contact_uuid, auto_spend=row[1] not in (None, WalletPreference.AutoSpend.OFF))


def _normalised_key(reference: dict) -> dict[str, str]:
    from core.validators import normalize_email, normalize_phone

    key_type, key = reference["match_key_type"], reference["match_key"].strip()
    if key_type == "mobile_phone":
        key = normalize_phone(key, field="contact.match_key")
    elif key_type == "email":
        key = normalize_email(key, field="contact.match_key").lower()
    return {"match_key_type": key_type, "match_key": key, "match_source": reference.get("source") or ""}


def _check_finalize(livemode: bool, purchase: Purchase, contact_id, *, lock: bool = False) -> list[IssuedOffer]:
    """Discounts that name issued offers: each must be locked by this very transaction, now.
    With `lock`, the offers' rows are held until commit, so a lock cannot run out (and the offer
    be taken by another transaction) between this check and the redemption."""
    ids = [discount["issued_offer_id"] for discount in purchase.discounts if discount.get("issued_offer_id")]
    if not ids:
        return []
    offers = IssuedOffer.objects.filter(livemode=livemode, pk__in=ids)
    if lock:
        offers = offers.select_for_update(of=("self",)).order_by("pk")
    issued = {str(offer.pk): offer for offer in offers}
    now = timezone.now()
    for index, issued_offer_id in enumerate(map(str, ids)):
        offer = issued.get(issued_offer_id)
        where = f"discounts.{index}.issued_offer_id"
        if offer is None or (contact_id is not None and offer.contact_id != contact_id):
            raise NotFound(
                "No such issued offer for this contact.", parameters=[NotFound.parameter(where, value=issued_offer_id)]
            )
        locked_here = (
            offer.status == IssuedOffer.Status.LOCKED
            and offer.locked_transaction_id == purchase.external_id
            and offer.locked_until is not None
            and offer.locked_until > now
        )
        if not locked_here:
            if offer.status == IssuedOffer.Status.LOCKED and offer.locked_until and offer.locked_until > now:
                raise OfferLocked(
                    "The issued offer is locked by another transaction.",
                    parameters=[OfferLocked.parameter(where, value=issued_offer_id)],
                )
            raise OfferNotAvailable(
                "A discount names an issued offer that is not locked by this transaction (or its lock expired).",
                parameters=[OfferNotAvailable.parameter(where, value=issued_offer_id, status=offer.status)],
            )
    return [issued[str(issued_offer_id)] for issued_offer_id in ids]


def _wants_auto_spend(contact_id) -> bool:
    preference = WalletPreference.objects.filter(contact_id=contact_id).values_list("auto_spend", flat=True).first()
    return preference not in (None, WalletPreference.AutoSpend.OFF)


_INSERT_FIELDS = [field for field in Transaction._meta.concrete_fields]
_INSERT_COLUMNS = ", ".join('"' + field.column + '"' for field in _INSERT_FIELDS)
# The purchase, its first history row and its lines in one statement: a 20-line purchase used
# to take five round trips (BEGIN, the purchase, COPY's two for the lines, COMMIT), now it takes
# one, and without discounts or a spend (one statement, atomic by itself) no transaction block.
_LINE_COLUMNS = (
    ("line_number", "int"),
    ("sku", "text"),
    ("family", "text"),
    ("brand", "text"),
    ("quantity", "numeric"),
    ("unit_price", "bigint"),
    ("amount", "bigint"),
    ("tax_included", "bigint"),
    ("discount_allocated", "bigint"),
)
_INSERT_IF_NEW_SQL = (
    f"WITH stored AS (INSERT INTO {Transaction._meta.db_table} ({_INSERT_COLUMNS}) "
    f"VALUES ({', '.join(['%s'] * len(_INSERT_FIELDS))}) ON CONFLICT DO NOTHING RETURNING id), "
    f"history AS (INSERT INTO {TransactionEvent._meta.db_table} (transaction_id, kind, detail, created_at) "
    "SELECT id, 'received', %s, %s FROM stored), "
    f"lines AS (INSERT INTO {TransactionItem._meta.db_table} (transaction_id, "
    + ", ".join(name for name, _ in _LINE_COLUMNS)
    + ", points_earned, returned_quantity, returned_amount) "
    "SELECT stored.id, "
    + ", ".join(f"line.{name}" for name, _ in _LINE_COLUMNS)
    + ", 0, 0, 0 FROM stored CROSS JOIN jsonb_to_recordset(%s::jsonb) AS line("
    + ", ".join(f"{name} {kind}" for name, kind in _LINE_COLUMNS)
    + ")) "
    "SELECT count(*) FROM stored"
)


def _insert_if_new(txn: Transaction, received: str, lines: list[BasketLine], allocated: dict[int, int]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING of the purchase, with its first history row (`received`)
    and its lines (`allocated`: the order-level discount spread on each) in the same statement:
    one round trip, no savepoint. False when the integrator's id is already taken in this mode
    (the unique constraint decides, even between concurrent duplicates: the loser waits for the
    winner's commit), and then nothing is written."""
    rows = [
        {
            "line_number": index,
            "sku": line.sku,
            "family": line.family or "",
            "brand": line.brand or "",
            "quantity": str(line.quantity),  # as JSON wants it; the ORM reads it back as a Decimal
            "unit_price": line.unit_price,
            "amount": line.amount,
            "tax_included": line.tax_included,
            "discount_allocated": allocated.get(index, 0),
        }
        for index, line in enumerate(lines)
    ]
    if connection.vendor != "postgresql":  # no INSERT inside WITH: one statement each
        inserted = Transaction.objects._insert(
            [txn], fields=_INSERT_FIELDS, returning_fields=[Transaction._meta.pk], on_conflict=OnConflict.IGNORE
        )
        if not inserted or not inserted[0]:
            return False
        TransactionEvent.objects.create(transaction_id=txn.pk, kind="received", detail=received)
        TransactionItem.objects.bulk_create(TransactionItem(transaction_id=txn.pk, **row) for row in rows)
        txn._state.adding = False
        txn._state.db = connection.alias
        return True
    # The values as the ORM's insert would send them; the statement is written once. The lines
    # go as one JSON document (C-encoded: a 1,000-line purchase in about a millisecond;
    # psycopg's array parameters cost five times that).
    params = [field.get_db_prep_save(field.pre_save(txn, True), connection) for field in _INSERT_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_IF_NEW_SQL, [*params, received, timezone.now(), json.dumps(rows)])
        stored = cursor.fetchone()[0]
    if not stored:  # the insert did nothing
        return False
    txn._state.adding = False
    txn._state.db = connection.alias
    return True


def transaction_enqueue(transaction_id) -> None:
    """After commit. A broker that is down must not fail an accepted purchase: the database is
    the queue of record and the beat sweeper picks up what was not enqueued."""
    from transactions.tasks import process_transaction

    try:
        process_transaction.delay(str(transaction_id))
    except Exception:  # noqa: BLE001 - any broker failure; the sweeper retries
        logger.warning("Could not enqueue transaction %s; the sweeper will pick it up", transaction_id)


# Set while a drain task (`transactions.process_queued`) is waiting to run: intake sends one only
# when none is, so a burst of purchases costs a few tasks, not one each. The time limit bounds
# the wait when a drain message is lost (the next purchase sends another; the sweeper stays).
_DRAIN_FLAG_SECONDS = 10


def _shared_key(name: str, queue: str | None = None) -> str | None:
    """A key of the Redis cache that web and workers share, per task queue (a drain on another
    queue does not help), or None when purchases are enqueued one by one: tasks run
    in-process, or the cache is not shared between web and worker processes, so a worker could
    not clear what the web side set."""
    from celery import current_app

    if current_app.conf.task_always_eager or redis_client() is None:
        return None
    return f"transactions:{name}:{queue or current_app.conf.task_default_queue}"


def processing_kick(transaction_id) -> None:
    """After an intake's commit: make sure a drain will see the purchase. A broker or cache that
    is down must not fail an accepted purchase (the sweeper picks it up)."""
    from django.core.cache import cache

    from transactions.tasks import process_queued

    key = _shared_key("drain-pending")  # the drain is told which flag to clear
    if key is None:
        transaction_enqueue(transaction_id)
        return
    try:
        if not redis_client().set(redis_key(key), 1, nx=True, ex=_DRAIN_FLAG_SECONDS):
            return  # a drain is waiting to run and will see this purchase
        try:
            process_queued.delay(flag=key)
        except Exception:
            cache.delete(key)  # nothing is waiting after all: let the next purchase try again
            raise
    except Exception:  # noqa: BLE001 - any broker or cache failure; the sweeper retries
        logger.warning("Could not enqueue transaction %s; the sweeper will pick it up", transaction_id)


def drain_retry_claim(queue: str | None, seconds: float) -> str | bool | None:
    """May a drain that found only purchases held by other sessions send a task to look again in
    `seconds`? One such task waits at a time per queue: with several workers, a drain meets the
    purchase another worker is busy with at every lull in the traffic, and each used to send its
    own (a third of the tasks at 150 purchases/s). Returns the claim's key (pass it to the task,
    which clears it when it starts), False when a look-again task is already waiting, or None
    when claims cannot be shared (no Redis cache, tasks in-process): send it anyway."""
    key = _shared_key("drain-retry", queue)
    if key is None:
        return None
    try:
        # Expires by itself should the task be lost: a few times its delay.
        claimed = redis_client().set(redis_key(key), 1, nx=True, ex=max(1, int(seconds * 5)))
    except Exception:  # noqa: BLE001 - a cache failure must not stop the look-again
        logger.warning("Could not claim the drain's look-again; sending it anyway")
        return None
    return key if claimed else False


def drain_flag_clear(key: str) -> None:
    """A drain task starts: purchases stored from now on send another one (the drain flag), or
    drains finding purchases held elsewhere may send the next look-again (its claim)."""
    from django.core.cache import cache

    cache.delete(key)


def transaction_intake(*, livemode: bool, purchase: Purchase) -> tuple[Transaction, dict, bool]:
    """Store a purchase and answer at once: (transaction, response body, replayed?).

    Raises ValidationError, NotFound (unknown contact id or issued offer), OfferLocked /
    OfferNotAvailable (finalize), IdempotencyMismatch, Otp*, InsufficientBalance.
    """
    if purchase.spend and purchase.spend.get("otp"):
        # A retry must not use up the code again: answer it before touching the token.
        existing = Transaction.objects.filter(livemode=livemode, external_id=purchase.external_id).first()
        if existing is not None:
            return _replay_or_conflict(existing, purchase)
    buyer = _resolve_contact(livemode, purchase.contact_reference)
    spend = purchase.spend
    # The spend services act on the contact itself; a purchase without a spend needs its id only.
    contact = None
    if spend and buyer.contact_id is not None:
        contact = contact_get(livemode=livemode, contact_id=buyer.contact_id, with_identifiers=False)
    if spend and contact is None:
        raise ValidationError.for_field("spend", "Spending needs a contact that is known.")
    discount_total = sum(discount["amount"] for discount in purchase.discounts)
    amount = sum(line.amount for line in purchase.lines)
    if discount_total > amount:
        raise ValidationError.for_field("discounts", "Discounts cannot exceed the sum of the lines.")
    otp_verified = False
    if spend and spend.get("otp"):
        # A purchase that finalize would refuse must not use up a right code: check first.
        _check_finalize(livemode, purchase, buyer.contact_id)
        # Before the database transaction: a wrong code must cost an attempt even though the
        # purchase is then refused.
        spend_token_redeem(contact=contact, code=spend["otp"])
        otp_verified = True
    will_spend = buyer.contact_id is not None and (bool(spend) or buyer.auto_spend)
    if will_spend and contact is None:
        contact = contact_get(livemode=livemode, contact_id=buyer.contact_id, with_identifiers=False)
    txn = Transaction(
        livemode=livemode,
        external_id=purchase.external_id,
        fingerprint=purchase.fingerprint,
        contact_id=buyer.contact_id,
        occurred_at=purchase.occurred_at,
        currency=purchase.currency,
        venue=purchase.venue,
        channel=purchase.channel or "",
        receipt_number=purchase.receipt_number,
        amount=amount,
        discount_total=discount_total,
        tax_total=purchase.tax_total,
        payments=purchase.payments,
        custom=purchase.custom,
        spend_requested=(spend or {}).get("amount"),
        spend_reduction=(spend or {}).get("reduction", ""),
        **buyer.pending_key,
    )
    # The answer is known before anything is written, unless a spend adds to it: it is stored
    # with the row, so a retry gets exactly the first answer.
    txn.response = {
        "id": purchase.external_id,
        "transaction_id": str(txn.pk),
        "status": Transaction.Status.QUEUED,
        "livemode": livemode,
        "contact_id": str(buyer.contact_id) if buyer.contact_id else None,
        "spend": None,
        "redeemed_offers": [d["issued_offer_id"] for d in purchase.discounts if d.get("issued_offer_id")],
    }
    # Printed on the receipt of a purchase without a contact, so the contact can claim it later.
    receipt_code = transaction_receipt_code(txn)
    txn.response["receipt_code"] = receipt_code.as_dict() if receipt_code else None
    allocated = dict(spread(discount_total, list(range(len(purchase.lines))), [line.amount for line in purchase.lines]))
    received = f"{len(purchase.lines)} lines, {format_minor(amount, purchase.currency)} {purchase.currency}"
    # Without discounts (offers to redeem) or a spend, the purchase is written by one statement
    # on PostgreSQL, atomic by itself: no transaction block around it (BEGIN and COMMIT are two
    # round trips of the five a purchase took).
    alone = not purchase.discounts and not will_spend and connection.vendor == "postgresql"
    with contextlib.nullcontext() if alone else transaction.atomic():
        if not _insert_if_new(txn, received, purchase.lines, allocated):
            # A duplicate (maybe concurrent, now committed) holds this id: answer as it did.
            existing = Transaction.objects.get(livemode=livemode, external_id=purchase.external_id)
            return _replay_or_conflict(existing, purchase)
        redeemed = _check_finalize(livemode, purchase, buyer.contact_id, lock=True)
        if purchase.discounts:
            TransactionDiscount.objects.bulk_create(
                TransactionDiscount(
                    transaction=txn,
                    amount=discount["amount"],
                    issued_offer_id=discount.get("issued_offer_id"),
                    description=discount.get("description", ""),
                )
                for discount in purchase.discounts
            )
        for issued_offer in redeemed:
            issued_offer_redeem(
                issued_offer_id=issued_offer.pk,
                transaction_id=purchase.external_id,
                actor="transaction",
                at=purchase.occurred_at,
            )
        if will_spend:
            reduction = (spend or {}).get("reduction") or "back_end"
            # Spend conditions name families and brands the till may not send: the catalogue's.
            net_lines = classified_lines(
                livemode=livemode,
                lines=[
                    BasketLine(
                        sku=line.sku,
                        amount=line.amount - allocated.get(index, 0),
                        quantity=line.quantity,
                        family=line.family,
                        brand=line.brand,
                    )
                    for index, line in enumerate(purchase.lines)
                ],
            )
            spend_result = wallet_spend(
                contact=contact,
                currency=purchase.currency,
                amount=(spend or {}).get("amount"),
                lines=net_lines,
                cause=Cause(
                    LedgerEntry.Source.TRANSACTION,
                    purchase.external_id,
                    f"txn:{txn.pk}:spend",
                    occurred_at=purchase.occurred_at,
                ),
                reduction=reduction,
                venue=purchase.venue,
                at=purchase.occurred_at,
                otp_verified=otp_verified,
            )
            txn.spend_approved = spend_result.approved
            txn.spend_reduction = reduction
            txn.response["spend"] = spend_result.as_dict()
            Transaction.objects.filter(pk=txn.pk).update(
                response=txn.response, spend_approved=txn.spend_approved, spend_reduction=txn.spend_reduction
            )
        transaction.on_commit(lambda: processing_kick(txn.pk))
    return txn, txn.response, False
