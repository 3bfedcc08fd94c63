"""Events: behaviours campaigns listen for.

An integrator reports one over `POST /events` (stored, answered 202, processed by a worker);
the system raises its own for registrations, tier changes and birthdays, in the transaction of
the change. Either way the `Event` row is the queue of record: processing is enqueued after
commit, a beat sweeper re-enqueues what was left queued, and processing only starts from
`queued` under the row lock, so an event fires its campaigns exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import Campaign, Event
from campaigns.selectors import EVENT_TRIGGERS, LIVE_STATUSES, audience_lists_holding, campaigns_in_force
from campaigns.services.engine import CauseFacts
from campaigns.services.evaluation import Posting, campaigns_apply
from core.exceptions import IdempotencyMismatch, ValidationError
from core.selectors import config_cached
from loyalty.models import Contact, ContactTier, LedgerEntry

logger = logging.getLogger(__name__)
Status = Event.Status

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED_TYPES = {"birthday"}
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTES_BYTES = 16_000
FUTURE_TOLERANCE = timedelta(minutes=10)


def event_enqueue(event_id) -> None:
    """After commit. A broker that is down must not lose an accepted event: the sweeper retries."""
    from campaigns.tasks import process_event

    try:
        process_event.delay(str(event_id))
    except Exception:  # noqa: BLE001 - any broker failure; the sweeper picks the event up
        logger.warning("Could not enqueue event %s; the sweeper will pick it up", event_id)


def _fingerprint(contact_id, event_type: str, occurred_at: datetime | None, attributes: dict) -> str:
    canonical = json.dumps(
        [str(contact_id), event_type, occurred_at.isoformat() if occurred_at else None, attributes],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_record(
    *,
    livemode: bool,
    contact: Contact,
    event_type: str,
    occurred_at: datetime | None = None,
    attributes: dict[str, Any] | None = None,
    external_id: str | None = None,
) -> tuple[Event, bool]:
    """Store an integrator's event and queue it: (event, replayed?). With the sender's id, a
    repeat of the same event returns the stored one; another event under that id raises
    IdempotencyMismatch. Raises ValidationError for a bad type, time or attributes."""
    attributes = attributes or {}
    if not EVENT_TYPE.match(event_type or "") or event_type in RESERVED_TYPES:
        raise ValidationError.for_field(
            "type", "An event type is lower-case letters, digits and underscores (e.g. app_opened).", value=event_type
        )
    if not isinstance(attributes, dict):
        raise ValidationError.for_field("attributes", "Attributes are a JSON object.")
    if len(attributes) > MAX_ATTRIBUTES or len(json.dumps(attributes, default=str)) > MAX_ATTRIBUTES_BYTES:
        raise ValidationError.for_field(
            "attributes", f"At most {MAX_ATTRIBUTES} attributes and {MAX_ATTRIBUTES_BYTES} bytes."
        )
    now = timezone.now()
    if occurred_at is not None and occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationError.for_field("occurred_at", "An event cannot happen in the future.")
    if external_id is not None and (not external_id.strip() or ":" in external_id or len(external_id) > 100):
        # System events are keyed "birthday:<contact>:<year>" and the like: a sender's id must
        # never be able to take one of those keys.
        raise ValidationError.for_field("id", "Up to 100 characters, without ':'.", value=external_id)
    fingerprint = _fingerprint(contact.pk, event_type, occurred_at, attributes)
    if external_id:
        existing = Event.objects.filter(livemode=livemode, external_id=external_id).first()
        if existing is not None:
            return _replay_or_conflict(existing, fingerprint), True
    try:
        with transaction.atomic():
            event = Event.objects.create(
                livemode=livemode,
                external_id=external_id or f"evt_{uuid.uuid4().hex}",
                source=Event.Source.API,
                contact=contact,
                type=event_type,
                occurred_at=occurred_at or now,
                attributes=attributes,
                fingerprint=fingerprint,
                received_at=now,
            )
            transaction.on_commit(lambda: event_enqueue(event.pk))
    except IntegrityError:
        # A concurrent twin stored it first: the unique constraint decided.
        existing = Event.objects.get(livemode=livemode, external_id=external_id)
        return _replay_or_conflict(existing, fingerprint), True
    return event, False


def _replay_or_conflict(existing: Event, fingerprint: str) -> Event:
    if existing.fingerprint != fingerprint:
        raise IdempotencyMismatch(
            "Another event was already sent with this id.",
            parameters=[IdempotencyMismatch.parameter("id", value=existing.external_id)],
        )
    return existing


def _has_campaigns_for(livemode: bool, trigger: str) -> bool:
    """Is any campaign listening for this system trigger? Cached a few seconds per process, so
    a bulk write of 1,000 contacts asks once, not 1,000 times."""
    return config_cached(
        ("campaign-trigger", livemode, trigger),
        lambda: Campaign.objects.filter(livemode=livemode, trigger=trigger, status__in=LIVE_STATUSES).exists(),
    )


def system_event_raise(
    *,
    livemode: bool,
    contact_id,
    trigger: str,
    event_type: str,
    key: str,
    attributes: dict | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """Raise a system event inside the caller's transaction, when a campaign listens for it.
    `key` makes it unique (a birthday once a year). Returns whether an event was stored."""
    if not _has_campaigns_for(livemode, trigger):
        return False
    created = Event.objects.bulk_create(
        [
            Event(
                livemode=livemode,
                external_id=key,
                source=Event.Source.SYSTEM,
                contact_id=contact_id,
                type=event_type,
                occurred_at=occurred_at or timezone.now(),
                attributes=attributes or {},
            )
        ],
        ignore_conflicts=True,
    )
    # The id is drawn here, not by the database. When the key already existed nothing was
    # inserted and processing finds no such event: a no-op, cheaper than looking the key up again
    # for every contact of a bulk write.
    event_id = created[0].pk
    transaction.on_commit(lambda: event_enqueue(event_id))
    return True


def _tier_id(contact: Contact) -> int | None:
    return ContactTier.objects.filter(contact=contact).values_list("tier_id", flat=True).first()


def event_process(*, event_id) -> Event | None:
    """Fire the campaigns an event meets. Safe to run any number of times: only a queued event
    is processed, under its row lock, in one database transaction."""
    with transaction.atomic():
        event = Event.objects.select_for_update(of=("self",)).select_related("contact").filter(pk=event_id).first()
        if event is None or event.status != Status.QUEUED:
            return event  # None: a system event whose key was raised before (see system_event_raise)
        event.attempts += 1
        contact = event.contact
        specs = campaigns_in_force(livemode=event.livemode, triggers=EVENT_TRIGGERS, at=event.occurred_at)
        awards = []
        if specs and contact.status == Contact.Status.ACTIVE:
            list_campaigns = [spec.id for spec in specs if spec.audience == "list"]
            facts = CauseFacts(
                kind="event",
                key=f"event:{event.pk}",
                occurred_at=event.occurred_at,
                contact_id=str(contact.pk),
                tier_id=_tier_id(contact),
                contact_attributes=contact.attributes or {},
                audience_list_campaign_ids=audience_lists_holding(contact_id=contact.pk, campaign_ids=list_campaigns),
                event_type=event.type,
                event_attributes=event.attributes or {},
            )
            awards = campaigns_apply(
                contact=contact,
                facts=facts,
                specs=specs,
                posting=Posting(
                    LedgerEntry.Source.CAMPAIGN,
                    f"event:{event.external_id}"[:100],
                    facts_for_messages={"event_id": event.external_id},
                ),
            )
        event.status = Status.PROCESSED
        event.awards_count = len(awards)
        event.processed_at = timezone.now()
        event.failure_reason = ""
        event.save(update_fields=["status", "awards_count", "processed_at", "attempts", "failure_reason"])
    return event


def event_fail(*, event_id, reason: str) -> None:
    """A non-transient failure: recorded on the event (visible and re-processable in the admin)."""
    Event.objects.filter(pk=event_id, status=Status.QUEUED).update(status=Status.FAILED, failure_reason=reason[:2000])


def event_requeue(*, event_id) -> bool:
    with transaction.atomic():
        updated = Event.objects.filter(pk=event_id, status=Status.FAILED).update(status=Status.QUEUED)
        if updated:
            transaction.on_commit(lambda: event_enqueue(event_id))
    return bool(updated)


def queued_events_sweep(*, older_than_seconds: int = 60, batch_size: int = 1000) -> int:
    """Enqueue events stored but not processed for a while (lost enqueue). Processing is
    idempotent, so a double enqueue is harmless."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Event.objects.filter(status=Status.QUEUED, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    for event_id in ids:
        event_enqueue(event_id)
    return len(ids)


def birthdays_raise(*, now: datetime | None = None) -> int:
    """Raise a `birthday` event for every active contact whose birthday it is (in the time zone of
    each birthday campaign), once a year per contact. Safe to run every hour."""
    import zoneinfo

    now = now or timezone.now()
    raised = 0
    campaigns = Campaign.objects.filter(trigger=Campaign.Trigger.BIRTHDAY, status__in=LIVE_STATUSES)
    for livemode, time_zone in set(campaigns.values_list("livemode", "time_zone")):
        today = now.astimezone(zoneinfo.ZoneInfo(time_zone or "UTC")).date()
        days = [(today.month, today.day)]
        if (today.month, today.day) == (2, 28) and not _is_leap(today.year):
            days.append((2, 29))  # born on 29 February: celebrated on the 28th in other years
        for month, day in days:
            contacts = Contact.objects.filter(
                livemode=livemode, status=Contact.Status.ACTIVE, birth_date__month=month, birth_date__day=day
            ).values_list("pk", flat=True)
            for contact_id in contacts.iterator(chunk_size=2000):
                with transaction.atomic():
                    system_event_raise(
                        livemode=livemode,
                        contact_id=contact_id,
                        trigger=Campaign.Trigger.BIRTHDAY,
                        event_type="birthday",
                        key=f"birthday:{contact_id}:{today.year}",
                        occurred_at=now,
                    )
                raised += 1
    return raised


def _is_leap(year: int) -> bool:
    try:
        date(year, 2, 29)
    except ValueError:
        return False
    return True


def contact_events_anonymise(*, contact_id) -> int:
    """On erasure: the contact's events keep their type and time (reports still add up) but lose
    their attributes, which may hold personal data; the contact leaves every uploaded audience."""
    from campaigns.models import CampaignAudienceMember

    CampaignAudienceMember.objects.filter(contact_id=contact_id).delete()
    return Event.objects.filter(contact_id=contact_id).exclude(attributes={}).update(attributes={})
