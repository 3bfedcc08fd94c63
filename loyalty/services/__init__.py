"""Writes of the loyalty app, one module per aggregate."""

from loyalty.services.changes import contact_change_record, contact_changes_purge
from loyalty.services.contacts import contact_bulk_upsert, contact_create, contact_update, member_number_generate
from loyalty.services.erasure import contact_erase

__all__ = [
    "contact_bulk_upsert",
    "contact_change_record",
    "contact_changes_purge",
    "contact_create",
    "contact_erase",
    "contact_update",
    "member_number_generate",
]
