"""Reads of the contact change feed: pages of committed changes in commit-safe order.

Order is (xid, id): the writing transaction's id, then the row id. A page only holds rows whose
transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below that
has ended, so no row can still appear before the last one handed out, however the writers'
commits interleave. A transaction still running holds the feed back (rows after it wait), it
never makes a cursor skip its changes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.utils.crypto import salted_hmac

from core.exceptions import ValidationError
from loyalty.exceptions import CursorExpired
from loyalty.models import Contact, ContactChange, ContactChangeHorizon, ContactExternalId
from loyalty.selectors.contacts import contact_list

MAX_PAGE_SIZE = 1000
CURSOR_VERSION = "v1"
_CURSOR_SALT = "loyalty.contact-changes.cursor"
_SNAPSHOT_XMIN_SQL = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def _cursor_mac(livemode: bool, xid: int, change_id: int) -> str:
    return salted_hmac(_CURSOR_SALT, f"{CURSOR_VERSION}:{int(livemode)}:{xid}:{change_id}").hexdigest()[:24]


def contact_changes_cursor(*, livemode: bool, xid: int, change_id: int) -> str:
    """An opaque, signed position in the feed (after the change (xid, change_id))."""
    text = f"{CURSOR_VERSION}:{xid}:{change_id}:{_cursor_mac(livemode, xid, change_id)}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _invalid_cursor() -> ValidationError:
    return ValidationError.for_field(
        "cursor", "Not a cursor of this feed: give back a next_cursor exactly as received, or none to start over."
    )


def contact_changes_cursor_position(*, livemode: bool, cursor: str) -> tuple[int, int]:
    """(xid, change id) of a cursor; ValidationError naming `cursor` if it is not one we signed
    for this mode; (0, 0) for an empty cursor (the beginning)."""
    if not cursor:
        return 0, 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, xid_text, id_text, mac = text.split(":")
        xid, change_id = int(xid_text), int(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid_cursor() from None
    if version != CURSOR_VERSION or not hmac.compare_digest(mac, _cursor_mac(livemode, xid, change_id)):
        raise _invalid_cursor()
    return xid, change_id


class ChangeRow(NamedTuple):
    id: int
    xid: int
    kind: str
    contact_id: uuid.UUID
    created_at: datetime


def _id_among(table: str, column: str, ids: list[uuid.UUID]):
    """`column = ANY(ids)`: one array parameter instead of an IN list of a thousand, which costs
    PostgreSQL more to parse and plan than to answer."""
    if connection.vendor != "postgresql":
        return Q(**{f"{column}__in": ids})
    return RawSQL(f'"{table}"."{column}" = ANY(%s::uuid[])', [ids], output_field=BooleanField())


@dataclass
class ContactChangePage:
    changes: list[ChangeRow]
    contacts: dict[uuid.UUID, Contact] = field(default_factory=dict)
    next_cursor: str = ""
    has_more: bool = False


def contact_changes_page(*, livemode: bool, cursor: str = "", page_size: int = MAX_PAGE_SIZE) -> ContactChangePage:
    """Up to `page_size` changes after `cursor`, oldest first, with the changed contacts as they
    are now (erased or vanished contacts are absent from `contacts`; each present one carries its
    external ids in `external_id_pairs`). `next_cursor` is always set: resuming from it after
    any crash neither skips nor repeats a change.

    Raises ValidationError (a cursor that is not ours) and CursorExpired (older than a purge).
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError.for_field("page_size", f"page_size is 1 to {MAX_PAGE_SIZE}.")
    xid, change_id = contact_changes_cursor_position(livemode=livemode, cursor=cursor)
    if cursor:
        horizon = ContactChangeHorizon.objects.filter(livemode=livemode).values_list("xid", "change_id").first()
        if horizon is not None and (xid, change_id) < horizon:
            raise CursorExpired(parameters=[CursorExpired.parameter("cursor")])
    changes = ContactChange.objects.filter(livemode=livemode, xid__gte=xid).exclude(xid=xid, id__lte=change_id)
    if connection.vendor == "postgresql":
        # Only rows of transactions that have all ended: none can still commit behind them. Read
        # first, as a value: xmin only grows, so every row below it is final for the next
        # statement too, and a literal bound lets the planner walk the index in feed order.
        with connection.cursor() as database_cursor:
            database_cursor.execute(f"SELECT {_SNAPSHOT_XMIN_SQL}")
            (snapshot_xmin,) = database_cursor.fetchone()
        changes = changes.filter(xid__lt=snapshot_xmin)
    rows = [
        ChangeRow(*values)
        for values in changes.order_by("xid", "id").values_list("id", "xid", "kind", "contact_id", "created_at")[
            : page_size + 1
        ]
    ]
    has_more = len(rows) > page_size
    rows = rows[:page_size]
    if rows:
        last = rows[-1]
        cursor = contact_changes_cursor(livemode=livemode, xid=last.xid, change_id=last.id)
    elif not cursor:
        cursor = contact_changes_cursor(livemode=livemode, xid=0, change_id=0)
    wanted = list({row.contact_id for row in rows if row.kind != ContactChange.Kind.ERASED})
    contacts = {
        contact.pk: contact
        for contact in contact_list(livemode=livemode, with_identifiers=False)
        .filter(_id_among("loyalty_contact", "id", wanted))
        .exclude(status=Contact.Status.ERASED)
        .order_by()
    }
    # External ids as plain pairs: a thousand model instances and the prefetch machinery would
    # cost more than every query of the page together.
    for contact in contacts.values():
        contact.external_id_pairs = []
    external_ids = (
        ContactExternalId.objects.filter(_id_among("loyalty_contactexternalid", "contact_id", list(contacts)))
        .order_by("id")
        .values_list("contact_id", "source", "value")
    )
    for contact_id, source, value in external_ids:
        contacts[contact_id].external_id_pairs.append({"source": source, "id": value})
    return ContactChangePage(changes=rows, contacts=contacts, next_cursor=cursor, has_more=has_more)
