"""Workers' entry points. Event processing is `acks_late` with reject-on-worker-lost (settings):
a worker killed mid-task leaves the message to be delivered again, and the task is idempotent."""

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError

from campaigns.services import definitions, events
from core.exceptions import DomainError

logger = logging.getLogger(__name__)


@shared_task(
    name="campaigns.process_event",
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=8,
)
def process_event(self, event_id: str) -> None:
    try:
        events.event_process(event_id=event_id)
    except (OperationalError, InterfaceError):
        raise  # transient: retried with backoff
    except (DomainError, DatabaseError, ValueError, LookupError) as error:
        logger.error("Processing event %s failed (%s)", event_id, error.__class__.__name__)
        events.event_fail(event_id=event_id, reason=f"{error.__class__.__name__}: {error}")


@shared_task(name="campaigns.sweep_queued_events")
def sweep_queued_events() -> int:
    return events.queued_events_sweep()


@shared_task(name="campaigns.birthdays_raise")
def birthdays_raise() -> int:
    return events.birthdays_raise()


@shared_task(name="campaigns.statuses_refresh")
def statuses_refresh() -> int:
    return definitions.campaign_statuses_refresh()
