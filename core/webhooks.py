"""Webhook delivery from the outbox (services; the tasks in core/tasks.py call them).

1. fan-out: outbox events not yet dispatched become one WebhookDelivery per subscribed active
   endpoint of their mode (unique per endpoint and event), in the same transaction that marks
   the events dispatched (`FOR UPDATE SKIP LOCKED`, so workers share the work).
2. lease: due deliveries are claimed by pushing `next_attempt_at` forward by a lease
   (WEBHOOK_LEASE_SECONDS, 60 s by default) in a short transaction; the HTTP call happens
   outside any transaction.
3. record: the attempt is logged; 2xx ends it; 410 disables the endpoint at once; anything else
   schedules a retry with exponential backoff and jitter (honouring Retry-After), and a run of
   failures disables the endpoint. A worker killed mid-delivery loses nothing: its lease runs
   out and the delivery is due again, with the same `webhook-id`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.exceptions import ValidationError
from core.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 12
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 3600

# Every event type written to the outbox, with what it reports (docs/WEBHOOKS.md has each
# one's `data`). Endpoints may only subscribe to these, so a typo is refused instead of
# silently receiving nothing; a test checks that every `event_type=` in the code is listed.
EVENT_TYPES: dict[str, str] = {
    "contact.created": "A contact was registered (API, bulk write or admin).",
    "contact.updated": "A contact's profile, status, consents or identifiers changed.",
    "contact.erased": "A contact's personal data was erased (GDPR); only the id remains.",
    "tier.changed": "A contact moved up or down a tier.",
    "payout.requested": "Money spent with back-end reduction is owed back to the contact.",
    "offer.issued": "An offer was put in a contact's wallet (external offers carry their message).",
    "offer.locked": "An issued offer was bound to a transaction at checkout.",
    "offer.redeemed": "An issued offer was redeemed (at a till, over the API or by an external system).",
    "offer.reinstated": "A redemption was undone; the issued offer is available again.",
    "transaction.processed": "A purchase was processed: points awarded.",
    "transaction.voided": "A purchase was cancelled: its awards and spends reversed.",
    "return.processed": "Returned goods: the points of the returned lines were taken back.",
    "order.placed": "A contact placed an order for a venue to fulfil.",
    "order.completed": "An agent completed an order; its purchase was recorded.",
    "order.cancelled": "An agent cancelled an order, with a reason.",
    "campaign.message": "A campaign's message outcome: the rendered message for an external system.",
}


def lease_seconds() -> float:
    """How long a leased delivery is kept from other workers: read at each lease, so a setting
    (WEBHOOK_LEASE_SECONDS) or a test can shorten it. Keep it above WEBHOOK_TIMEOUT_SECONDS, or a
    slow receiver gets the same message from a second worker while the first is still waiting."""
    return settings.WEBHOOK_LEASE_SECONDS


def event_types_check(event_types: list[str] | None) -> list[str]:
    """The subscription, sorted and without repeats; raises ValidationError naming unknown types."""
    unknown = sorted({event_type for event_type in event_types or [] if event_type not in EVENT_TYPES})
    if unknown:
        raise ValidationError.for_field("event_types", f"Unknown event type(s): {', '.join(unknown)}.", value=unknown)
    return sorted(set(event_types or []))


def webhook_secret_generate() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def webhook_endpoint_create(
    *, livemode: bool, url: str, event_types: list[str] | None = None, description: str = ""
) -> WebhookEndpoint:
    """The endpoint with a new secret (return it to the caller once; it is needed to verify).
    Raises ValidationError (not an http(s) URL, an unknown event type)."""
    if not url.startswith(("https://", "http://")):
        raise ValidationError.for_field("url", "An http(s) URL is required.")
    return WebhookEndpoint.objects.create(
        livemode=livemode,
        url=url,
        event_types=event_types_check(event_types),
        description=description,
        secret=webhook_secret_generate(),
    )


def events_fan_out(*, batch_size: int = 500) -> int:
    """Turn undispatched outbox events into deliveries; returns how many events were handled."""
    with transaction.atomic():
        events = list(
            OutboxEvent.objects.filter(dispatched_at__isnull=True)
            .order_by("id")
            .select_for_update(skip_locked=True)[:batch_size]
        )
        if not events:
            return 0
        endpoints = list(WebhookEndpoint.objects.filter(is_active=True))
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(endpoint=endpoint, event=event)
                for event in events
                for endpoint in endpoints
                if endpoint.livemode == event.livemode and endpoint.wants(event.event_type)
            ],
            ignore_conflicts=True,
        )
        OutboxEvent.objects.filter(pk__in=[event.pk for event in events]).update(dispatched_at=timezone.now())
    return len(events)


def deliveries_lease(*, batch_size: int = 50, now: datetime | None = None) -> list[WebhookDelivery]:
    """Claim due deliveries for this worker (others skip them until the lease runs out)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.filter(
                status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, endpoint__is_active=True
            )
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "event")
            .order_by("next_attempt_at", "id")[:batch_size]
        )
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in due]).update(
            next_attempt_at=now + timedelta(seconds=lease_seconds())
        )
    return due


def message_body(event: OutboxEvent) -> str:
    return json.dumps(
        {
            "type": event.event_type,
            "timestamp": event.created_at.isoformat(),
            "livemode": event.livemode,
            "data": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )


def _post(delivery: WebhookDelivery) -> tuple[int | None, str, str, float, dict]:
    """One HTTP attempt: (status code, response excerpt, error, seconds, response headers)."""
    event = delivery.event
    body = message_body(event)
    moment = timezone.now()
    signature = Webhook(delivery.endpoint.secret).sign(str(event.event_id), moment, body)
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "loyalty-webhooks/1",
            "webhook-id": str(event.event_id),
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
        },
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            return response.status, response.read(500).decode(errors="replace"), "", time.monotonic() - started, {}
    except urllib.error.HTTPError as error:
        excerpt = error.read(500).decode(errors="replace") if error.fp else ""
        return error.code, excerpt, "", time.monotonic() - started, dict(error.headers or {})
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return None, "", f"{error.__class__.__name__}: {error}"[:300], time.monotonic() - started, {}


def backoff_seconds(attempts: int, retry_after: str | None = None) -> float:
    if retry_after and retry_after.strip().isdigit():
        return min(int(retry_after), BACKOFF_MAX_SECONDS)
    base = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)
    return base * random.uniform(0.8, 1.2)


def delivery_attempt(*, delivery: WebhookDelivery) -> WebhookAttempt:
    """Send one leased delivery and record the outcome (see the module docstring)."""
    status_code, excerpt, error, seconds, headers = _post(delivery)
    now = timezone.now()
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            status_code=status_code,
            duration_ms=int(seconds * 1000),
            response_excerpt=excerpt,
            error=error,
        )
        attempts = delivery.attempts + 1
        endpoint = delivery.endpoint
        if status_code is not None and 200 <= status_code < 300:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=WebhookDelivery.Status.SUCCEEDED,
                attempts=attempts,
                last_status_code=status_code,
                delivered_at=now,
            )
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=0)
            return attempt
        if status_code == 410:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                is_active=False, disabled_reason="410 Gone from the receiver"
            )
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=WebhookDelivery.Status.FAILED, attempts=attempts, last_status_code=status_code
            )
            return attempt
        give_up = attempts >= MAX_ATTEMPTS
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED if give_up else WebhookDelivery.Status.PENDING,
            attempts=attempts,
            last_status_code=status_code,
            next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts, headers.get("Retry-After"))),
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=F("consecutive_failures") + 1)
        WebhookEndpoint.objects.filter(
            pk=endpoint.pk, consecutive_failures__gte=settings.WEBHOOK_DISABLE_AFTER_FAILURES
        ).update(is_active=False, disabled_reason=f"{settings.WEBHOOK_DISABLE_AFTER_FAILURES} failures in a row")
    return attempt


DISPATCH_BATCH = 200  # attempts per dispatch task; a backlog continues in a new task


def webhooks_dispatch(*, max_deliveries: int = DISPATCH_BATCH) -> int:
    """Fan out new events and send what is due; returns the attempts made."""
    while events_fan_out():
        pass
    made = 0
    while made < max_deliveries:
        leased = deliveries_lease(batch_size=min(50, max_deliveries - made))
        if not leased:
            break
        disabled: set = set()
        for delivery in leased:
            # An endpoint disabled by an earlier answer in this batch (410, too many failures)
            # gets nothing more; its deliveries wait, pending, in case it is enabled again.
            if (
                delivery.endpoint_id in disabled
                or not WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, is_active=True).exists()
            ):
                disabled.add(delivery.endpoint_id)
                continue
            delivery_attempt(delivery=delivery)
            made += 1
    return made


def delivery_resend(*, delivery: WebhookDelivery) -> None:
    """Send again now (manual resend from the admin), even a succeeded or given-up one."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
    )


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    """Change url, description, event types or the active flag (re-activating clears the run of
    failures and the reason it was disabled). Raises ValidationError like the creation."""
    if "url" in changes and not changes["url"].startswith(("https://", "http://")):
        raise ValidationError.for_field("url", "An http(s) URL is required.")
    if "event_types" in changes:
        endpoint.event_types = event_types_check(changes["event_types"])
    for name in ("url", "description"):
        if name in changes:
            setattr(endpoint, name, changes[name])
    if "is_active" in changes:
        endpoint.is_active = changes["is_active"]
        if endpoint.is_active:
            endpoint.consecutive_failures, endpoint.disabled_reason = 0, ""
    endpoint.save()
    return endpoint
