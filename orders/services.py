"""Orders: placing, and the one guarded transition service behind start, complete and cancel.

Each transition is `UPDATE … SET status = <to> WHERE id = … AND status IN (<from>)`: when a
complete and a cancel race on one order, exactly one update finds the row in an allowed
status; the other gets OrderStateConflict. Completing creates the order's purchase, which is
processed like any other (points, campaigns) — in the same database transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.baskets import BasketLine
from core.exceptions import Conflict, NotFound, ValidationError
from core.money import check_currency, format_minor
from core.services import outbox_emit
from loyalty.models import Contact
from orders.models import Order, OrderCancellationReason, OrderLine, OrderStatusChange
from transactions.services.intake import Purchase, transaction_intake

Status = Order.Status

# action: (statuses it may start from, status it leads to, timestamp field it sets)
TRANSITIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "start": (frozenset({Status.NEW}), Status.IN_PROGRESS, "started_at"),
    "complete": (frozenset({Status.NEW, Status.IN_PROGRESS}), Status.COMPLETED, "completed_at"),
    "cancel": (frozenset({Status.NEW, Status.IN_PROGRESS}), Status.CANCELLED, "cancelled_at"),
}


class OrderStateConflict(Conflict):
    code = "ORDER_STATE_CONFLICT"
    default_message = "The order is no longer in a state that allows this."


def _event(order: Order, event_type: str, **extra: Any) -> None:
    outbox_emit(
        livemode=order.livemode,
        event_type=event_type,
        payload={
            "order_id": str(order.pk),
            "contact_id": str(order.contact_id),
            "venue_id": str(order.venue_id),
            "status": order.status,
            "fulfilment": order.fulfilment,
            "amount": format_minor(order.amount, order.currency),
            "currency": order.currency,
            **extra,
        },
    )


@transaction.atomic
def order_place(
    *,
    contact: Contact,
    venue,
    lines: list[BasketLine],
    currency: str,
    fulfilment: str = Order.Fulfilment.PICK_UP,
    notes: str = "",
    actor: str = "",
) -> Order:
    """A contact's order from the app, new in the venue's queue; `order.placed` goes out through
    the outbox so a front-end system can print or fulfil it. Raises ValidationError."""
    if contact.status != Contact.Status.ACTIVE:
        raise Conflict("The contact is not active.", parameters=[Conflict.parameter("contact")])
    if venue is None:
        raise ValidationError.for_field("venue", "An order is placed at a venue.")
    if venue.livemode != contact.livemode:
        raise NotFound("No such venue in this mode.", parameters=[NotFound.parameter("venue")])
    if not lines:
        raise ValidationError.for_field("lines", "An order needs at least one line.")
    if fulfilment not in Order.Fulfilment.values:
        raise ValidationError.for_field("fulfilment", "Use pick_up or delivery.")
    order = Order.objects.create(
        livemode=contact.livemode,
        contact=contact,
        venue=venue,
        fulfilment=fulfilment,
        notes=notes,
        currency=check_currency(currency),
        amount=sum(line.amount for line in lines),
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            line_number=index,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=line.unit_price if line.unit_price is not None else line.amount,
            amount=line.amount,
        )
        for index, line in enumerate(lines)
    )
    OrderStatusChange.objects.create(order=order, to_status=Status.NEW, actor=actor)
    _event(
        order,
        "order.placed",
        lines=[
            {"sku": line.sku, "quantity": str(line.quantity), "amount": format_minor(line.amount, order.currency)}
            for line in lines
        ],
    )
    return order


def order_transition(
    *,
    order: Order,
    action: str,
    actor: str = "",
    cancellation_reason: OrderCancellationReason | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Order:
    """Start, complete or cancel an order (cancel needs a reason). Raises ValidationError,
    OrderStateConflict (the order moved on — e.g. another agent completed it)."""
    if action not in TRANSITIONS:
        raise ValidationError.for_field("action", f"Use one of: {', '.join(TRANSITIONS)}.")
    allowed_from, to_status, stamp = TRANSITIONS[action]
    if action == "cancel" and cancellation_reason is None:
        raise ValidationError.for_field("cancellation_reason", "Cancelling an order needs a reason.")
    now = now or timezone.now()
    with transaction.atomic():
        changes = {"status": to_status, stamp: now}
        if action == "cancel":
            changes["cancellation_reason"] = cancellation_reason
        updated = Order.objects.filter(pk=order.pk, status__in=allowed_from).update(**changes)
        if not updated:
            current = Order.objects.filter(pk=order.pk).values_list("status", flat=True).first()
            raise OrderStateConflict(
                f"The order is {current}; it cannot be {to_status.replace('_', ' ')} now.",
                parameters=[OrderStateConflict.parameter("id", value=str(order.pk), status=current)],
            )
        from_status = order.status
        order.refresh_from_db()
        OrderStatusChange.objects.create(
            order=order,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            note=note or (cancellation_reason.name if cancellation_reason else ""),
            created_at=now,
        )
        if action == "complete":
            order.transaction = _purchase_for(order, now)
            Order.objects.filter(pk=order.pk).update(transaction=order.transaction)
            _event(order, "order.completed", transaction_id=order.transaction.external_id)
        elif action == "cancel":
            _event(order, "order.cancelled", cancellation_reason=cancellation_reason.code)
    return order


def _purchase_for(order: Order, now: datetime):
    lines = [
        BasketLine(sku=line.sku, amount=line.amount, quantity=Decimal(line.quantity), unit_price=line.unit_price)
        for line in order.lines.all()
    ]
    txn, _, _ = transaction_intake(
        livemode=order.livemode,
        purchase=Purchase(
            external_id=f"order:{order.pk}",
            fingerprint=f"order:{order.pk}",
            occurred_at=now,
            currency=order.currency,
            lines=lines,
            contact_reference={"id": str(order.contact_id)},
            venue=order.venue,
            channel="mobile",
            receipt_number=str(order.pk)[:8],
        ),
    )
    return txn


def cancellation_reason_get(*, livemode: bool, reason_id) -> OrderCancellationReason:
    reason = OrderCancellationReason.objects.filter(livemode=livemode, is_active=True)
    reason = reason.filter(pk=reason_id).first() if str(reason_id).isdigit() else reason.filter(code=reason_id).first()
    if reason is None:
        raise ValidationError.for_field("cancellation_reason", f"No active cancellation reason '{reason_id}'.")
    return reason


def contact_orders_anonymise(*, contact_id) -> int:
    """Erasure: clear the free-text notes of the contact's orders (they may name a person or an
    address); lines, amounts and history stay. Idempotent."""
    return Order.objects.filter(contact_id=contact_id).exclude(notes="").update(notes="")
