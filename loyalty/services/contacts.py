"""Writes to contacts. Identifier uniqueness is enforced by the database; the checks here exist
to name the offending field precisely, and a lost race still ends in the same clean 409."""

from __future__ import annotations

import copy
import json
import secrets
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone

from core.exceptions import AmbiguousMatch, DomainError, NotFound, ValidationError
from core.services import outbox_emit, outbox_emit_many
from core.validators import is_valid_member_number, luhn_check_digit, normalize_email, normalize_phone
from loyalty.exceptions import ContactNotActive, DuplicateIdentifier
from loyalty.models import Contact, ContactChange, ContactExternalId, ContactTier
from loyalty.selectors.contacts import contact_find
from loyalty.services.changes import contact_change_record, contact_changes_record

MEMBER_NUMBER_LENGTH = 12
MAX_ATTRIBUTES = 200
PROFILE_FIELDS = ("first_name", "last_name", "birth_date")


def member_number_generate() -> str:
    """A random member number of MEMBER_NUMBER_LENGTH digits whose last digit is a Luhn check."""
    prefix = settings.MEMBER_NUMBER_PREFIX
    body_length = MEMBER_NUMBER_LENGTH - 1 - len(prefix)
    body = prefix + f"{secrets.randbelow(10**body_length):0{body_length}d}"  # one draw: bulk writes make thousands
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


def contact_event_payload(
    contact: Contact,
    external_ids: Iterable[tuple[str, str]],
    *,
    tier: str | None,
    changed_fields: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The `data` of contact.created / contact.updated: what an external system needs to keep
    its copy (identifiers, status, tier) and no more personal data than that: names, birth
    date and attributes stay here. Email and phone are sent because CRMs match on them; the
    personal-data purge deletes these payloads like every outbox payload."""
    payload: dict[str, Any] = {
        "id": str(contact.pk),
        "member_number": contact.member_number,
        "status": contact.status,
        "email": contact.email,
        "mobile_phone": contact.mobile_phone,
        "external_ids": [{"source": source, "id": value} for source, value in sorted(external_ids)],
        "tier": tier,
    }
    if changed_fields is not None:
        payload["changed_fields"] = sorted(changed_fields)
    return payload


def _current_tier_name(contact: Contact) -> str | None:
    return ContactTier.objects.filter(contact_id=contact.pk).values_list("tier__name", flat=True).first()


def _save_with_identifiers(
    *,
    contact: Contact,
    external_ids: list[tuple[str, str]],
    is_new: bool,
    identifiers_changed: bool = False,
    changed_fields: Iterable[str] = (),
) -> None:
    """Save the contact and its new external ids, with the change-feed row and the
    contact.created / contact.updated event (an update that changed nothing announces nothing),
    all in one transaction."""
    _raise_if_taken(contact=contact, external_ids=external_ids)
    existing = set() if is_new else set(contact.external_ids.values_list("source", "value"))
    new_external_ids = [pair for pair in external_ids if pair not in existing]
    changed_fields = set(changed_fields) | ({"external_ids"} if new_external_ids else set())
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
                # In the same transaction as the change: the feed and the outbox show exactly
                # what committed (built after the save: a retry may draw another member number).
                contact_change_record(livemode=contact.livemode, contact_id=contact.pk, kind=change_kind)
                if is_new:
                    payload = contact_event_payload(contact, new_external_ids, tier=None)
                    outbox_emit(livemode=contact.livemode, event_type="contact.created", payload=payload)
                elif changed_fields:
                    payload = contact_event_payload(
                        contact,
                        existing | set(new_external_ids),
                        tier=_current_tier_name(contact),
                        changed_fields=changed_fields,
                    )
                    outbox_emit(livemode=contact.livemode, event_type="contact.updated", payload=payload)
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


# What `contact.updated` names as changed: field name → how to read it off the contact.
TRACKED_FIELDS = {
    "first_name": lambda contact: contact.first_name,
    "last_name": lambda contact: contact.last_name,
    "birth_date": lambda contact: contact.birth_date,
    "email": lambda contact: contact.email,
    "mobile_phone": lambda contact: contact.mobile_phone,
    "status": lambda contact: contact.status,
    "consents": lambda contact: (contact.email_consent, contact.sms_consent),
    "attributes": lambda contact: contact.attributes,
}


def _apply_changes(*, contact: Contact, changes: dict[str, Any]) -> None:
    external_ids, identifiers_changed, changed_fields = _changes_applied(contact=contact, changes=changes)
    _save_with_identifiers(
        contact=contact,
        external_ids=external_ids,
        is_new=False,
        identifiers_changed=identifiers_changed,
        changed_fields=changed_fields,
    )


def _changes_applied(*, contact: Contact, changes: dict[str, Any]) -> tuple[list[tuple[str, str]], bool, list[str]]:
    """Set `changes` on the (unsaved) contact and check them: (the external ids to add, whether
    email or phone changed, the TRACKED_FIELDS that changed). Raises ValidationError."""
    identifiers_before = (contact.email, contact.mobile_phone)
    before = {name: read(contact) for name, read in TRACKED_FIELDS.items()}
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
    return (
        external_ids,
        (contact.email, contact.mobile_phone) != identifiers_before,
        [name for name, read in TRACKED_FIELDS.items() if read(contact) != before[name]],
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


# The columns of the lookups `_among` takes, and the type of their values.
_AMONG_COLUMNS = {
    (Contact, "pk"): ("id", "::uuid"),
    (Contact, "member_number"): ("member_number", ""),
    (Contact, "mobile_phone"): ("mobile_phone", ""),
    (Contact, "email_lower"): ("email", ""),
    (ContactExternalId, "value"): ("value", ""),
    (ContactExternalId, "contact_id"): ("contact_id", "::uuid"),
    (ContactTier, "contact_id"): ("contact_id", "::uuid"),
}


def _among(model: type[models.Model], lookup: str, values: Iterable[Any]) -> Q | RawSQL:
    """`lookup IN values` as a filter. On PostgreSQL the values go as one JSON parameter: for a
    thousand values, Django's and the driver's work on a thousand placeholders costs several
    times the query itself."""
    values = list(dict.fromkeys(values))
    if not values or connection.vendor != "postgresql":
        return Q(**{f"{lookup}__in": values})  # an empty list: Django answers without a query
    column, cast = _AMONG_COLUMNS[model, lookup]
    column = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name(column)}"
    wanted = f"SELECT value{cast} FROM jsonb_array_elements_text(%s::jsonb)"
    # A semi join: the index for a few values, at worst one pass over the table. Except for
    # emails: PostgreSQL keeps no statistics on lower(email) (its index is partial) and would
    # read the whole table for the semi join (33 ms at 100,000 contacts); `= ANY(ARRAY(…))`
    # takes the index (2 ms).
    sql = f"LOWER({column}) = ANY(ARRAY({wanted}))" if lookup == "email_lower" else f"{column} IN ({wanted})"
    return RawSQL(sql, [json.dumps([str(value) for value in values])], output_field=models.BooleanField())


def _with_value_keys(keys: list[tuple]) -> list[tuple]:
    # An external id also under its value alone: a match key without source finds it in any
    # source, so rows naming the same value in different sources must still go in order.
    return keys + [("external_id_value", key[2]) for key in keys if key[0] == "external_id"]


def _match_keys_found(
    *, livemode: bool, rows: dict[int, dict[str, Any]]
) -> tuple[dict[int, uuid.UUID | DomainError | None], dict[int, tuple]]:
    """Each row's match key → the one contact it names, None (nobody) or the error, in a few
    queries for the whole batch; and each row's normalised key as an identifier key (member
    numbers have none: they never move to another contact)."""
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
        contacts.filter(_among(Contact, "member_number", wanted["member_number"].values())).values_list(
            "member_number", "pk"
        )
    )
    by_phone = dict(
        contacts.filter(_among(Contact, "mobile_phone", wanted["mobile_phone"].values())).values_list(
            "mobile_phone", "pk"
        )
    )
    by_email = dict(
        contacts.alias(email_lower=Lower("email"))
        .filter(_among(Contact, "email_lower", wanted["email"].values()))
        .annotate(key=Lower("email"))
        .values_list("key", "pk")
    )
    external_rows = (
        ContactExternalId.objects.filter(livemode=livemode)
        .filter(_among(ContactExternalId, "value", [value for _source, value in wanted["external_id"].values()]))
        .values_list("source", "value", "contact_id")
    )
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
    lookup_keys: dict[int, tuple] = {}
    for kind in ("mobile_phone", "email"):
        lookup_keys.update((index, (kind, key)) for index, key in wanted[kind].items())
    lookup_keys.update(
        (index, ("external_id_value", value)) for index, (_source, value) in wanted["external_id"].items()
    )
    return found, lookup_keys


def contact_bulk_upsert(*, livemode: bool, rows: list[tuple[int, dict[str, Any]]]) -> list[BulkRowResult]:
    """Upsert each `(index, row)` by its match key: found → `contact_update`, not found →
    `contact_create` with the match key as one of its identifiers (an external id becomes a
    permanent identifier). Every row succeeds or fails alone (its own savepoint); one whose
    identifiers belong to another contact fails with DuplicateIdentifier. The result is as if
    the rows were applied one after the other, in order. Safe to retry: a repeat finds the
    contacts the first run created and updates them.

    New contacts whose identifiers collide with nothing are inserted together, and found
    contacts whose rows collide with nothing are updated together (a few statements for each
    batch, whatever its size); every other row goes through the one-row services.
    """
    if len(rows) > BULK_MAX_ROWS:
        raise ValidationError.for_field("contacts", f"At most {BULK_MAX_ROWS} contacts per request.")
    by_index = dict(rows)
    results: dict[int, BulkRowResult] = {}
    found, lookup_keys = _match_keys_found(livemode=livemode, rows=by_index)
    current = {
        contact.pk: contact
        for contact in Contact.objects.filter(livemode=livemode).filter(
            _among(Contact, "pk", [match for match in found.values() if isinstance(match, uuid.UUID)])
        )
    }
    slow: list[int] = []
    built: dict[int, tuple[Contact, list[tuple[str, str]]]] = {}
    changed: dict[int, _ChangedContact] = {}
    invalid: dict[int, DomainError] = {}
    key_counts: Counter = Counter()
    keys_of: dict[int, list[tuple]] = {}
    for index, row in rows:
        match = found.get(index)
        if isinstance(match, DomainError):
            results[index] = BulkRowResult(index=index, status="error", error=match)
            continue
        lookup = [lookup_keys[index]] if index in lookup_keys else []
        if match is not None:
            if match not in current:  # gone since it was matched: the one-row path says what happened
                slow.append(index)
                continue
            try:
                changed[index] = _changed_contact(current[match], _update_fields(row))
                keys_of[index] = [("contact", match), *lookup, *changed[index].keys]
            except DomainError as error:
                invalid[index] = error  # final, unless another row changes the same contact first
                keys_of[index] = [("contact", match)]
        else:
            try:
                built[index] = _contact_build(livemode=livemode, **_match_key_as_identifier(row))
            except DomainError as error:
                results[index] = BulkRowResult(index=index, status="error", error=error)
                continue
            keys_of[index] = [*lookup, *_with_value_keys(_identifier_keys(*built[index]))]
        key_counts.update(set(keys_of[index]))
    # Rows that share an identifier (or a contact) with another row must see each other's
    # writes: they go one by one, in order. So must rows whose identifiers another contact holds
    # (the one-row service names the holder precisely). Every other row commutes with all the
    # rest, so writing it in a batch first gives the same result as the order of the rows.
    shared = {index for index, keys in keys_of.items() if any(key_counts[key] > 1 for key in keys)}
    for index, error in invalid.items():
        if index in shared:
            slow.append(index)
        else:
            results[index] = BulkRowResult(index=index, status="error", error=error)
    holders = _identifier_holders(livemode=livemode, keys={key for i in [*built, *changed] for key in keys_of[i]})
    fast = [index for index in built if index not in shared and not any(key in holders for key in keys_of[index])]
    slow += sorted(set(built) - set(fast))
    fast_changed = {
        index: change
        for index, change in changed.items()
        if index not in shared
        and all(holders.get(key, change.contact.pk) == change.contact.pk for key in keys_of[index])
    }
    slow += [index for index in changed if index not in fast_changed]
    if fast:
        try:
            with transaction.atomic():
                contacts = [built[index][0] for index in fast]
                _insert_all(contacts)
                _insert_all(
                    [
                        ContactExternalId(livemode=livemode, contact=contact, source=source, value=value)
                        for contact, external_ids in (built[index] for index in fast)
                        for source, value in external_ids
                    ]
                )
                contact_changes_record(
                    livemode=livemode, contact_ids=[contact.pk for contact in contacts], kind=ContactChange.Kind.CREATED
                )
                # One INSERT for the batch's events too: 1,000 rows must not cost 1,000 statements.
                outbox_emit_many(
                    livemode=livemode,
                    events=[
                        ("contact.created", contact_event_payload(contact, external_ids, tier=None))
                        for contact, external_ids in (built[index] for index in fast)
                    ],
                )
                _announce_identifiers_of([contact.pk for contact in contacts])
            for index in fast:
                results[index] = BulkRowResult(index=index, status="created", contact_id=built[index][0].pk)
        except IntegrityError:
            # A concurrent writer (or a member number drawn twice): redo these one by one.
            slow += fast
    if fast_changed:
        updated, stale = _contacts_update_batch(livemode=livemode, changed=fast_changed)
        for index in updated:
            results[index] = BulkRowResult(index=index, status="updated", contact_id=fast_changed[index].contact.pk)
        slow += stale
    for index in sorted(slow):
        results[index] = _bulk_row_upsert(livemode=livemode, index=index, row=by_index[index])
    return [results[index] for index, _row in rows]


def _identifier_holders(*, livemode: bool, keys: set[tuple]) -> dict[tuple, uuid.UUID]:
    """The contact of this mode holding each of these identifier keys (`email`, `mobile_phone`,
    `external_id`); a free identifier is absent. Other kinds of keys are ignored."""
    emails = {key[1] for key in keys if key[0] == "email"}
    phones = {key[1] for key in keys if key[0] == "mobile_phone"}
    external_ids = {(key[1], key[2]) for key in keys if key[0] == "external_id"}
    contacts = Contact.objects.filter(livemode=livemode)
    holders: dict[tuple, uuid.UUID] = {}
    if emails:
        holders.update(
            (("email", email), contact_id)
            for email, contact_id in contacts.annotate(email_lower=Lower("email"))
            .filter(_among(Contact, "email_lower", emails))
            .values_list("email_lower", "pk")
        )
    if phones:
        holders.update(
            (("mobile_phone", phone), contact_id)
            for phone, contact_id in contacts.filter(_among(Contact, "mobile_phone", phones)).values_list(
                "mobile_phone", "pk"
            )
        )
    if external_ids:
        existing = (
            ContactExternalId.objects.filter(livemode=livemode)
            .filter(_among(ContactExternalId, "value", [value for _source, value in external_ids]))
            .values_list("source", "value", "contact_id")
        )
        holders.update(
            (("external_id", source, value), contact_id)
            for source, value, contact_id in existing
            if (source, value) in external_ids
        )
    return holders


@dataclass
class _ChangedContact:
    """A bulk row's changes set on a copy of the contact it found (not saved yet)."""

    contact: Contact
    # The contact's updated_at when read. Every change to a contact goes through save(), which
    # moves it: a different value under the lock means someone changed the contact since.
    read_at: datetime
    external_ids: list[tuple[str, str]]
    identifiers_changed: bool
    changed_fields: list[str]
    keys: list[tuple]  # every identifier the row gives, keeps or gives up


def _changed_contact(contact: Contact, changes: dict[str, Any]) -> _ChangedContact:
    """`contact_update`'s checks and changes, on a copy. Raises ValidationError, ContactNotActive."""
    if contact.status == Contact.Status.ERASED:
        raise ContactNotActive(
            "An erased contact cannot be changed.",
            parameters=[ContactNotActive.parameter("id", value=str(contact.pk))],
        )
    changed = copy.copy(contact)
    external_ids, identifiers_changed, changed_fields = _changes_applied(contact=changed, changes=changes)
    keys = _with_value_keys(_identifier_keys(changed, external_ids))
    if contact.email and contact.email.lower() != (changed.email or "").lower():
        keys.append(("email", contact.email.lower()))
    if contact.mobile_phone and contact.mobile_phone != changed.mobile_phone:
        keys.append(("mobile_phone", contact.mobile_phone))
    return _ChangedContact(changed, contact.updated_at, external_ids, identifiers_changed, changed_fields, keys)


def _contacts_update_batch(*, livemode: bool, changed: dict[int, _ChangedContact]) -> tuple[list[int], list[int]]:
    """Save the rows' changed contacts together, with what `_save_with_identifiers` writes for
    each (new external ids, change-feed rows, contact.updated events, the identifiers-added
    announcement), in one transaction and a fixed number of statements. Returns (the rows
    written, the rows to redo one by one: their contact changed since it was read, or a
    concurrent writer took one of their identifiers)."""
    try:
        with transaction.atomic():
            # Locked in one order (by id), so two batches over the same contacts cannot deadlock.
            locked = dict(
                Contact.objects.select_for_update()
                .filter(_among(Contact, "pk", [change.contact.pk for change in changed.values()]))
                .order_by("pk")
                .values_list("pk", "updated_at")
            )
            stale = [index for index, change in changed.items() if locked.get(change.contact.pk) != change.read_at]
            fresh = {index: change for index, change in changed.items() if index not in stale}
            if not fresh:
                return [], stale
            now = timezone.now()
            for change in fresh.values():
                change.contact.updated_at = now
            _contacts_save([change.contact for change in fresh.values()])
            existing: dict[uuid.UUID, set[tuple[str, str]]] = {change.contact.pk: set() for change in fresh.values()}
            for contact_id, source, value in ContactExternalId.objects.filter(
                _among(ContactExternalId, "contact_id", existing)
            ).values_list("contact_id", "source", "value"):
                existing[contact_id].add((source, value))
            added = {
                index: [pair for pair in change.external_ids if pair not in existing[change.contact.pk]]
                for index, change in fresh.items()
            }
            _insert_all(
                [
                    ContactExternalId(livemode=livemode, contact=fresh[index].contact, source=source, value=value)
                    for index, pairs in added.items()
                    for source, value in pairs
                ]
            )
            kinds: dict[str, list[uuid.UUID]] = {}
            events = []
            for index, change in fresh.items():
                kind = (
                    ContactChange.Kind.IDENTIFIERS_CHANGED
                    if change.identifiers_changed or added[index]
                    else ContactChange.Kind.UPDATED
                )
                kinds.setdefault(kind, []).append(change.contact.pk)
                changed_fields = set(change.changed_fields) | ({"external_ids"} if added[index] else set())
                if changed_fields:  # an update that changed nothing announces nothing
                    events.append((change, existing[change.contact.pk] | set(added[index]), changed_fields))
            for kind, contact_ids in kinds.items():
                contact_changes_record(livemode=livemode, contact_ids=contact_ids, kind=kind)
            tiers = dict(
                ContactTier.objects.filter(
                    _among(ContactTier, "contact_id", [change.contact.pk for change, _ids, _fields in events])
                )
                .values_list("contact_id", "tier__name")
                .order_by()
            )
            outbox_emit_many(
                livemode=livemode,
                events=[
                    (
                        "contact.updated",
                        contact_event_payload(
                            change.contact, external_ids, tier=tiers.get(change.contact.pk), changed_fields=fields
                        ),
                    )
                    for change, external_ids, fields in events
                ],
            )
            _announce_identifiers_of([change.contact.pk for change in fresh.values()])
        return list(fresh), stale
    except IntegrityError:
        return [], list(changed)


# What a bulk row can change on a contact (with updated_at): the columns `_contacts_save` writes.
_BULK_UPDATED_FIELDS = (
    "first_name",
    "last_name",
    "birth_date",
    "email",
    "mobile_phone",
    "status",
    "email_consent",
    "sms_consent",
    "consents_updated_at",
    "attributes",
    "updated_at",
)


def _contacts_save(contacts: list[Contact]) -> None:
    """Write `_BULK_UPDATED_FIELDS` of many contacts in one statement. On PostgreSQL the rows go
    as one JSON document (`UPDATE … FROM jsonb_to_recordset`): one parameter instead of eleven
    thousand for the driver to quote, and no CASE per row and column as Django's bulk_update."""
    if connection.vendor != "postgresql":
        Contact.objects.bulk_update(contacts, _BULK_UPDATED_FIELDS)
        return
    fields = [Contact._meta.get_field(name) for name in _BULK_UPDATED_FIELDS]
    records = []
    for contact in contacts:
        record = {"id": str(contact.pk)}
        for field in fields:
            value = getattr(contact, field.attname)
            record[field.column] = value.isoformat() if isinstance(value, date) else value
        records.append(record)
    columns = ", ".join(f"{field.column} = changed.{field.column}" for field in fields)
    types = ", ".join(f"{field.column} {field.db_type(connection)}" for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Contact._meta.db_table} AS contact SET {columns} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS changed(id uuid, {types}) WHERE contact.id = changed.id",
            [json.dumps(records)],
        )


def _insert_all(objects: list[models.Model]) -> None:
    """`bulk_create(objects)` of one model, without reading back ids the database assigns. On
    PostgreSQL the rows go as one JSON document (`INSERT … SELECT FROM jsonb_to_recordset`):
    for a thousand contacts, Django's compiler and the driver quoting 15,000 parameters one by
    one cost more than PostgreSQL's insert itself."""
    if not objects:
        return
    model = type(objects[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects)
        return
    fields = [field for field in model._meta.concrete_fields if not isinstance(field, models.AutoField)]
    records = []
    for instance in objects:
        record = {}
        for field in fields:
            value = field.pre_save(instance, add=True)  # as bulk_create: fills auto_now(_add) fields
            if isinstance(value, date):  # datetimes too
                value = value.isoformat()
            elif isinstance(value, uuid.UUID):
                value = str(value)
            record[field.column] = value
        records.append(record)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    types = ", ".join(f"{quote(field.column)} {field.db_type(connection)}" for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
            f"SELECT {columns} FROM jsonb_to_recordset(%s::jsonb) AS added({types})",
            [json.dumps(records)],
        )
    for instance in objects:
        instance._state.adding = False
        instance._state.db = connection.alias
