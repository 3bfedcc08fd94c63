"""Reads of the loyalty app, one module per aggregate."""

from loyalty.selectors.contacts import (
    contact_find,
    contact_get,
    contact_list,
    contact_not_found,
    contact_reference_id,
    contact_resolve,
)

__all__ = [
    "contact_find",
    "contact_get",
    "contact_list",
    "contact_not_found",
    "contact_reference_id",
    "contact_resolve",
]
