"""Reads of orders: the queue agents and front-end systems work from; and the GDPR export of
everything held about a contact, which crosses every app and so lives in the top-most one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import QuerySet
from django.utils import timezone

from loyalty.models import (
    Account,
    Contact,
    ContactErasure,
    ContactExternalId,
    ContactTier,
    LedgerEntry,
    Payout,
    SpendToken,
    TierHistory,
    WalletPreference,
)
from loyalty.selectors.contacts import CONTACT_EXPORT_SECTIONS
from loyalty.selectors.wallets import wallet_summary
from offers.models import IssuedOffer
from orders.models import Order, OrderCancellationReason
from transactions.models import Claim, Return, Transaction


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


# --- GDPR right of access --------------------------------------------------------------------
# The export crosses every app, so it lives in the top-most one (orders may import them all).

EXPORT_SECRET_FIELDS = {"code_hash"}  # a spend token's hash is a credential, not data about the person


def _row(instance: models.Model, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every stored column of a row (foreign keys as their ids), secrets left out; the values are
    the API renderer's to encode (UUIDs, datetimes, decimals)."""
    row = {}
    for field in instance._meta.concrete_fields:
        if field.name in exclude or field.name in EXPORT_SECRET_FIELDS:
            continue
        row[field.attname] = getattr(instance, field.attname)
    return row


def contact_export(*, contact: Contact) -> dict[str, Any]:
    """Everything held about the contact, as one JSON-ready document (right of access): profile,
    identifiers, consents, wallet, ledger, payouts, tiers, issued offers with their history,
    purchases with their lines, returns, receipt claims and orders, and the sections other apps
    register (campaigns: events, awards, goal progress). A fixed number of queries."""
    contact_id = contact.pk
    issued_offers = (
        IssuedOffer.objects.filter(contact_id=contact_id)
        .select_related("offer")
        .prefetch_related("transitions")
        .order_by("issued_at", "id")
    )
    transactions = (
        Transaction.objects.filter(contact_id=contact_id)
        .prefetch_related("items", "discounts", "events")
        .order_by("occurred_at", "id")
    )
    orders = (
        Order.objects.filter(contact_id=contact_id).prefetch_related("lines", "history").order_by("placed_at", "id")
    )
    tier = ContactTier.objects.filter(contact_id=contact_id).first()
    preference = WalletPreference.objects.filter(contact_id=contact_id).first()
    erasure = ContactErasure.objects.filter(contact_id=contact_id).first()
    return {
        "generated_at": timezone.now(),
        "contact": {**_row(contact), "consents": contact.consents},
        "external_ids": [
            _row(external_id, exclude=("contact",))
            for external_id in ContactExternalId.objects.filter(contact_id=contact_id).order_by("id")
        ],
        "erasure": {"erased_at": erasure.erased_at} if erasure else None,
        "wallet": wallet_summary(contact=contact),
        "wallet_preference": _row(preference) if preference else None,
        "accounts": [_row(account) for account in Account.objects.filter(contact_id=contact_id).order_by("id")],
        "ledger": [_row(entry) for entry in LedgerEntry.objects.filter(contact_id=contact_id).order_by("id")],
        "payouts": [_row(payout) for payout in Payout.objects.filter(contact_id=contact_id).order_by("created_at")],
        "spend_tokens": [
            _row(token) for token in SpendToken.objects.filter(contact_id=contact_id).order_by("created_at")
        ],
        "tier": _row(tier) if tier else None,
        "tier_history": [
            _row(change) for change in TierHistory.objects.filter(contact_id=contact_id).order_by("created_at")
        ],
        "offers": [
            {
                **_row(issued),
                "offer": {"id": str(issued.offer_id), "name": issued.offer.name},
                "history": [_row(step, exclude=("issued_offer",)) for step in issued.transitions.all()],
            }
            for issued in issued_offers
        ],
        "transactions": [
            {
                **_row(txn),
                "items": [_row(item, exclude=("transaction",)) for item in txn.items.all()],
                "discounts": [_row(discount, exclude=("transaction",)) for discount in txn.discounts.all()],
                "events": [_row(event, exclude=("transaction",)) for event in txn.events.all()],
            }
            for txn in transactions
        ],
        "returns": [_row(record) for record in Return.objects.filter(contact_id=contact_id).order_by("created_at")],
        "claims": [_row(claim) for claim in Claim.objects.filter(contact_id=contact_id).order_by("created_at")],
        "orders": [
            {
                **_row(order),
                "lines": [_row(line, exclude=("order",)) for line in order.lines.all()],
                "history": [_row(change, exclude=("order",)) for change in order.history.all()],
            }
            for order in orders
        ],
        **{name: section(contact_id) for name, section in CONTACT_EXPORT_SECTIONS.items()},
    }
