"""Workers processing purchases and events in parallel: budgets and per-contact limits hold, and
a cause processed twice at once awards once.

Real threads, each with its own database connection, released together by a barrier, against
PostgreSQL. Purchases are stored first without being processed, then every thread runs the
processing task's service at the same moment, as parallel Celery workers would.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from campaigns.models import Campaign, CampaignAward, Event
from campaigns.services.events import event_process, event_record
from campaigns.tests.factories import campaign
from loyalty.models import LedgerEntry
from loyalty.tests.factories import ContactFactory
from transactions.services.intake import transaction_intake
from transactions.services.processing import transaction_process
from transactions.tests.factories import base_rule, purchase

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 12


@pytest.fixture(autouse=True)
def _no_enqueue(monkeypatch):
    """Store without processing: the threads below are the workers."""
    monkeypatch.setattr("transactions.services.intake.transaction_enqueue", lambda transaction_id: None)
    monkeypatch.setattr("campaigns.services.events.event_enqueue", lambda event_id: None)


def _all_at_once(function, arguments: list) -> None:
    barrier = threading.Barrier(len(arguments))
    errors: list[BaseException] = []

    def run(argument) -> None:
        try:
            barrier.wait(timeout=30)
            function(argument)
        except BaseException as error:  # noqa: BLE001 - reported in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors


def _stored(external_id, contact):
    txn, _, _ = transaction_intake(livemode=False, purchase=purchase(external_id, contact=contact))
    return txn.pk


def test_a_campaign_budget_holds_when_many_workers_process_at_once():
    base_rule()
    budgeted = campaign(budget_awards=5, budget_points=10_000, outcomes=[{"kind": "points", "points": 100}])
    ids = [_stored(f"T-{n}", ContactFactory(livemode=False)) for n in range(THREADS)]

    _all_at_once(lambda txn_id: transaction_process(transaction_id=txn_id), ids)

    budgeted.refresh_from_db()
    assert budgeted.awards_count == 5
    assert CampaignAward.objects.filter(campaign=budgeted).count() == 5
    bonus_entries = LedgerEntry.objects.filter(idempotency_key__startswith=f"cmp:{budgeted.pk}:")
    assert sum(bonus_entries.values_list("amount", flat=True)) == 500


def test_the_per_contact_limit_holds_when_one_contacts_purchases_are_processed_at_once():
    base_rule()
    once = campaign(limit_per_contact=1, outcomes=[{"kind": "points", "points": 100}])
    contact = ContactFactory(livemode=False)
    ids = [_stored(f"T-{n}", contact) for n in range(THREADS)]

    _all_at_once(lambda txn_id: transaction_process(transaction_id=txn_id), ids)

    assert CampaignAward.objects.filter(campaign=once).count() == 1
    earned = LedgerEntry.objects.filter(contact=contact, idempotency_key__startswith=f"cmp:{once.pk}:")
    assert list(earned.values_list("amount", flat=True)) == [100]


def test_one_event_processed_by_many_workers_at_once_awards_once():
    opened = campaign(trigger="event", event_type="app_opened", outcomes=[{"kind": "points", "points": 7}])
    contact = ContactFactory(livemode=False)
    event, _ = event_record(livemode=False, contact=contact, event_type="app_opened", external_id="E-1")

    _all_at_once(lambda event_id: event_process(event_id=event_id), [event.pk] * THREADS)

    assert Event.objects.get(pk=event.pk).status == Event.Status.PROCESSED
    assert CampaignAward.objects.filter(campaign=opened).count() == 1
    assert list(LedgerEntry.objects.filter(contact=contact).values_list("amount", flat=True)) == [7]


def test_the_same_event_sent_by_many_clients_at_once_is_stored_once():
    Campaign.objects.all().delete()
    contact = ContactFactory(livemode=False)
    results: list = []

    def send(_):
        results.append(
            event_record(livemode=False, contact=contact, event_type="app_opened", external_id="E-twin")[0].pk
        )

    _all_at_once(send, list(range(THREADS)))

    assert len(set(results)) == 1
    assert Event.objects.filter(external_id="E-twin").count() == 1
