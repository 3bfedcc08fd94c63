"""Webhook delivery end to end: real Celery workers on Redis, a real HTTP receiver on 127.0.0.1.

A worker killed with SIGKILL while its HTTP request is in flight records nothing (the request is
outside any database transaction, and the lease was committed before it): once the lease runs
out, another worker sends the same event again, with the same `webhook-id`, and records it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from core.models import OutboxEvent, WebhookAttempt, WebhookDelivery
from core.services import outbox_emit
from core.webhooks import webhook_endpoint_create

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.django_db(transaction=True)]

# Workers with a 2 s lease (a killed worker's delivery comes due again within the test) and a
# receiver timeout long enough for the request to be in flight when the worker is killed.
WORKER_ENV = {"WEBHOOK_LEASE_SECONDS": "2", "WEBHOOK_TIMEOUT_SECONDS": "30"}


class SlowFirstReceiver:
    """Keeps the first request waiting (until released, 60 s at most); answers the others 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.requests.append(({name.lower(): value for name, value in self.headers.items()}, body))
                if len(receiver.requests) == 1:
                    receiver.release.wait(60)
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the worker that sent the first request is gone

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = SlowFirstReceiver()
    yield made
    made.close()


def _dispatch_until(worker, predicate, *, timeout: float = 60.0) -> None:
    """Ask the worker to dispatch every half second, as beat does every 10 s, until `predicate`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.send("core.webhooks_dispatch")
        try:
            worker.wait_until(predicate, timeout=0.5, interval=0.05)
            return
        except AssertionError:
            continue
    raise AssertionError(f"not delivered within {timeout} s; worker log:\n{worker.log()[-4000:]}")


def test_a_worker_killed_mid_delivery_leaves_the_event_to_another_worker_with_the_same_webhook_id(
    celery_workers, receiver
):
    endpoint = webhook_endpoint_create(livemode=False, url=receiver.url, event_types=["order.placed"])
    outbox_emit(livemode=False, event_type="order.placed", payload={"order_id": "o-1"})
    event = OutboxEvent.objects.get()

    first = celery_workers(env=WORKER_ENV)
    first.send("core.webhooks_dispatch")
    first.wait_until(lambda: len(receiver.requests) == 1, timeout=60)
    os.kill(first.process.pid, signal.SIGKILL)  # the request is in flight: no answer, nothing recorded
    first.process.wait(10)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert not WebhookAttempt.objects.exists()

    second = celery_workers(env=WORKER_ENV)
    _dispatch_until(second, lambda: WebhookDelivery.objects.filter(status="succeeded").exists())

    assert len(receiver.requests) == 2
    webhook_ids = [headers["webhook-id"] for headers, _body in receiver.requests]
    assert webhook_ids == [str(event.event_id)] * 2
    for headers, body in receiver.requests:
        assert Webhook(endpoint.secret).verify(body, headers)["data"] == {"order_id": "o-1"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert list(WebhookAttempt.objects.values_list("status_code", flat=True)) == [200]
    assert "core.webhooks_dispatch" in second.log()
