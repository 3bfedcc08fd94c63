"""Purchase intake latency and end-to-end throughput on PostgreSQL + Redis with real workers.

    .venv/bin/python bench/transactions_pipeline.py [--seconds 15] [--soak 60] [--clients 8]

Serves the app with gunicorn and runs Celery workers (Redis broker) against a fresh database
`loyalty_bench_txn`, then measures with wrk (8 concurrent clients, every request a new purchase):
  1. intake latency (p50/p95) of 20-line and 1,000-line purchases with every client sending its
     next purchase as soon as it has an answer (a closed loop: the most the server accepts),
     first with the Celery workers not started, then (20 lines) again while they drain that
     backlog on the same cores; and the queries one intake runs for 20 and for 1,000 lines (the
     count must not depend on the lines);
  2. a soak of --soak seconds at --soak-rate 20-line purchases/s offered on a fixed schedule by
     the same number of clients: intake latency, accepted/s, processed/s under load and end to
     end, and the backlog (queued in the database) sampled every 5 s — flat means the workers
     keep up.
Targets on a 2-core machine: 20-line intake p95 <= 25 ms; 1,000-line p95 <= 250 ms;
end-to-end >= 150 purchases/s with no growing backlog.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from common import ROOT, Server, cpu_seconds_by_process, cpu_split, lua_string, paced, use_database, wrk

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")

PURCHASE_SCRIPT = """
local counter = 0
local prefix = {prefix}
local middle = {middle}
local suffix = {suffix}
local contacts = {{}}
for contact in string.gmatch({contacts}, "[^,]+") do contacts[#contacts + 1] = contact end
local thread_name = "0"
setup = function(thread)
  counter = counter + 1
  thread:set("name", tostring(counter))
end
init = function(args)
  thread_name = name
  n = 0
end
request = function()
  n = n + 1
  -- every purchase for one of many contacts, as at a real till
  local contact = contacts[(n * 7 + tonumber(thread_name) * 13) % #contacts + 1]
  local body = prefix .. {tag} .. "-" .. thread_name .. "-" .. n .. middle .. contact .. suffix
  return wrk.format("POST", "/api/v1/transactions", {{["Content-Type"] = "application/json",
    ["Authorization"] = "Api-Key " .. {key}}}, body)
end
"""


def purchase_template(lines: int, contact_id: str = "@@CONTACT@@") -> tuple[str, ...]:
    """The JSON body cut around the purchase id and the contact id, for wrk to fill in."""
    payload = {
        "id": "@@ID@@",
        "contact": {"id": contact_id},
        "occurred_at": datetime.now(UTC).isoformat(),
        "currency": "EUR",
        "channel": "pos",
        "items": [
            {"sku": f"SKU{n % 500:04d}", "quantity": 1, "unit_price": "4.99", "amount": "4.99"} for n in range(lines)
        ],
        "payments": [{"method": "card", "amount": f"{Decimal('4.99') * lines}"}],
        "tax_total": "0.00",
    }
    text = json.dumps(payload)
    prefix, rest = text.split("@@ID@@")
    if contact_id != "@@CONTACT@@":
        return prefix, rest
    middle, suffix = rest.split("@@CONTACT@@")
    return prefix, middle, suffix


def purchase_script(lines: int, contacts: list[str], key: str, *, tag: str) -> str:
    prefix, middle, suffix = purchase_template(lines)
    return PURCHASE_SCRIPT.format(
        prefix=lua_string(prefix),
        middle=lua_string(middle),
        suffix=lua_string(suffix),
        contacts=lua_string(",".join(contacts)),
        key=lua_string(key),
        tag=lua_string(tag),
    )


def build_world(contacts: int = 200):
    from catalogue.services import product_create
    from core.services import api_key_create
    from loyalty.services import contact_create
    from loyalty.services.earning import earning_rule_create
    from loyalty.services.tiers import tier_create

    for n in range(500):
        product_create(livemode=False, sku=f"SKU{n:04d}", family=f"family-{n % 20}", brand=f"brand-{n % 7}")
    earning_rule_create(
        livemode=False,
        name="Base",
        currency="EUR",
        points_per_unit=Decimal(1),
        exclusions=[{"kind": "family", "value": "family-3"}],
    )
    tier_create(livemode=False, name="Silver", rank=1, threshold=500, multiplier=Decimal("1.25"))
    ids = [str(contact_create(livemode=False, first_name=f"B{n}").pk) for n in range(contacts)]
    _, key = api_key_create(name="bench", livemode=False)
    return ids, key


def intake_queries(contact_id: str) -> dict[int, int]:
    """How many queries one intake runs, for 20 and for 1,000 lines (in-process, eager off)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings
    from rest_framework.test import APIClient

    from core.services import api_key_create

    _, key = api_key_create(name="count", livemode=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    from config.celery import app

    app.conf.task_always_eager = False  # enqueue to Redis, as the server does: count intake only
    app.conf.broker_url = BROKER
    counts = {}
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        # A first request loads what every later one finds cached (the API key, the program
        # settings): not counted.
        prefix, suffix = purchase_template(1, contact_id)
        warm = client.post("/api/v1/transactions", prefix + "WARM" + suffix, content_type="application/json")
        assert warm.status_code == 202, warm.content
        for lines in (20, 1000):
            prefix, suffix = purchase_template(lines, contact_id)
            body = prefix + f"COUNT-{lines}" + suffix
            with CaptureQueriesContext(connection) as captured:
                response = client.post("/api/v1/transactions", body, content_type="application/json")
            assert response.status_code == 202, response.content
            counts[lines] = len(captured.captured_queries)
    return counts


def start_workers(count: int, nice: int = 0) -> list[subprocess.Popen]:
    """Celery workers; `nice` > 0 runs them at a lower CPU priority than the web workers, as a
    deployment that puts checkout latency first would (the database queue absorbs the rest)."""
    env = {**os.environ, "CELERY_BROKER_URL": BROKER, "DEBUG": "0"}
    return [
        subprocess.Popen(
            [
                *(["nice", "-n", str(nice)] if nice else []),
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--loglevel=WARNING",
                "-n",
                f"bench{index}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--soak", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    # Sync workers wait on PostgreSQL and Redis for much of a request: two per core keep the
    # cores busy (gunicorn's own advice is 2 × cores + 1).
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--celery-workers", type=int, default=2)
    parser.add_argument("--soak-rate", type=float, default=150, help="purchases/s offered during the soak")
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="run the Celery workers at this nice level (0: as the web)"
    )
    args = parser.parse_args()
    # As in production: a cache shared by web and workers (the intake's drain flag lives there).
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    use_database("loyalty_bench_txn")
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    contacts, key = build_world()
    counts = intake_queries(contacts[0])
    server = Server(port=8095, workers=args.web_workers, extra_env={"CELERY_BROKER_URL": BROKER})
    workers: list[subprocess.Popen] = []
    from transactions.models import Transaction

    print(
        f"purchases on PostgreSQL + Redis: gunicorn {args.web_workers} workers, {args.celery_workers} Celery "
        f"workers (nice {args.worker_nice}), {args.clients} concurrent clients"
    )
    print(f"  queries per intake: {counts[20]} for 20 lines, {counts[1000]} for 1,000 lines")
    try:
        # Intake alone first (the workers not started yet: what a till waits for when the
        # workers run elsewhere), then again while the workers drain the backlog that left on
        # the same two cores (a burst on a single machine).
        runs = [
            ("intake, 20-line purchase", 20, "workers off"),
            ("intake, 1,000-line purchase", 1000, "workers off"),
            ("intake, 20-line purchase", 20, "workers draining"),
        ]
        for label, lines, phase in runs:
            if phase == "workers draining" and not workers:
                workers = start_workers(args.celery_workers, nice=args.worker_nice)
            script = purchase_script(lines, contacts, key, tag=f"I{lines}-{phase.split()[1]}")
            result = wrk(8095, script, connections=args.clients, seconds=args.seconds)
            print(
                f"  {label:28s} {phase:16s} p50 {result['p50']:6.1f} ms   p95 {result['p95']:6.1f} ms   "
                f"{result['requests'] / result['seconds']:6.0f} accepted/s   non-2xx {int(result['non2xx'])}"
            )
        # Let the workers drain what the latency runs queued before the soak.
        while Transaction.objects.filter(status="queued").exists():
            time.sleep(1)
        samples, stop = [], threading.Event()

        def sample():
            started = time.monotonic()
            while not stop.is_set():
                queued = Transaction.objects.filter(status="queued", external_id__startswith="S-").count()
                processed = Transaction.objects.filter(status="processed", external_id__startswith="S-").count()
                samples.append((time.monotonic() - started, queued, processed))
                stop.wait(5)

        from django.db import connection

        sampler = threading.Thread(target=sample)
        sampler.start()
        prefix, middle, suffix = purchase_template(20)
        bodies = (prefix + f"S-{n}" + middle + contacts[(n * 7) % len(contacts)] + suffix for n in itertools.count())
        cpu_before = cpu_seconds_by_process()
        result = paced(
            8095, key, "/api/v1/transactions", bodies, rate=args.soak_rate, seconds=args.soak, clients=args.clients
        )
        cpu_used = cpu_split(cpu_before, cpu_seconds_by_process(), result["seconds"])
        accepted = int(result["requests"])
        processed_under_load = Transaction.objects.filter(status="processed", external_id__startswith="S-").count()
        drain_started = time.monotonic()
        while Transaction.objects.filter(status="queued", external_id__startswith="S-").exists():
            time.sleep(0.5)
        drained = time.monotonic() - drain_started
        stop.set()
        sampler.join()
        connection.close()
        processed = Transaction.objects.filter(status="processed", external_id__startswith="S-").count()
        failed = Transaction.objects.filter(status="failed").count()
        print(
            f"  soak {args.soak:.0f} s at {args.soak_rate:.0f} purchases/s offered by {args.clients} paced clients "
            f"(20 lines):"
        )
        print(
            f"    intake p50 {result['p50']:6.1f} ms   p95 {result['p95']:6.1f} ms   "
            f"{accepted / result['seconds']:.0f} accepted/s   non-2xx {int(result['non2xx'])}"
        )
        print(
            f"    {processed_under_load / result['seconds']:.0f} processed/s while under load; "
            f"{processed / (result['seconds'] + drained):.0f} processed/s end to end (the backlog drained "
            f"{drained:.1f} s after the load stopped); failed {failed}"
        )
        print("    backlog (queued in the database) every 5 s: " + ", ".join(f"{q}" for _, q, _ in samples))
        print(f"    CPU while under load: {cpu_used}")
    finally:
        for worker in workers:
            worker.terminate()
        server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
