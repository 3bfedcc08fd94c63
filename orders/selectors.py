"""Reads of orders: the queue agents and front-end systems work from."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from orders.models import Order, OrderCancellationReason


def order_list(
    *, livemode: bool, status: str | None = None, venue_id=None, since: datetime | None = None
) -> QuerySet[Order]:
    orders = Order.objects.filter(livemode=livemode).select_related("venue", "cancellation_reason", "transaction")
    if status:
        orders = orders.filter(status=status)
    if venue_id:
        orders = orders.filter(venue_id=venue_id)
    if since:
        orders = orders.filter(placed_at__gte=since)
    return orders.prefetch_related("lines")


def cancellation_reasons(*, livemode: bool) -> QuerySet[OrderCancellationReason]:
    return OrderCancellationReason.objects.filter(livemode=livemode, is_active=True)
