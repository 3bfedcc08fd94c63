"""Writes of the contact change feed: the append-only `ContactChange` rows and their purge.

A change row is written by the service that makes the change, inside its transaction, so the
feed holds exactly the committed changes. The row's `xid` is filled by PostgreSQL with the
writing transaction's id; the reader (`loyalty.selectors.changes`) relies on it to never hand
out a position that a still-running transaction could later insert behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from loyalty.models import ContactChange, ContactChangeHorizon

# xid8 has no cast to bigint; through text it is exact (64-bit, epoch included, never wraps).
CURRENT_XID_SQL = "pg_current_xact_id()::text::bigint"


def contact_changes_record(*, livemode: bool, contact_ids: Iterable[uuid.UUID], kind: str) -> None:
    """Append one change per contact. Call inside the transaction that makes the change: the row
    commits (and becomes readable) with it, or not at all. Not idempotent (each call is a change)."""
    contact_ids = list(contact_ids)
    if not contact_ids:
        return
    if connection.vendor != "postgresql":
        ContactChange.objects.bulk_create(
            [ContactChange(livemode=livemode, contact_id=contact_id, kind=kind, xid=0) for contact_id in contact_ids]
        )
        return
    # One statement for any number of rows; the database fills in its own transaction id.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ContactChange._meta.db_table} (livemode, contact_id, kind, xid, created_at) "
            f"SELECT %s, contact_id, %s, {CURRENT_XID_SQL}, %s FROM unnest(%s::uuid[]) AS contact_id",
            [livemode, kind, timezone.now(), contact_ids],
        )


def contact_change_record(*, livemode: bool, contact_id: uuid.UUID, kind: str) -> None:
    """Append one change to a contact (see `contact_changes_record`). The erasure service calls
    it with kind `erased`: the tombstone carries only the contact's id."""
    contact_changes_record(livemode=livemode, contact_ids=[contact_id], kind=kind)


def contact_changes_purge(*, now: datetime | None = None) -> int:
    """Compact the feed: delete changes older than the retention that a newer change of the same
    contact supersedes (the reader always shows the contact's current state, so nothing is lost),
    then erasure tombstones older than the retention, moving the mode's horizon past them (a
    cursor before it gets CURSOR_EXPIRED). Safe to run twice or concurrently with writers.
    Returns the number of rows deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.CONTACT_CHANGES_RETENTION_DAYS)
    newer = ContactChange.objects.filter(livemode=OuterRef("livemode"), contact_id=OuterRef("contact_id")).filter(
        Q(xid__gt=OuterRef("xid")) | Q(xid=OuterRef("xid"), id__gt=OuterRef("id"))
    )
    deleted, _ = ContactChange.objects.filter(created_at__lt=cutoff).filter(Exists(newer)).delete()
    for livemode in (False, True):
        with transaction.atomic():
            tombstones = ContactChange.objects.filter(
                livemode=livemode, kind=ContactChange.Kind.ERASED, created_at__lt=cutoff
            )
            last = tombstones.order_by("-xid", "-id").values_list("xid", "id").first()
            if last is None:
                continue
            horizon, _ = ContactChangeHorizon.objects.select_for_update().get_or_create(livemode=livemode)
            if last > (horizon.xid, horizon.change_id):
                horizon.xid, horizon.change_id = last
                horizon.save()
            count, _ = tombstones.filter(Q(xid__lt=last[0]) | Q(xid=last[0], id__lte=last[1])).delete()
            deleted += count
    return deleted
