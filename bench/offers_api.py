"""Offer lookup and lock+redeem over HTTP on PostgreSQL, 8 concurrent clients.

    .venv/bin/python bench/offers_api.py [--seconds 15] [--clients 8]

Serves the app with gunicorn on 127.0.0.1 against a fresh database `loyalty_bench_offers`, then
measures (p50/p95 latency per request):
  1. POST /offers/lookup for a contact with 50 issued offers and a 50-line basket;
  2. the same with a 1,000-line basket;
  3. lock + redeem pairs (each on a fresh issued offer), with operations per second.
Targets on a 2-core machine: 50-line lookup p95 <= 30 ms, 1,000-line p95 <= 150 ms,
lock/redeem p95 <= 20 ms.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from decimal import Decimal

from common import Client, Server, percentiles, use_database

BENEFITS = ["percent_off", "amount_off", "fixed_price", "free_item", "bonus_points", "points_multiplier"]
VALUES = {
    "percent_off": "10",
    "amount_off": "2",
    "fixed_price": "1",
    "free_item": "0",
    "bonus_points": "100",
    "points_multiplier": "2",
}


def build_world(clients: int):
    from catalogue.services import product_create
    from core.services import api_key_create
    from loyalty.services import contact_create
    from offers.models import IssuedOffer
    from offers.services.definitions import offer_create

    families = [f"family-{n}" for n in range(20)]
    for n in range(1000):
        product_create(livemode=False, sku=f"SKU{n:04d}", family=families[n % 20], brand=f"brand-{n % 7}")
    contact = contact_create(livemode=False, first_name="Bench")
    offers = []
    for n in range(50):
        benefit = BENEFITS[n % len(BENEFITS)]
        restrictions = [{"mode": "include", "kind": "family", "value": families[(n + k) % 20]} for k in range(5)]
        restrictions += [{"mode": "exclude", "kind": "sku", "value": f"SKU{(n * 7 + k) % 1000:04d}"} for k in range(5)]
        offers.append(
            offer_create(
                livemode=False,
                name=f"Offer {n}",
                status="active",
                benefit_type=benefit,
                benefit_value=Decimal(VALUES[benefit]),
                currency="EUR",
                restrictions=restrictions,
                priority=n % 5,
                min_spend=100,
            )
        )
    IssuedOffer.objects.bulk_create(IssuedOffer(livemode=False, offer=offer, contact=contact) for offer in offers)
    # Fresh issued offers for the lock/redeem runs, one contact each.
    redeemables = []
    plain = offer_create(
        livemode=False, name="Lock me", status="active", benefit_type="percent_off", benefit_value=Decimal(5)
    )
    for n in range(3000):
        other = contact_create(livemode=False, first_name=f"C{n}")
        redeemables.append(IssuedOffer(livemode=False, offer=plain, contact=other))
    IssuedOffer.objects.bulk_create(redeemables)
    _, key = api_key_create(name="bench", livemode=False)
    return str(contact.pk), [str(issued.pk) for issued in redeemables], key


def basket(lines: int) -> dict:
    rng = random.Random(lines)
    return {
        "currency": "EUR",
        "channel": "pos",
        "items": [
            {"sku": f"SKU{rng.randrange(1000):04d}", "quantity": 1, "unit_price": "2.50", "amount": "2.50"}
            for _ in range(lines)
        ],
    }


def run(clients: int, seconds: float, work) -> list[float]:
    samples: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(clients)

    def loop(index: int) -> None:
        mine = []
        barrier.wait()
        while time.monotonic() < deadline:
            mine.extend(work(index))
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    use_database("loyalty_bench_offers")
    contact_id, redeemables, key = build_world(args.clients)
    server = Server(port=8091)
    try:
        connections = [Client(8091, key) for _ in range(args.clients)]
        for label, lines in [("lookup, 50 offers, 50-line basket", 50), ("lookup, 50 offers, 1,000-line basket", 1000)]:
            body = {"contact": {"id": contact_id}, "basket": basket(lines)}
            status, response, _ = connections[0].post("/api/v1/offers/lookup", body)
            assert status == 200, response
            applicable = len(response["offers"])

            def lookup(index, body=body):
                status, _, elapsed = connections[index].post("/api/v1/offers/lookup", body)
                assert status == 200
                return [elapsed]

            samples = run(args.clients, args.seconds, lookup)
            print(f"{label:40s} {percentiles(samples)}   ({applicable} applicable)")

        queue = list(redeemables)
        queue_lock = threading.Lock()
        small = basket(5)

        def lock_and_redeem(index):
            with queue_lock:
                if not queue:
                    time.sleep(0.01)
                    return []
                issued_id = queue.pop()
            transaction_id = f"T-{issued_id}"
            status, response, locked = connections[index].post(
                f"/api/v1/issued-offers/{issued_id}/lock", {"transaction_id": transaction_id, "basket": small}
            )
            assert status == 200, response
            status, response, redeemed = connections[index].post(
                f"/api/v1/issued-offers/{issued_id}/redeem", {"transaction_id": transaction_id}
            )
            assert status == 200, response
            return [locked, redeemed]

        started = time.monotonic()
        samples = run(args.clients, args.seconds, lock_and_redeem)
        elapsed = time.monotonic() - started
        print(f"{'lock + redeem (each call)':40s} {percentiles(samples)}   {len(samples) / elapsed:.0f} operations/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
