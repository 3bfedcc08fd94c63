"""Writes of the loyalty app, one module per aggregate."""

from loyalty.services.contacts import contact_create, contact_update, member_number_generate

__all__ = ["contact_create", "contact_update", "member_number_generate"]
