"""Contact change feed and bulk contact writes, in-process with DRF's APIClient on PostgreSQL.

    .venv/bin/python bench/change_feed.py [--contacts 100000] [--http]

Against a fresh database `loyalty_bench_feed`, measures:
  1. POST /contacts/bulk: 10,000 new contacts in 10 requests of 1,000 (total time), then the same
     10,000 rows again (all updates);
  2. GET /contacts/changes: a full scan from an empty cursor over `--contacts` contacts in pages
     of 1,000 (contacts per second) and the p95 latency of one page of 1,000.
Targets: bulk write of 10,000 contacts <= 3 s; page of 1,000 p95 <= 100 ms; full scan >= 10,000
contacts/s. In-process: no HTTP server or network in the figures, but the whole DRF stack
(authentication, throttling, validation, serialization, JSON rendering) is. In-process, the
client's own parsing of each page shares the server's heap (and its garbage collections);
`--http` also reads the feed from a gunicorn worker over loopback HTTP, client and server in
separate processes as deployed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from urllib.parse import urlencode

from common import Server, percentiles, use_database

BATCH = 1000


def rows_for(start: int, count: int) -> list[dict]:
    return [
        {
            "match_key": f"POS-{n:07d}",
            "match_key_type": "external_id",
            "source": "pos",
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "email": f"contact{n}@example.com",
            "mobile_phone": f"+4670{n:07d}",
            "consents": {"email": n % 2 == 0},
            "attributes": {"store": f"S{n % 40}"},
        }
        for n in range(start, start + count)
    ]


def bulk_write(client, start: int, count: int) -> tuple[float, dict]:
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    for offset in range(start, start + count, BATCH):
        response = client.post("/api/v1/contacts/bulk", {"contacts": rows_for(offset, BATCH)}, format="json")
        assert response.status_code == 200, response.content[:500]
        for result in json.loads(response.content)["results"]:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    return time.perf_counter() - started, statuses


def full_scan(client, expected_contacts: int) -> tuple[float, list[float], int, int]:
    """Read the whole feed from an empty cursor; returns (seconds, page latencies, changes, contacts)."""
    cursor, latencies, changes, contacts = "", [], 0, set()
    started = time.perf_counter()
    while True:
        page_started = time.perf_counter()
        response = client.get("/api/v1/contacts/changes", {"cursor": cursor, "page_size": BATCH})
        latencies.append(time.perf_counter() - page_started)
        body = json.loads(response.content)
        changes += len(body["results"])
        contacts.update(item["contact"]["id"] for item in body["results"])
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
    return time.perf_counter() - started, latencies, changes, len(contacts)


class HttpClient:
    """`client.get(path, params)` over one keep-alive HTTP connection (what full_scan needs)."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Api-Key {key}"}

    def get(self, path: str, params: dict):
        self.connection.request("GET", f"{path}?{urlencode(params)}", headers=self.headers)
        response = self.connection.getresponse()
        response.content = response.read()
        assert response.status == 200, response.content[:500]
        return response


def wait_until_visible(client, expected_changes: int) -> None:
    """The feed shows a change once every transaction older than it has ended (any session)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _seconds, _latencies, changes, _contacts = full_scan(client, 0)
        if changes >= expected_changes:
            return
        time.sleep(0.5)
    raise SystemExit("the feed did not catch up within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--http", action="store_true", help="also read the feed from gunicorn over HTTP")
    arguments = parser.parse_args()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["DEBUG"] = "0"
    use_database("loyalty_bench_feed")

    from rest_framework.test import APIClient

    from core.services import api_key_create

    _api_key, raw_key = api_key_create(name="bench", livemode=False, scopes=("integration",))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")

    from loyalty.services import contacts as contact_services

    bulk_write(client, 1_000_000, BATCH)  # warm-up (imports, connections), not measured
    hooked_seconds, hooked = bulk_write(client, 3_000_000, 10_000)
    # Without the upper layers' per-contact identifiers-added hooks (transactions attaching
    # waiting purchases: several queries per contact, after commit): loyalty's own cost.
    hooks = list(contact_services.IDENTIFIERS_ADDED_HOOKS)
    contact_services.IDENTIFIERS_ADDED_HOOKS.clear()
    created_seconds, created = bulk_write(client, 0, 10_000)
    updated_seconds, updated = bulk_write(client, 0, 10_000)
    contact_services.IDENTIFIERS_ADDED_HOOKS.extend(hooks)
    print(
        f"bulk write, 10,000 new contacts in 10 requests:      {created_seconds:6.2f} s   {created}   "
        "(target <= 3 s; identifiers-added hooks off)"
    )
    print(f"  the same with the registered hooks (transactions): {hooked_seconds:6.2f} s   {hooked}")
    print(f"bulk write, the same 10,000 again (all updates):     {updated_seconds:6.2f} s   {updated}   (hooks off)")

    filled = 20_000
    contact_services.IDENTIFIERS_ADDED_HOOKS.clear()
    fill_started = time.perf_counter()
    while filled < arguments.contacts:
        count = min(BATCH, arguments.contacts - filled)
        client.post("/api/v1/contacts/bulk", {"contacts": rows_for(2_000_000 + filled, count)}, format="json")
        filled += count
    print(f"(filled to {filled:,} contacts in {time.perf_counter() - fill_started:.1f} s)")
    from loyalty.models import ContactChange

    total_changes = ContactChange.objects.count()
    from django.db import connection

    with connection.cursor() as cursor:
        # What autovacuum does soon after a bulk load; without statistics the planner would not
        # know the feed's index walk is cheap.
        cursor.execute("ANALYZE")
    wait_until_visible(client, total_changes)

    seconds, latencies, changes, contacts = full_scan(client, filled)
    full_pages = latencies[:-1] or latencies
    print(f"change feed, page of 1,000 contacts:                {percentiles(full_pages)}   (target p95 <= 100 ms)")
    print(
        f"change feed, full scan: {changes:,} changes of {contacts:,} contacts in {seconds:.2f} s = "
        f"{contacts / seconds:,.0f} contacts/s, {changes / seconds:,.0f} changes/s   (target >= 10,000 contacts/s)"
    )
    if arguments.http:
        server = Server(port=8097, workers=1)
        try:
            http_client = HttpClient(server.port, raw_key)
            full_scan(http_client, filled)  # warm-up: the worker's imports and connection
            seconds, latencies, changes, contacts = full_scan(http_client, filled)
        finally:
            server.stop()
        full_pages = latencies[:-1] or latencies
        print(f"over HTTP (gunicorn), page of 1,000 contacts:       {percentiles(full_pages)}")
        print(
            f"over HTTP (gunicorn), full scan: {contacts / seconds:,.0f} contacts/s, {changes / seconds:,.0f} changes/s"
        )


if __name__ == "__main__":
    main()
