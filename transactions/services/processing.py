"""Processing: what a stored purchase earns, worked out by a worker.

One database transaction per purchase, holding the purchase's row lock: the base earning
(economy rules and tier in force at `occurred_at`), point-type offer benefits, campaign
outcomes (hooks registered by the campaigns app), the ledger postings (each with its own
idempotency key), the tier update and the `transaction.processed` event, then the status. A
worker killed half-way rolls all of it back and the task runs again from the start, so a
purchase earns exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from catalogue.models import line_matches_restrictions
from core.baskets import BasketLine
from core.rows import model_from_row
from core.services import outbox_emit, outbox_emitted, outbox_insert_sql
from loyalty.models import Contact, LedgerEntry, Tier, TierHistory
from loyalty.selectors.wallets import earning_rules_in_force
from loyalty.services.earning import RuleSpec, basket_points, points_allocate
from loyalty.services.ledger import Cause
from loyalty.services.tiers import tier_by_id
from loyalty.services.wallets import points_earn, program_for
from offers.selectors import offer_specs
from offers.services.engine import BasketContext, evaluate, qualifying_line_indexes
from transactions.models import Transaction, TransactionEvent, TransactionItem
from transactions.selectors import item_lines, purchase_items
from transactions.services.intake import transaction_enqueue
from transactions.services.products import lines_classified_and_learned

logger = logging.getLogger(__name__)
Status = Transaction.Status


@dataclass
class PurchaseFacts:
    """What campaign hooks are told about a processed purchase."""

    transaction: Transaction
    contact: Contact
    lines: list[BasketLine]
    tier: Tier | None
    base_points: int
    offer_points: int
    extra: dict = field(default_factory=dict)


# Registered by upper layers (the campaigns app): each is called inside the processing
# transaction and posts its own outcomes with idempotency keys of its own.
PURCHASE_PROCESSED_HOOKS: list[Callable[[PurchaseFacts], None]] = []


def purchase_processed_hook(function):
    PURCHASE_PROCESSED_HOOKS.append(function)
    return function


def _with_tier_at_occurrence(purchases: QuerySet[Transaction]) -> QuerySet[Transaction]:
    """The purchase rows with `tier_id_then`: the contact's tier at `occurred_at` (the last tier
    change up to then), read with the row instead of by a query of its own."""
    change = TierHistory.objects.filter(contact_id=OuterRef("contact_id"), created_at__lte=OuterRef("occurred_at"))
    return purchases.annotate(tier_id_then=Subquery(change.order_by("-created_at", "-id").values("to_tier_id")[:1]))


def _event(txn: Transaction, kind: str, detail: str = "") -> None:
    TransactionEvent.objects.create(transaction=txn, kind=kind, detail=detail)


def _earning_weights(lines: list[BasketLine], rules: list[RuleSpec], currency: str, tier_multiplier) -> list[int]:
    """What each line adds to the base earning (nothing when no rule rewards it), so each line
    is credited the points it earned — what a return of it takes back."""
    weights = [Decimal(0)] * len(lines)
    for rule in rules:
        if rule.currency != currency:
            continue
        rate = rule.points_per_unit * (tier_multiplier if rule.apply_tier_multiplier else 1)
        for index, line in enumerate(lines):
            if not (rule.exclusions and line_matches_restrictions(line.as_dict(), rule.exclusions)):
                weights[index] += line.amount * rate
    return [int(weight.scaleb(6)) for weight in weights]


def _place(points: int, indexes: list[int], weights: list[int], lines: list[BasketLine], per_line: list[int]) -> None:
    """Add `points` to the lines `indexes` in proportion to `weights` (all lines by amount when
    those weigh nothing)."""
    if sum(weights) <= 0:
        indexes, weights = list(range(len(lines))), [line.amount for line in lines]
    if sum(weights) <= 0:
        indexes, weights = list(range(len(lines)))[:1], [1]
    for index, share in zip(indexes, points_allocate(points, weights), strict=True):
        per_line[index] += share


def _offer_points(txn: Transaction, lines: list[BasketLine], base_by_line: list[int]) -> tuple[int, list[int]]:
    """Bonus points and multipliers of the point-type offers this purchase redeemed: the total,
    and what each line earned of it (a multiplier's extra goes to its qualifying lines)."""
    per_line = [0] * len(lines)
    if not (txn.response or {}).get("redeemed_offers"):
        return 0, per_line  # intake recorded no redemption: no query needed
    issued_offers = [
        discount.issued_offer
        for discount in txn.discounts.select_related("issued_offer__offer")
        if discount.issued_offer_id
    ]
    if not issued_offers:
        return 0, per_line
    specs = offer_specs([issued.offer for issued in issued_offers])
    context = BasketContext(
        lines=lines,
        currency=txn.currency,
        at=txn.occurred_at,
        channel=txn.channel or None,
        venue_id=str(txn.venue_id) if txn.venue_id else None,
        venue_time_zone=txn.venue.time_zone if txn.venue_id else "UTC",
    )
    extra = 0
    for issued in issued_offers:
        spec = specs[issued.offer_id]
        if spec.benefit_type not in ("bonus_points", "points_multiplier"):
            evaluate(spec, context)  # money offers were taken off the bill; nothing to earn
            continue
        qualifying = qualifying_line_indexes(spec, lines, context.line_index)
        if spec.benefit_type == "bonus_points":
            points, weights = int(spec.benefit_value), [lines[index].amount for index in qualifying]
        else:
            weights = [base_by_line[index] for index in qualifying]
            points = int((Decimal(sum(weights)) * (spec.benefit_value - 1)).to_integral_value())
        if points <= 0:
            continue  # a multiplier below 1 never takes points away
        extra += points
        if lines:
            _place(points, qualifying, weights, lines, per_line)
    return extra, per_line


def _store_line_points(changed: list[tuple[int, int]]) -> None:
    """What each line earned (returns reverse by it), where PostgreSQL does not write it with
    the purchase's status (_mark_processed). Django's bulk_update builds a CASE per row."""
    TransactionItem.objects.bulk_update(
        [TransactionItem(pk=item_id, points_earned=earned) for item_id, earned in changed],
        ["points_earned"],
        batch_size=500,
    )


def transaction_process(*, transaction_id) -> Transaction:
    """Work out and post what the purchase earns. Safe to run any number of times: only a
    queued purchase is processed, under its row lock, in one database transaction."""
    with transaction.atomic():
        txn = _with_tier_at_occurrence(
            Transaction.objects.select_for_update(of=("self",)).select_related("contact", "venue")
        ).get(pk=transaction_id)
        if txn.status != Status.QUEUED:
            return txn
        _process_locked(txn)
    return txn


@dataclass
class DrainResult:
    processed: int = 0
    failed: int = 0
    more: bool = False  # stopped by the time or count budget with purchases still queued
    # Nothing left to take, but queued purchases are held by other transactions: a worker
    # processing them now, or one that was killed and whose database session has not rolled
    # back yet (its purchase becomes free again a moment later).
    held_elsewhere: bool = False


def _next_queued() -> Transaction | None:
    """The oldest queued purchase no other worker holds, locked until the end of the caller's
    database transaction (SKIP LOCKED: parallel drainers never wait on each other's rows), with
    its contact and `tier_id_then`."""
    if connection.vendor == "postgresql":
        return _next_queued_in_plain_sql()
    return (
        _with_tier_at_occurrence(
            Transaction.objects.select_for_update(of=("self",), skip_locked=True).select_related("contact", "venue")
        )
        .filter(status=Status.QUEUED)
        .order_by("status", "received_at")
        .first()
    )


_TXN_FIELDS = list(Transaction._meta.concrete_fields)
_CONTACT_FIELDS = list(Contact._meta.concrete_fields)
# Read at every purchase a worker takes: the ORM spends longer building this query (a join, a
# subquery, row locking) than the database takes to answer it, so it is written once.
_NEXT_QUEUED_SQL = (
    "SELECT {txn_columns}, {contact_columns}, ("
    "SELECT change.to_tier_id FROM {history} AS change WHERE change.contact_id = txn.contact_id "
    "AND change.created_at <= txn.occurred_at ORDER BY change.created_at DESC, change.id DESC LIMIT 1) "
    "FROM {transactions} AS txn LEFT JOIN {contacts} AS contact ON contact.id = txn.contact_id "
    "WHERE txn.status = %s ORDER BY txn.status, txn.received_at LIMIT 1 FOR UPDATE OF txn SKIP LOCKED"
).format(
    txn_columns=", ".join(f"txn.{column.column}" for column in _TXN_FIELDS),
    contact_columns=", ".join(f"contact.{column.column}" for column in _CONTACT_FIELDS),
    history=TierHistory._meta.db_table,
    transactions=Transaction._meta.db_table,
    contacts=Contact._meta.db_table,
)


def _next_queued_in_plain_sql() -> Transaction | None:
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_QUEUED_SQL, [Status.QUEUED])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(_TXN_FIELDS)
    txn = model_from_row(Transaction, _TXN_FIELDS, row[:split])
    if txn.contact_id is not None:
        txn.contact = model_from_row(Contact, _CONTACT_FIELDS, row[split:-1])
    txn.tier_id_then = row[-1]
    return txn


def queued_drain(*, max_seconds: float = 10.0, max_count: int = 5000) -> DrainResult:
    """Process queued purchases, oldest first, until none is left or a budget is spent.

    What a worker does between Celery tasks (fetch, decode, acknowledge) costs more than
    processing a purchase; draining processes a burst with one task. Each purchase is still its
    own database transaction holding its row lock, so a worker killed half-way rolls back only
    the purchase in hand, which stays queued for the next drain. A purchase that fails for any
    reason but a lost database connection is marked failed (visible and re-processable in the
    admin) rather than left at the head of the queue.
    """
    result = DrainResult()
    deadline = time.monotonic() + max_seconds
    while True:
        if result.processed + result.failed >= max_count or time.monotonic() >= deadline:
            result.more = Transaction.objects.filter(status=Status.QUEUED).exists()
            return result
        txn = None
        try:
            with transaction.atomic():
                txn = _next_queued()
                if txn is None:
                    result.held_elsewhere = Transaction.objects.filter(status=Status.QUEUED).exists()
                    return result
                _process_locked(txn)
        except (OperationalError, InterfaceError):
            raise  # the database is going away: the task retries the drain later
        except Exception as error:  # one bad purchase must not stop the queue
            if txn is None:
                raise
            # Class only in the log: a message may quote personal data (stored on the purchase).
            logger.error("Processing transaction %s failed (%s)", txn.pk, error.__class__.__name__)
            transaction_fail(transaction_id=txn.pk, reason=f"{error.__class__.__name__}: {error}")
            result.failed += 1
        else:
            result.processed += 1


def _process_locked(txn: Transaction) -> None:
    """Process a queued purchase whose row the caller holds locked."""
    txn.attempts += 1
    # Rows, not model instances: a 1,000-line purchase would spend milliseconds building them.
    items, catalogue = purchase_items(livemode=txn.livemode, transaction_id=txn.pk)
    lines = item_lines(items)
    # Every purchase teaches the catalogue its SKUs, with or without a contact; and rule
    # exclusions and offer restrictions name families and brands the till may not send.
    lines = lines_classified_and_learned(livemode=txn.livemode, lines=lines, known=catalogue)
    if txn.contact is None:
        txn.status = Status.UNMATCHED if txn.match_key else Status.ANONYMOUS
        txn.save(update_fields=["status", "attempts"])
        _event(txn, txn.status, "waiting for a contact with this identifier" if txn.match_key else "no contact")
        return
    contact = txn.contact
    tier = tier_by_id(livemode=txn.livemode, tier_id=txn.tier_id_then)
    tier_multiplier = tier.multiplier if tier else Decimal(1)
    rules = earning_rules_in_force(livemode=txn.livemode, currency=txn.currency, at=txn.occurred_at, tier=tier)
    earning = basket_points(lines=lines, rules=rules, currency=txn.currency, tier_multiplier=tier_multiplier)
    base_by_line = points_allocate(earning.points, _earning_weights(lines, rules, txn.currency, tier_multiplier))
    offer_points, offer_by_line = _offer_points(txn, lines, base_by_line)
    total = earning.points + offer_points
    per_line = [base + extra for base, extra in zip(base_by_line, offer_by_line, strict=True)]
    line_points = [(item.id, earned) for item, earned in zip(items, per_line, strict=True) if earned]
    program = program_for(livemode=txn.livemode)
    qualifying_spend = txn.net_amount if txn.currency == program.currency else 0
    if total > 0:
        points_earn(
            contact=contact,
            points=total,
            cause=Cause(
                LedgerEntry.Source.TRANSACTION, txn.external_id, f"txn:{txn.pk}:earn", occurred_at=txn.occurred_at
            ),
            qualifying_spend=qualifying_spend,
        )
    facts = PurchaseFacts(
        transaction=txn,
        contact=contact,
        lines=lines,
        tier=tier,
        base_points=earning.points,
        offer_points=offer_points,
    )
    for hook in PURCHASE_PROCESSED_HOOKS:
        hook(facts)
    txn.status = Status.PROCESSED
    txn.points_earned = total
    txn.processed_at = timezone.now()
    txn.failure_reason = ""
    _mark_processed(
        txn,
        line_points,
        f"{total} points ({earning.points} base, {offer_points} from offers)",
        {
            "id": txn.external_id,
            "transaction_id": str(txn.pk),
            "contact_id": str(contact.pk),
            "points_earned": total,
            "occurred_at": txn.occurred_at.isoformat(),
        },
    )


def _mark_processed(txn: Transaction, line_points: list[tuple[int, int]], detail: str, payload: dict) -> None:
    """What each line earned, the purchase's new status, its history row and its
    `transaction.processed` event: one statement on PostgreSQL (three round trips fewer for
    every purchase). The lines' points go as two arrays, whatever the number of lines (a
    VALUES list of 1,000 pairs costs more to build and send than to run)."""
    if connection.vendor != "postgresql":  # no UPDATE inside WITH
        if line_points:
            _store_line_points(line_points)
        Transaction.objects.filter(pk=txn.pk).update(
            status=txn.status,
            points_earned=txn.points_earned,
            processed_at=txn.processed_at,
            attempts=txn.attempts,
            failure_reason="",
        )
        _event(txn, "processed", detail)
        outbox_emit(livemode=txn.livemode, event_type="transaction.processed", payload=payload)
        return
    event_sql, event_params = outbox_insert_sql(
        livemode=txn.livemode, event_type="transaction.processed", payload=payload, source="done"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH lines AS (UPDATE {TransactionItem._meta.db_table} AS item SET points_earned = line.points "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS line (id, points) WHERE item.id = line.id), "
            f"done AS (UPDATE {Transaction._meta.db_table} SET status = %s, points_earned = %s, "
            "processed_at = %s, attempts = %s, failure_reason = '' WHERE id = %s RETURNING id), "
            f"history AS (INSERT INTO {TransactionEvent._meta.db_table} (transaction_id, kind, detail, created_at) "
            f"SELECT id, 'processed', %s, %s FROM done) {event_sql}",
            [
                [item_id for item_id, _ in line_points],
                [earned for _, earned in line_points],
                txn.status,
                txn.points_earned,
                txn.processed_at,
                txn.attempts,
                txn.pk,
                detail,
                txn.processed_at,
                *event_params,
            ],
        )
    outbox_emitted(livemode=txn.livemode, event_type="transaction.processed", payload=payload)


def transaction_fail(*, transaction_id, reason: str) -> None:
    """Record that processing failed for a non-transient reason (visible and re-processable
    in the admin)."""
    with transaction.atomic():
        updated = Transaction.objects.filter(pk=transaction_id, status=Status.QUEUED).update(
            status=Status.FAILED, failure_reason=reason[:2000]
        )
        if updated:
            _event(Transaction.objects.get(pk=transaction_id), "failed", reason[:2000])


def transaction_requeue(*, transaction_id, reason: str = "re-process") -> bool:
    """A failed (or unmatched, now attachable) purchase goes back to the queue."""
    with transaction.atomic():
        updated = Transaction.objects.filter(pk=transaction_id, status__in=[Status.FAILED, Status.UNMATCHED]).update(
            status=Status.QUEUED, failure_reason=""
        )
        if updated:
            _event(Transaction.objects.get(pk=transaction_id), "requeued", reason)
            transaction.on_commit(lambda: transaction_enqueue(transaction_id))
    return bool(updated)


def unmatched_attach(*, contact_id) -> int:
    """Purchases tagged with an identifier this contact now has are given to the contact and
    queued for processing — each exactly once (guarded update on status `unmatched`)."""
    contact = Contact.objects.filter(pk=contact_id).prefetch_related("external_ids").first()
    if contact is None or contact.status != Contact.Status.ACTIVE:
        return 0
    keys = [("member_number", contact.member_number, "")]
    if contact.mobile_phone:
        keys.append(("mobile_phone", contact.mobile_phone, ""))
    if contact.email:
        keys.append(("email", contact.email.lower(), ""))
    keys += [("external_id", external.value, external.source) for external in contact.external_ids.all()]
    attached = 0
    for key_type, key, source in keys:
        waiting = Transaction.objects.filter(
            livemode=contact.livemode, status=Status.UNMATCHED, match_key_type=key_type, match_key=key
        )
        if key_type == "external_id":
            # As identification does: a purchase keyed with a source waits for that source's id;
            # one keyed without a source takes the id from any source.
            waiting = waiting.filter(match_source__in=[source, ""])
        for txn_id in list(waiting.values_list("pk", flat=True)):
            with transaction.atomic():
                if Transaction.objects.filter(pk=txn_id, status=Status.UNMATCHED).update(
                    status=Status.QUEUED, contact=contact
                ):
                    _event(Transaction.objects.get(pk=txn_id), "attached", f"{key_type} matched {contact.pk}")
                    transaction.on_commit(lambda txn_id=txn_id: transaction_enqueue(txn_id))
                    attached += 1
    return attached


def unmatched_attach_many(*, contact_ids) -> int:
    """`unmatched_attach` for many contacts (bulk writes); one cheap query when no purchase is
    waiting at all, which is the usual case."""
    if not Transaction.objects.filter(status=Status.UNMATCHED).exists():
        return 0
    return sum(unmatched_attach(contact_id=contact_id) for contact_id in contact_ids)


def queued_sweep(*, older_than_seconds: int = 60, batch_size: int = 1000) -> int:
    """Enqueue purchases stored but not processed for a while (their enqueue was lost: broker
    down, process killed after commit). Processing is idempotent, so a double enqueue is
    harmless."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Transaction.objects.filter(status=Status.QUEUED, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    for txn_id in ids:
        transaction_enqueue(txn_id)
    return len(ids)
