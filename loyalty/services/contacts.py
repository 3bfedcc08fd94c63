"""Writes to contacts. Identifier uniqueness is enforced by the database; the checks here exist
to name the offending field precisely, and a lost race still ends in the same clean 409."""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from core.exceptions import AmbiguousMatch, DomainError, NotFound, ValidationError
from core.validators import is_valid_member_number, luhn_check_digit, normalize_email, normalize_phone
from loyalty.exceptions import ContactNotActive, DuplicateIdentifier
from loyalty.models import Contact, ContactChange, ContactExternalId
from loyalty.selectors.contacts import contact_find
from loyalty.services.changes import contact_change_record, contact_changes_record

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


# Like IDENTIFIERS_ADDED_HOOKS, for `function(contact_ids)` that handle many contacts at once
# (bulk writes announce a whole batch with one call instead of one call per contact).
IDENTIFIERS_ADDED_BATCH_HOOKS: list = []


def identifiers_added_batch_hook(function):
    """Register `function(contact_ids)` to run after commit when contacts gain identifiers."""
    IDENTIFIERS_ADDED_BATCH_HOOKS.append(function)
    return function


def _announce_identifiers(contact: Contact) -> None:
    _announce_identifiers_of([contact.pk])


def _announce_identifiers_of(contact_ids: list[uuid.UUID]) -> None:
    for batch_hook in IDENTIFIERS_ADDED_BATCH_HOOKS:
        transaction.on_commit(lambda batch_hook=batch_hook: batch_hook(list(contact_ids)))
    for hook in IDENTIFIERS_ADDED_HOOKS:
        for contact_id in contact_ids:
            transaction.on_commit(lambda hook=hook, contact_id=contact_id: hook(contact_id))


def _save_with_identifiers(
    *, contact: Contact, external_ids: list[tuple[str, str]], is_new: bool, identifiers_changed: bool = False
) -> None:
    _raise_if_taken(contact=contact, external_ids=external_ids)
    existing = set() if is_new else set(contact.external_ids.values_list("source", "value"))
    new_external_ids = [pair for pair in external_ids if pair not in existing]
    if is_new:
        change_kind = ContactChange.Kind.CREATED
    elif identifiers_changed or new_external_ids:
        change_kind = ContactChange.Kind.IDENTIFIERS_CHANGED
    else:
        change_kind = ContactChange.Kind.UPDATED
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
                # In the same transaction as the change: the feed shows exactly what committed.
                contact_change_record(livemode=contact.livemode, contact_id=contact.pk, kind=change_kind)
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


def _contact_build(
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
) -> tuple[Contact, list[tuple[str, str]]]:
    """A checked, unsaved contact with a new member number, and its normalised external ids."""
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
    return contact, _normalized_external_ids(external_ids)


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
    contact, external_ids = _contact_build(
        livemode=livemode,
        first_name=first_name,
        last_name=last_name,
        email=email,
        mobile_phone=mobile_phone,
        birth_date=birth_date,
        external_ids=external_ids,
        consents=consents,
        attributes=attributes,
    )
    _save_with_identifiers(contact=contact, external_ids=external_ids, is_new=True)
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
    identifiers_before = (contact.email, contact.mobile_phone)
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
    _save_with_identifiers(
        contact=contact,
        external_ids=external_ids,
        is_new=False,
        identifiers_changed=(contact.email, contact.mobile_phone) != identifiers_before,
    )


BULK_MAX_ROWS = 1000


@dataclass
class BulkRowResult:
    index: int
    status: str  # created | updated | error
    contact_id: uuid.UUID | None = None
    error: DomainError | None = None


def _match_key_as_identifier(row: dict[str, Any]) -> dict[str, Any]:
    """The fields to create a contact from a row that matched nobody: its match key becomes one
    of the new contact's identifiers, so the next upsert with that key finds it."""
    fields = {key: value for key, value in row.items() if key not in ("match_key", "match_key_type", "source")}
    match_key, match_key_type = row["match_key"], row["match_key_type"]
    if match_key_type == "member_number":
        # Member numbers are ours to assign: one that matches nobody is not a new contact.
        raise NotFound(
            f"No contact with member_number '{match_key}'; member numbers cannot be chosen.",
            parameters=[NotFound.parameter("match_key", value=match_key, match_key_type=match_key_type)],
        )
    if match_key_type in ("email", "mobile_phone") and not fields.get(match_key_type):
        fields[match_key_type] = match_key
    if match_key_type == "external_id":
        external_ids = list(fields.get("external_ids") or [])
        own = {"source": row.get("source") or "", "id": match_key}
        if not any(
            (entry.get("source") or "", entry.get("id")) == (own["source"], own["id"]) for entry in external_ids
        ):
            external_ids.append(own)
        fields["external_ids"] = external_ids
    return fields


def _update_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in ("match_key", "match_key_type", "source")}


def _bulk_row_upsert(*, livemode: bool, index: int, row: dict[str, Any]) -> BulkRowResult:
    """One row on its own savepoint: found by its match key → updated, else created."""
    for attempt in range(2):
        contact = None
        try:
            with transaction.atomic():
                try:
                    contact = contact_find(
                        livemode=livemode,
                        match_key=row["match_key"],
                        match_key_type=row["match_key_type"],
                        source=row.get("source"),
                    )
                except NotFound:
                    contact = contact_create(livemode=livemode, **_match_key_as_identifier(row))
                    return BulkRowResult(index=index, status="created", contact_id=contact.pk)
                contact_update(contact=contact, **_update_fields(row))
                return BulkRowResult(index=index, status="updated", contact_id=contact.pk)
        except DuplicateIdentifier as error:
            if attempt == 0 and contact is None:
                continue  # a concurrent writer may just have created the contact: look it up again
            return BulkRowResult(index=index, status="error", error=error)
        except DomainError as error:
            return BulkRowResult(index=index, status="error", error=error)
    raise AssertionError("unreachable")


def _identifier_keys(contact: Contact, external_ids: list[tuple[str, str]]) -> list[tuple]:
    keys: list[tuple] = [("external_id", source, value) for source, value in external_ids]
    if contact.email:
        keys.append(("email", contact.email.lower()))
    if contact.mobile_phone:
        keys.append(("mobile_phone", contact.mobile_phone))
    return keys


def _update_identifier_keys(row: dict[str, Any]) -> list[tuple]:
    keys: list[tuple] = []
    try:
        if row.get("email"):
            keys.append(("email", normalize_email(row["email"]).lower()))
        if row.get("mobile_phone"):
            keys.append(("mobile_phone", normalize_phone(row["mobile_phone"])))
        keys += [
            ("external_id", source, value) for source, value in _normalized_external_ids(row.get("external_ids") or [])
        ]
    except DomainError:
        pass  # the row fails on its own when it is applied
    return keys


def _match_keys_found(*, livemode: bool, rows: dict[int, dict[str, Any]]) -> dict[int, uuid.UUID | DomainError | None]:
    """Each row's match key → the one contact it names, None (nobody) or the error, in a few
    queries for the whole batch."""
    found: dict[int, uuid.UUID | DomainError | None] = {}
    wanted: dict[str, dict[int, Any]] = {"member_number": {}, "mobile_phone": {}, "email": {}, "external_id": {}}
    for index, row in rows.items():
        match_key, match_key_type = row["match_key"], row["match_key_type"]
        try:
            if match_key_type == "member_number":
                member_number = match_key.replace(" ", "")
                if not is_valid_member_number(member_number):
                    raise ValidationError.for_field(
                        "match_key", f"'{match_key}' is not a valid member number (check digit)."
                    )
                wanted["member_number"][index] = member_number
            elif match_key_type == "mobile_phone":
                wanted["mobile_phone"][index] = normalize_phone(match_key, field="match_key")
            elif match_key_type == "email":
                wanted["email"][index] = normalize_email(match_key, field="match_key").lower()
            else:
                wanted["external_id"][index] = (row.get("source"), match_key)
        except DomainError as error:
            found[index] = error
    contacts = Contact.objects.filter(livemode=livemode)
    by_member_number = dict(
        contacts.filter(member_number__in=set(wanted["member_number"].values())).values_list("member_number", "pk")
    )
    by_phone = dict(
        contacts.filter(mobile_phone__in=set(wanted["mobile_phone"].values())).values_list("mobile_phone", "pk")
    )
    by_email = dict(
        contacts.alias(email_lower=Lower("email"))
        .filter(email_lower__in=set(wanted["email"].values()))
        .annotate(key=Lower("email"))
        .values_list("key", "pk")
    )
    external_rows = ContactExternalId.objects.filter(
        livemode=livemode, value__in={value for _source, value in wanted["external_id"].values()}
    ).values_list("source", "value", "contact_id")
    by_external_id: dict[str, dict[str, uuid.UUID]] = {}
    for source, value, contact_id in external_rows:
        by_external_id.setdefault(value, {})[source] = contact_id
    for index, key in wanted["member_number"].items():
        found[index] = by_member_number.get(key)
    for index, key in wanted["mobile_phone"].items():
        found[index] = by_phone.get(key)
    for index, key in wanted["email"].items():
        found[index] = by_email.get(key)
    for index, (source, value) in wanted["external_id"].items():
        sources = by_external_id.get(value, {})
        if source is not None:
            found[index] = sources.get(source)
            continue
        contact_ids = set(sources.values())
        if len(contact_ids) > 1:
            found[index] = AmbiguousMatch(
                f"external_id '{value}' matches {len(contact_ids)} contacts; give its source.",
                parameters=[AmbiguousMatch.parameter("match_key", value=value, contacts=sorted(map(str, contact_ids)))],
            )
        else:
            found[index] = next(iter(contact_ids), None)
    return found


def contact_bulk_upsert(*, livemode: bool, rows: list[tuple[int, dict[str, Any]]]) -> list[BulkRowResult]:
    """Upsert each `(index, row)` by its match key: found → `contact_update`, not found →
    `contact_create` with the match key as one of its identifiers (an external id becomes a
    permanent identifier). Every row succeeds or fails alone (its own savepoint); one whose
    identifiers belong to another contact fails with DuplicateIdentifier. The result is as if
    the rows were applied one after the other, in order. Safe to retry: a repeat finds the
    contacts the first run created and updates them.

    New contacts whose identifiers collide with nothing are inserted together (a few
    statements for the batch); every other row goes through the one-row services.
    """
    if len(rows) > BULK_MAX_ROWS:
        raise ValidationError.for_field("contacts", f"At most {BULK_MAX_ROWS} contacts per request.")
    by_index = dict(rows)
    results: dict[int, BulkRowResult] = {}
    found = _match_keys_found(livemode=livemode, rows=by_index)
    slow: list[int] = []
    built: dict[int, tuple[Contact, list[tuple[str, str]]]] = {}
    key_counts: Counter = Counter()
    keys_of: dict[int, list[tuple]] = {}
    for index, row in rows:
        match = found.get(index)
        if isinstance(match, DomainError):
            results[index] = BulkRowResult(index=index, status="error", error=match)
            continue
        if match is not None:
            slow.append(index)
            keys_of[index] = [("contact", match), *_update_identifier_keys(row)]
        else:
            try:
                built[index] = _contact_build(livemode=livemode, **_match_key_as_identifier(row))
            except DomainError as error:
                results[index] = BulkRowResult(index=index, status="error", error=error)
                continue
            keys_of[index] = _identifier_keys(*built[index])
        key_counts.update(set(keys_of[index]))
    # Rows that share an identifier (or a contact) with another row must see each other's
    # writes: they go one by one, in order. So must rows whose identifiers are already taken
    # (the one-row service names the holder precisely).
    shared = {index for index, keys in keys_of.items() if any(key_counts[key] > 1 for key in keys)}
    taken = _taken_identifier_keys(livemode=livemode, keys={key for i in built for key in keys_of[i]})
    fast = [index for index in built if index not in shared and not taken.intersection(keys_of[index])]
    slow += [index for index in built if index not in fast]
    if fast:
        try:
            with transaction.atomic():
                contacts = [built[index][0] for index in fast]
                Contact.objects.bulk_create(contacts)
                ContactExternalId.objects.bulk_create(
                    [
                        ContactExternalId(livemode=livemode, contact=contact, source=source, value=value)
                        for contact, external_ids in (built[index] for index in fast)
                        for source, value in external_ids
                    ]
                )
                contact_changes_record(
                    livemode=livemode, contact_ids=[contact.pk for contact in contacts], kind=ContactChange.Kind.CREATED
                )
                _announce_identifiers_of([contact.pk for contact in contacts])
            for index in fast:
                results[index] = BulkRowResult(index=index, status="created", contact_id=built[index][0].pk)
        except IntegrityError:
            # A concurrent writer (or a member number drawn twice): redo these one by one.
            slow += fast
    for index in sorted(slow):
        results[index] = _bulk_row_upsert(livemode=livemode, index=index, row=by_index[index])
    return [results[index] for index, _row in rows]


def _taken_identifier_keys(*, livemode: bool, keys: set[tuple]) -> set[tuple]:
    emails = {key[1] for key in keys if key[0] == "email"}
    phones = {key[1] for key in keys if key[0] == "mobile_phone"}
    external_ids = {(key[1], key[2]) for key in keys if key[0] == "external_id"}
    contacts = Contact.objects.filter(livemode=livemode)
    taken: set[tuple] = set()
    if emails:
        taken |= {
            ("email", email)
            for email in contacts.annotate(email_lower=Lower("email"))
            .filter(email_lower__in=emails)
            .values_list("email_lower", flat=True)
        }
    if phones:
        taken |= {
            ("mobile_phone", phone)
            for phone in contacts.filter(mobile_phone__in=phones).values_list("mobile_phone", flat=True)
        }
    if external_ids:
        existing = ContactExternalId.objects.filter(
            livemode=livemode, value__in={value for _source, value in external_ids}
        ).values_list("source", "value")
        taken |= {("external_id", source, value) for source, value in existing if (source, value) in external_ids}
    return taken
