"""Reads of contacts: identification by any identifier, and the contract's contact reference."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.db.models.functions import Lower

from core.exceptions import AmbiguousMatch, NotFound, ValidationError
from core.validators import is_valid_member_number, normalize_email, normalize_phone
from loyalty.models import Contact, ContactExternalId


def contact_list(*, livemode: bool, with_identifiers: bool = True) -> QuerySet[Contact]:
    contacts = Contact.objects.filter(livemode=livemode)
    return contacts.prefetch_related("external_ids") if with_identifiers else contacts


def _not_found(match_key: str, match_key_type: str) -> NotFound:
    return NotFound(
        f"No contact with {match_key_type} '{match_key}'.",
        parameters=[NotFound.parameter("match_key", value=match_key, match_key_type=match_key_type)],
    )


def contact_not_found(contact_id: Any) -> NotFound:
    """The answer for an id that names no contact of this mode, quoting the id as it was given."""
    return NotFound(f"No contact with id '{contact_id}'.", parameters=[NotFound.parameter("id", value=str(contact_id))])


def _contact_uuid(contact_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(contact_id))
    except ValueError:
        raise contact_not_found(contact_id) from None


def contact_get(*, livemode: bool, contact_id: Any, with_identifiers: bool = True) -> Contact:
    """The contact of this mode with that id; NotFound otherwise (other modes' ids included)."""
    contact_uuid = _contact_uuid(contact_id)
    contact = contact_list(livemode=livemode, with_identifiers=with_identifiers).filter(pk=contact_uuid).first()
    if contact is None:
        raise contact_not_found(contact_id)
    return contact


def contact_find(*, livemode: bool, match_key: str, match_key_type: str, source: str | None = None) -> Contact:
    """Identify a contact by member number, mobile phone (any usual format), email (any case) or
    external id (within `source` if given, else across sources).

    Raises ValidationError (malformed key or unknown type), NotFound, AmbiguousMatch (an external
    id without source that several systems use for different contacts).
    """
    contacts = contact_list(livemode=livemode)
    if match_key_type == "member_number":
        member_number = match_key.replace(" ", "")
        if not is_valid_member_number(member_number):
            raise ValidationError.for_field("match_key", f"'{match_key}' is not a valid member number (check digit).")
        found = list(contacts.filter(member_number=member_number))
    elif match_key_type == "mobile_phone":
        found = list(contacts.filter(mobile_phone=normalize_phone(match_key, field="match_key")))
    elif match_key_type == "email":
        email = normalize_email(match_key, field="match_key").lower()
        found = list(contacts.alias(email_lower=Lower("email")).filter(email_lower=email))
    elif match_key_type == "external_id":
        external_ids = ContactExternalId.objects.filter(livemode=livemode, value=match_key)
        if source is not None:
            external_ids = external_ids.filter(source=source)
        found = list(contacts.filter(pk__in=external_ids.values("contact_id")))
    else:
        raise ValidationError.for_field(
            "match_key_type",
            f"Unknown match_key_type '{match_key_type}'; use member_number, mobile_phone, email or external_id.",
        )
    if not found:
        raise _not_found(match_key, match_key_type)
    if len(found) > 1:
        raise AmbiguousMatch(
            f"{match_key_type} '{match_key}' matches {len(found)} contacts; give its source.",
            parameters=[AmbiguousMatch.parameter("match_key", value=match_key, contacts=[str(c.pk) for c in found])],
        )
    return found[0]


def contact_resolve(*, livemode: bool, reference: dict[str, Any]) -> Contact:
    """The contract's contact reference (`{"id"}` or `{"match_key", "match_key_type", "source"?}`,
    already shape-checked by ContactReferenceSerializer) → the contact, or a domain error."""
    if reference.get("id"):
        # Callers act on the contact; its external ids are not needed (one query fewer at checkout).
        return contact_get(livemode=livemode, contact_id=reference["id"], with_identifiers=False)
    return contact_find(
        livemode=livemode,
        match_key=reference["match_key"],
        match_key_type=reference["match_key_type"],
        source=reference.get("source"),
    )


def contact_reference_id(*, livemode: bool, reference: dict[str, Any]) -> uuid.UUID:
    """The id of the contact a contact reference names, for callers that read the contact's rows
    by id anyway: an `{"id"}` is only parsed, not read (a malformed one is NotFound, as in
    contact_get), so the caller must answer `contact_not_found(reference["id"])` when its own
    query finds no contact of this mode with that id; a match key is looked up (contact_find)."""
    if reference.get("id"):
        return _contact_uuid(reference["id"])
    return contact_resolve(livemode=livemode, reference=reference).pk


# Sections upper apps add to a contact's export (right of access): name → function(contact_id)
# returning JSON-ready rows. The export itself lives in the top-most app that reads the others.
CONTACT_EXPORT_SECTIONS: dict[str, Any] = {}


def contact_export_section(name: str):
    """Register `function(contact_id)` as section `name` of the contact export."""

    def register(function):
        CONTACT_EXPORT_SECTIONS[name] = function
        return function

    return register
