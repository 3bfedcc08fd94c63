"""Webhook delivery: throughput to a fast local receiver, and event-commit-to-first-attempt
latency, with real Celery workers on Redis and PostgreSQL.

    .venv/bin/python bench/webhooks_delivery.py [--workers 2] [--events 3000] [--rate 100] [--seconds 15]

A fresh database `loyalty_bench_webhooks`, one endpoint subscribed to everything pointing at a
receiver process on 127.0.0.1 that answers 204 at once and logs each `webhook-id` with its
arrival time. This process writes domain events through `outbox_emit`, each in its own database
transaction as services do (the commit triggers a dispatch; beat is not running, so every
delivery below comes from the after-commit path):
  1. latency: --rate events per second for --seconds; for each event, the time from its commit
     to its first attempt reaching the receiver (p50/p95/p99). Target p95 <= 2 s;
  2. throughput: a backlog of --events events committed at once, then deliveries per second
     from the first to the last arrival.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, use_database

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
RECEIVER_PORT = 8097

RECEIVER = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[1], "a", buffering=1)
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        log.write(f"{self.headers['webhook-id']} {time.time()}\n")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
"""


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {at(0.95) * 1000:7.1f} ms   "
        f"p99 {at(0.99) * 1000:7.1f} ms   (n={len(ordered)})"
    )


def _arrivals(log_path: Path) -> dict[str, float]:
    arrivals: dict[str, float] = {}
    for line in log_path.read_text().splitlines():
        event_id, moment = line.split()
        arrivals.setdefault(event_id, float(moment))  # the first attempt
    return arrivals


def _wait_for(log_path: Path, event_ids: set[str], timeout: float) -> dict[str, float]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        arrivals = _arrivals(log_path)
        if event_ids <= arrivals.keys():
            return arrivals
        time.sleep(0.2)
    arrivals = _arrivals(log_path)
    missing = len(event_ids - arrivals.keys())
    print(f"  !! {missing} of {len(event_ids)} events not delivered within {timeout:.0f} s")
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    url = use_database("loyalty_bench_webhooks")

    from django.conf import settings
    from django.db import transaction

    from config.celery import app as celery_app
    from core.models import OutboxEvent
    from core.services import outbox_emit, outbox_emit_many
    from core.webhooks import webhook_endpoint_create

    # This process is the web side: tasks go through Redis to the workers below.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.update(task_always_eager=False, broker_url=BROKER)
    subprocess.run(["redis-cli", "-n", BROKER.rsplit("/", 1)[1], "FLUSHDB"], capture_output=True, check=False)
    webhook_endpoint_create(livemode=False, url=f"http://127.0.0.1:{RECEIVER_PORT}/hook")

    log_path = Path(tempfile.mkdtemp()) / "arrivals.log"
    log_path.touch()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(log_path), str(RECEIVER_PORT)])
    env = {**os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": BROKER, "DEBUG": "0"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"]
            + ["-n", f"hooks{index}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(args.workers)
    ]
    try:
        time.sleep(4)  # workers connect
        # Warm-up: one event, so first-connection costs do not count.
        with transaction.atomic():
            outbox_emit(livemode=False, event_type="order.placed", payload={"warm": True})
        warm = str(OutboxEvent.objects.latest("id").event_id)
        _wait_for(log_path, {warm}, 30)

        print(
            f"webhooks on PostgreSQL + Redis: {args.workers} Celery workers (solo pool), receiver answering 204 at once"
        )
        committed: dict[str, float] = {}
        interval = 1.0 / args.rate
        started = time.time()
        count = int(args.rate * args.seconds)
        for number in range(count):
            due = started + number * interval
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            with transaction.atomic():
                outbox_emit(livemode=False, event_type="transaction.processed", payload={"n": number})
                event_id = str(OutboxEvent.objects.latest("id").event_id)
            committed[event_id] = time.time()
        arrivals = _wait_for(log_path, set(committed), 120)
        latencies = [arrivals[event_id] - moment for event_id, moment in committed.items() if event_id in arrivals]
        print(f"  1. commit -> first attempt at {args.rate:.0f} events/s: {_percentiles(latencies)}")

        # The backlog: committed in one transaction (one dispatch task; it continues itself in
        # new tasks while the backlog lasts, so every worker takes part).
        first_id = OutboxEvent.objects.latest("id").pk
        with transaction.atomic():
            outbox_emit_many(
                livemode=False,
                events=[("transaction.processed", {"burst": number}) for number in range(args.events)],
            )
        burst = {
            str(event_id) for event_id in OutboxEvent.objects.filter(pk__gt=first_id).values_list("event_id", flat=True)
        }
        arrivals = _wait_for(log_path, burst, 300)
        moments = sorted(arrivals[event_id] for event_id in burst if event_id in arrivals)
        span = moments[-1] - moments[0] if len(moments) > 1 else float("nan")
        print(f"  2. throughput: {len(moments)} deliveries in {span:.2f} s = {len(moments) / span:,.0f} deliveries/s")
    finally:
        for worker in workers:
            worker.terminate()
        receiver.terminate()
        for process in [*workers, receiver]:
            process.wait(10)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
