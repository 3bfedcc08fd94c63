"""Campaigns end to end: a real Celery worker on Redis processes purchases and events against
PostgreSQL, and campaign outcomes land exactly once; a campaign message leaves through the
outbox."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import CampaignAward, Event
from campaigns.services.events import event_record
from campaigns.tests.factories import campaign
from core.models import MessageVariant, OutboxEvent
from loyalty.models import LedgerEntry
from tests.test_e2e_transactions import _post_purchase, _status, shopper, web_side  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.django_db(transaction=True)]


def test_a_purchase_processed_by_a_worker_fires_its_campaign_once(celery_worker_process, web_side, shopper):  # noqa: F811
    client, contact = shopper
    bonus = campaign(outcomes=[{"kind": "points", "points": 100}])
    worker = celery_worker_process
    web_side(worker.broker, worker.queue)

    answer = _post_purchase(client, contact, "E2E-CMP-1")

    worker.wait_until(lambda: _status(answer["transaction_id"]) != "queued")
    assert _status(answer["transaction_id"]) == "processed"
    award = CampaignAward.objects.get(campaign=bonus)
    assert (award.contact_id, award.points) == (contact.pk, 100)
    wallet = client.get(f"/api/v1/contacts/{contact.pk}/wallet").json()
    assert wallet["points"]["balance"] == 30 + 100


def test_an_event_is_processed_by_a_worker_and_its_message_reaches_the_outbox(celery_worker_process, web_side, shopper):  # noqa: F811
    _, contact = shopper
    variant = MessageVariant.objects.create(
        livemode=False, name="app", template={"member": "{{ contact.member_number }}", "kind": "{{ event.type }}"}
    )
    opened = campaign(
        trigger="event",
        event_type="app_opened",
        outcomes=[{"kind": "points", "points": 5}, {"kind": "message", "message_variant": variant.pk}],
    )
    worker = celery_worker_process
    web_side(worker.broker, worker.queue)

    event, _ = event_record(
        livemode=False, contact=contact, event_type="app_opened", occurred_at=timezone.now(), external_id="E2E-EV-1"
    )

    worker.wait_until(lambda: Event.objects.get(pk=event.pk).status != Event.Status.QUEUED)
    assert Event.objects.get(pk=event.pk).status == Event.Status.PROCESSED
    assert CampaignAward.objects.filter(campaign=opened).count() == 1
    assert list(LedgerEntry.objects.filter(contact=contact).values_list("amount", flat=True)) == [5]
    message = OutboxEvent.objects.get(event_type="campaign.message")
    assert message.payload["message"] == {"member": contact.member_number, "kind": "app_opened"}
