"""Campaign test helpers: campaigns built through the definitions service (so tests exercise
the same validation as the admin and the API), and processed purchases and events."""

from __future__ import annotations

from django.utils import timezone

from campaigns.services.definitions import campaign_create
from campaigns.services.events import event_process, event_record
from transactions.models import Transaction
from transactions.services.intake import transaction_intake
from transactions.services.processing import transaction_process
from transactions.tests.factories import purchase


def campaign(*, livemode=False, outcomes=None, status="active", **fields):
    """An active purchase campaign giving 100 points unless told otherwise."""
    fields.setdefault("name", "Campaign")
    fields.setdefault("trigger", "purchase")
    return campaign_create(
        livemode=livemode,
        outcomes=outcomes if outcomes is not None else [{"kind": "points", "points": 100}],
        status=status,
        **fields,
    )


def processed_purchase(external_id, *, contact, livemode=False, **fields) -> Transaction:
    txn, _, _ = transaction_intake(livemode=livemode, purchase=purchase(external_id, contact=contact, **fields))
    return transaction_process(transaction_id=txn.pk)


def processed_event(*, contact, event_type="app_opened", external_id=None, occurred_at=None, **attributes):
    event, _ = event_record(
        livemode=contact.livemode,
        contact=contact,
        event_type=event_type,
        occurred_at=occurred_at or timezone.now(),
        attributes=attributes,
        external_id=external_id,
    )
    return event_process(event_id=event.pk)
