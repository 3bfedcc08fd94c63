"""Webhook delivery against a real HTTP receiver on 127.0.0.1."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from core.services import outbox_emit
from core.webhooks import deliveries_lease, events_fan_out, webhook_endpoint_create, webhooks_dispatch

pytestmark = pytest.mark.django_db


class Receiver:
    """Answers each request with the next scripted (status, headers, delay)."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({name.lower(): value for name, value in self.headers.items()}, body.decode()))
                status, headers, delay = receiver.script.pop(0) if receiver.script else (200, {}, 0)
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*script):
        made.append(Receiver(script))
        return made[-1]

    yield make
    for item in made:
        item.close()


def dispatch_until_idle(moments):
    """Run the dispatcher at each moment (time travel instead of sleeping)."""
    for moment in moments:
        with time_machine.travel(moment, tick=False):
            webhooks_dispatch()


def test_failures_are_retried_on_the_schedule_until_the_first_success_with_a_stable_signed_id(receiver):
    server = receiver((500, {}, 0), (500, {}, 0), (200, {}, 0), (200, {}, 0))
    endpoint = webhook_endpoint_create(livemode=False, url=server.url, event_types=["tier.changed"])
    outbox_emit(livemode=False, event_type="tier.changed", payload={"contact_id": "c1", "to_tier": "Gold"})
    outbox_emit(livemode=False, event_type="offer.issued", payload={"x": 1})  # not subscribed
    start = timezone.now()
    webhooks_dispatch()
    delivery = WebhookDelivery.objects.get()
    first_retry = delivery.next_attempt_at - start
    assert timedelta(seconds=3) <= first_retry <= timedelta(seconds=7)  # 5 s ± jitter
    dispatch_until_idle([start + timedelta(seconds=8), start + timedelta(seconds=30), start + timedelta(minutes=5)])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert len(server.requests) == 3  # stopped at the first 2xx
    ids = {headers["webhook-id"] for headers, _ in server.requests}
    assert ids == {str(delivery.event.event_id)}
    for headers, body in server.requests:
        assert Webhook(endpoint.secret).verify(body, headers)["data"]["to_tier"] == "Gold"
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500, 500, 200]


def test_a_429_is_retried_after_its_retry_after(receiver):
    server = receiver((429, {"Retry-After": "120"}, 0))
    webhook_endpoint_create(livemode=False, url=server.url)
    outbox_emit(livemode=False, event_type="transaction.processed", payload={"id": "T1"})
    before = timezone.now()
    webhooks_dispatch()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending"
    assert timedelta(seconds=119) <= delivery.next_attempt_at - before <= timedelta(seconds=125)


def test_a_timeout_counts_as_a_failed_attempt(receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    server = receiver((200, {}, 1.0))
    webhook_endpoint_create(livemode=False, url=server.url)
    outbox_emit(livemode=False, event_type="transaction.processed", payload={"id": "T1"})
    webhooks_dispatch()
    delivery = WebhookDelivery.objects.get()
    attempt = delivery.attempt_log.get()
    assert delivery.status == "pending" and attempt.status_code is None and "timed out" in attempt.error.lower()


def test_410_disables_the_endpoint_at_once(receiver):
    server = receiver((410, {}, 0))
    endpoint = webhook_endpoint_create(livemode=False, url=server.url)
    outbox_emit(livemode=False, event_type="a", payload={})
    outbox_emit(livemode=False, event_type="b", payload={})
    webhooks_dispatch()
    endpoint.refresh_from_db()
    assert not endpoint.is_active and "410" in endpoint.disabled_reason
    assert len(server.requests) == 1  # nothing more is sent to a gone receiver


def test_a_run_of_failures_disables_the_endpoint(receiver, settings):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    server = receiver(*[(503, {}, 0)] * 5)
    endpoint = webhook_endpoint_create(livemode=False, url=server.url)
    for index in range(3):
        outbox_emit(livemode=False, event_type="a", payload={"n": index})
    webhooks_dispatch()
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.consecutive_failures == 3


def test_a_delivery_leased_by_a_worker_that_died_is_sent_when_the_lease_runs_out(receiver):
    server = receiver()
    webhook_endpoint_create(livemode=False, url=server.url)
    outbox_emit(livemode=False, event_type="a", payload={})
    events_fan_out()
    assert len(deliveries_lease()) == 1  # the worker took it … and was killed before sending
    webhooks_dispatch()
    assert server.requests == []  # still leased
    dispatch_until_idle([timezone.now() + timedelta(minutes=2)])
    assert len(server.requests) == 1
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_endpoints_only_get_events_of_their_mode(receiver):
    server = receiver()
    webhook_endpoint_create(livemode=True, url=server.url)
    outbox_emit(livemode=False, event_type="a", payload={})
    webhooks_dispatch()
    assert server.requests == [] and OutboxEvent.objects.get().dispatched_at is not None


def test_the_outbox_row_and_the_domain_change_commit_or_roll_back_together():
    from loyalty.services.ledger import Cause
    from loyalty.services.wallets import money_credit, payout_create
    from loyalty.tests.factories import ContactFactory

    contact = ContactFactory()
    money_credit(contact=contact, kind="open", currency="EUR", amount=500, cause=Cause("campaign", "c", "c"))
    with pytest.raises(RuntimeError), transaction.atomic():
        payout_create(contact=contact, currency="EUR", amount=100, cause=Cause("transaction", "p", "p"))
        assert OutboxEvent.objects.filter(event_type="payout.requested").exists()
        raise RuntimeError("failure after the domain write")
    assert not OutboxEvent.objects.filter(event_type="payout.requested").exists()
    assert not contact.payouts.exists()


def test_management_api_shows_the_secret_once(management_client, client_test):
    created = management_client.post(
        "/api/v1/webhook-endpoints", {"url": "https://example.com/hook", "event_types": ["order.placed"]}, format="json"
    )
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    fetched = management_client.get(f"/api/v1/webhook-endpoints/{created.json()['id']}").json()
    assert "secret" not in fetched
    assert client_test.get("/api/v1/webhook-endpoints").status_code == 403
    patched = management_client.patch(
        f"/api/v1/webhook-endpoints/{created.json()['id']}", {"is_active": False}, format="json"
    )
    assert patched.json()["is_active"] is False
    assert management_client.delete(f"/api/v1/webhook-endpoints/{created.json()['id']}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_the_message_body_names_the_type_and_carries_the_payload(receiver):
    server = receiver()
    webhook_endpoint_create(livemode=False, url=server.url)
    outbox_emit(livemode=False, event_type="order.placed", payload={"order_id": "o1"})
    webhooks_dispatch()
    body = json.loads(server.requests[0][1])
    assert (body["type"], body["data"], body["livemode"]) == ("order.placed", {"order_id": "o1"}, False)


def test_a_transaction_writing_several_events_asks_for_one_dispatch(settings, django_capture_on_commit_callbacks):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    webhook_endpoint_create(livemode=False, url="https://crm.example.com/hooks")
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for index in range(3):
            outbox_emit(livemode=False, event_type="a", payload={"n": index})
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("endpoint", "asks"),
    [
        (None, False),
        ({"livemode": True}, False),  # another mode's endpoint
        ({"livemode": False, "event_types": ["order.placed"]}, False),  # subscribed to other events
        ({"livemode": False, "event_types": ["transaction.processed"]}, True),
        ({"livemode": False}, True),  # every event
    ],
)
def test_a_commit_asks_for_a_dispatch_only_when_an_active_endpoint_wants_its_events(
    settings, django_capture_on_commit_callbacks, endpoint, asks
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    if endpoint is not None:
        webhook_endpoint_create(url="https://crm.example.com/hooks", **endpoint)

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        outbox_emit(livemode=False, event_type="transaction.processed", payload={})

    assert len(callbacks) == (1 if asks else 0)
    assert OutboxEvent.objects.filter(dispatched_at__isnull=True).count() == 1  # beat's dispatch takes it


def test_an_endpoint_created_in_this_process_is_dispatched_to_at_once(settings, django_capture_on_commit_callbacks):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with django_capture_on_commit_callbacks() as before, transaction.atomic():
        outbox_emit(livemode=False, event_type="order.placed", payload={})  # no endpoint yet: cached as such

    webhook_endpoint_create(livemode=False, url="https://crm.example.com/hooks")
    with django_capture_on_commit_callbacks() as after, transaction.atomic():
        outbox_emit(livemode=False, event_type="order.placed", payload={})

    assert (len(before), len(after)) == (0, 1)


def test_a_backlog_larger_than_one_dispatch_continues_in_a_new_task_at_once(receiver, monkeypatch):
    from core import tasks

    hook = receiver()
    webhook_endpoint_create(livemode=False, url=hook.url)
    for number in range(3):
        outbox_emit(livemode=False, event_type="order.placed", payload={"n": number})
    monkeypatch.setattr("core.webhooks.DISPATCH_BATCH", 2)
    continued = []
    monkeypatch.setattr(tasks.webhooks_dispatch, "delay", lambda: continued.append(True))

    assert tasks.webhooks_dispatch() == 2
    assert continued == [True]  # the third waits for the next task, not for beat
    continued.clear()
    assert tasks.webhooks_dispatch() == 1
    assert continued == []
    assert len(hook.requests) == 3
