"""Writes to contacts. Identifier uniqueness is enforced by the database; the checks here exist
to name the offending field precisely, and a lost race still ends in the same clean 409."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import date
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from core.exceptions import ValidationError
from core.validators import luhn_check_digit, normalize_email, normalize_phone
from loyalty.exceptions import ContactNotActive, DuplicateIdentifier
from loyalty.models import Contact, ContactExternalId

MEMBER_NUMBER_LENGTH = 12
MAX_ATTRIBUTES = 200
PROFILE_FIELDS = ("first_name", "last_name", "birth_date")


def member_number_generate() -> str:
    """A random member number of MEMBER_NUMBER_LENGTH digits whose last digit is a Luhn check."""
    prefix = settings.MEMBER_NUMBER_PREFIX
    body_length = MEMBER_NUMBER_LENGTH - 1 - len(prefix)
    body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(body_length))
    return body + luhn_check_digit(body)


def _normalized_external_ids(external_ids: Iterable[dict[str, str]]) -> list[tuple[str, str]]:
    pairs = []
    for index, external_id in enumerate(external_ids):
        value = (external_id.get("id") or "").strip()
        if not value:
            raise ValidationError.for_field(f"external_ids.{index}.id", "An external id needs a value.")
        pairs.append(((external_id.get("source") or "").strip(), value))
    if len(set(pairs)) != len(pairs):
        raise ValidationError.for_field("external_ids", "The same external id is given twice.")
    return pairs


def _check_attributes(attributes: dict[str, Any]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValidationError.for_field("attributes", f"At most {MAX_ATTRIBUTES} custom attributes.")
    for key in attributes:
        if not key or len(key) > 64:
            raise ValidationError.for_field(f"attributes.{key}", "Attribute names are 1 to 64 characters.")


def _check_birth_date(birth_date: date | None) -> None:
    if birth_date is not None and birth_date > timezone.localdate():
        raise ValidationError.for_field("birth_date", "A birth date cannot be in the future.")


def _raise_if_taken(*, contact: Contact, external_ids: list[tuple[str, str]]) -> None:
    """Name the identifier another contact of this mode already holds, if any."""
    others = Contact.objects.filter(livemode=contact.livemode).exclude(pk=contact.pk)
    taken = []
    if contact.email and others.alias(email_lower=Lower("email")).filter(email_lower=contact.email.lower()).exists():
        taken.append(DuplicateIdentifier.parameter("email", value=contact.email))
    if contact.mobile_phone and others.filter(mobile_phone=contact.mobile_phone).exists():
        taken.append(DuplicateIdentifier.parameter("mobile_phone", value=contact.mobile_phone))
    for index, (source, value) in enumerate(external_ids):
        if (
            ContactExternalId.objects.filter(livemode=contact.livemode, source=source, value=value)
            .exclude(contact_id=contact.pk)
            .exists()
        ):
            taken.append(DuplicateIdentifier.parameter(f"external_ids.{index}", value=value, source=source))
    if taken:
        names = ", ".join(entry["name"] for entry in taken)
        raise DuplicateIdentifier(f"Another contact already has this identifier: {names}.", parameters=taken)


# Callbacks run after the commit of any change that may give a contact a new identifier
# (registration, a new phone/email, an added external id). Upper layers register here — e.g.
# transactions attaches purchases that were waiting for that identifier — so loyalty never
# imports them.
IDENTIFIERS_ADDED_HOOKS: list = []


def identifiers_added_hook(function):
    """Register `function(contact_id)` to run after commit when a contact gains identifiers."""
    IDENTIFIERS_ADDED_HOOKS.append(function)
    return function


def _announce_identifiers(contact: Contact) -> None:
    contact_id = contact.pk
    for hook in IDENTIFIERS_ADDED_HOOKS:
        transaction.on_commit(lambda hook=hook: hook(contact_id))


def _save_with_identifiers(*, contact: Contact, external_ids: list[tuple[str, str]], is_new: bool) -> None:
    _raise_if_taken(contact=contact, external_ids=external_ids)
    existing = set() if is_new else set(contact.external_ids.values_list("source", "value"))
    new_external_ids = [pair for pair in external_ids if pair not in existing]
    for _attempt in range(5):
        try:
            with transaction.atomic():
                contact.save()
                ContactExternalId.objects.bulk_create(
                    [
                        ContactExternalId(livemode=contact.livemode, contact=contact, source=source, value=value)
                        for source, value in new_external_ids
                    ]
                )
                _announce_identifiers(contact)
            return
        except IntegrityError:
            member_number_taken = (
                is_new
                and Contact.objects.filter(livemode=contact.livemode, member_number=contact.member_number).exists()
            )
            if not member_number_taken:
                # A concurrent writer took an identifier between the check and the insert.
                _raise_if_taken(contact=contact, external_ids=external_ids)
                raise DuplicateIdentifier() from None
            contact.member_number = member_number_generate()
    raise RuntimeError("Could not allocate a free member number after 5 attempts.")


def contact_create(
    *,
    livemode: bool,
    first_name: str = "",
    last_name: str = "",
    email: str | None = None,
    mobile_phone: str | None = None,
    birth_date: date | None = None,
    external_ids: Iterable[dict[str, str]] = (),
    consents: dict[str, bool] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Contact:
    """Register a contact with a new member number; all of it is written or none of it.

    Raises ValidationError (malformed phone/email/ids) and DuplicateIdentifier (taken in this mode).
    """
    attributes = attributes or {}
    _check_attributes(attributes)
    _check_birth_date(birth_date)
    contact = Contact(
        livemode=livemode,
        member_number=member_number_generate(),
        first_name=first_name,
        last_name=last_name,
        birth_date=birth_date,
        email=normalize_email(email) if email else None,
        mobile_phone=normalize_phone(mobile_phone) if mobile_phone else None,
        attributes=attributes,
    )
    if consents:
        contact.email_consent = bool(consents.get("email", False))
        contact.sms_consent = bool(consents.get("sms", False))
        contact.consents_updated_at = timezone.now()
    _save_with_identifiers(contact=contact, external_ids=_normalized_external_ids(external_ids), is_new=True)
    return contact


def contact_update(*, contact: Contact, **changes: Any) -> Contact:
    """Change profile fields; `email`/`mobile_phone` None removes them; `attributes` merges (a
    None value deletes that attribute); `external_ids` adds identifiers (they are permanent);
    `consents` sets the consents given. Safe under concurrent updates: the row is locked and
    re-read first. Raises ValidationError, DuplicateIdentifier, ContactNotActive (erased)."""
    with transaction.atomic():
        # Changes applied to a stale copy would undo a concurrent writer's (every column is
        # saved, attributes are merged): re-read the row under its lock, then change it.
        contact.refresh_from_db(from_queryset=Contact.objects.select_for_update())
        if contact.status == Contact.Status.ERASED:
            raise ContactNotActive(
                "An erased contact cannot be changed.",
                parameters=[ContactNotActive.parameter("id", value=str(contact.pk))],
            )
        _apply_changes(contact=contact, changes=changes)
    return contact


def _apply_changes(*, contact: Contact, changes: dict[str, Any]) -> None:
    for field in PROFILE_FIELDS:
        if field in changes:
            setattr(contact, field, changes[field])
    _check_birth_date(contact.birth_date)
    if "email" in changes:
        contact.email = normalize_email(changes["email"]) if changes["email"] else None
    if "mobile_phone" in changes:
        contact.mobile_phone = normalize_phone(changes["mobile_phone"]) if changes["mobile_phone"] else None
    if "status" in changes:
        if changes["status"] not in (Contact.Status.ACTIVE, Contact.Status.BLOCKED):
            raise ValidationError.for_field("status", "Status can be set to active or blocked.")
        contact.status = changes["status"]
    if changes.get("consents"):
        consents = changes["consents"]
        contact.email_consent = bool(consents.get("email", contact.email_consent))
        contact.sms_consent = bool(consents.get("sms", contact.sms_consent))
        contact.consents_updated_at = timezone.now()
    if changes.get("attributes"):
        merged = {**contact.attributes, **changes["attributes"]}
        contact.attributes = {key: value for key, value in merged.items() if value is not None}
        _check_attributes(contact.attributes)
    external_ids = _normalized_external_ids(changes.get("external_ids") or [])
    _save_with_identifiers(contact=contact, external_ids=external_ids, is_new=False)
