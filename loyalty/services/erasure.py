"""GDPR erasure of a contact: personal data and identifiers go, the money stays.

The contact row is kept because the ledger, accounts, transactions and orders point at it and
balances and reports must still add up; what identified a person is emptied in place. Upper
layers (offers, transactions, orders) clear their own traces through CONTACT_ERASED_HOOKS, so
loyalty never imports them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from core.services import outbox_emit
from loyalty.models import (
    Contact,
    ContactChange,
    ContactErasure,
    ContactExternalId,
    Payout,
    SpendToken,
    WalletPreference,
)
from loyalty.services.changes import contact_change_record

# `function(contact_id=...)` callbacks run inside the erasure's database transaction, so the
# erasure and everything the upper layers clear commit together or not at all. Registered from
# the upper apps' AppConfig.ready() (e.g. offers releases the contact's open offer locks).
CONTACT_ERASED_HOOKS: list[Callable[..., object]] = []


def contact_erased_hook(function: Callable[..., object]) -> Callable[..., object]:
    """Register `function(contact_id=...)` to run in the transaction of every erasure."""
    CONTACT_ERASED_HOOKS.append(function)
    return function


def erased_member_number() -> str:
    """A tombstone for the member number: unique (the constraint stays satisfied), never a valid
    member number (not digits, so no check digit can match), never identifying anyone."""
    return f"erased-{secrets.token_hex(6)}"


def contact_erase(*, contact: Contact, erased_by: str) -> Contact:
    """Erase the contact's personal data (names, birth date, email, phone, attributes, consents,
    external ids, payout references, spend tokens), replace its member number by a tombstone and
    set status `erased`; the ledger, accounts and purchases stay, pointing at the anonymous row.
    Writes a ContactErasure audit row and a `contact.erased` outbox event (payload: the id only).
    Idempotent: erasing an erased contact changes nothing and returns it. Safe to retry."""
    with transaction.atomic():
        # The row lock orders a concurrent update or second erasure behind this one.
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        if contact.status == Contact.Status.ERASED:
            return contact
        now = timezone.now()
        ContactExternalId.objects.filter(contact=contact).delete()
        SpendToken.objects.filter(contact=contact).delete()
        WalletPreference.objects.filter(contact=contact).update(payout_reference="")
        Payout.objects.filter(contact=contact).exclude(reference="").update(reference="")
        contact.member_number = erased_member_number()
        contact.status = Contact.Status.ERASED
        contact.first_name = ""
        contact.last_name = ""
        contact.birth_date = None
        contact.email = None
        contact.mobile_phone = None
        contact.email_consent = False
        contact.sms_consent = False
        contact.consents_updated_at = now
        contact.attributes = {}
        contact.save()
        ContactErasure.objects.create(livemode=contact.livemode, contact=contact, erased_by=erased_by, erased_at=now)
        outbox_emit(livemode=contact.livemode, event_type="contact.erased", payload={"id": str(contact.pk)})
        _contact_change_record_erased(contact)
        for hook in CONTACT_ERASED_HOOKS:
            hook(contact_id=contact.pk)
    return contact


def _contact_change_record_erased(contact: Contact) -> None:
    """The change feed (`GET /contacts/changes`) must list the erasure: the one call site."""
    contact_change_record(livemode=contact.livemode, contact_id=contact.pk, kind=ContactChange.Kind.ERASED)
