"""Campaign evaluation time for one purchase, in-process, on PostgreSQL.

    .venv/bin/python bench/campaigns_eval.py [--runs 500] [--campaigns 20] [--restrictions 50]

A fresh database `loyalty_bench_campaigns` with 20 active purchase campaigns of 50 catalogue
restrictions each (includes by SKU, family and brand, some excludes), a mix of conditions,
goals, limits and budgets; 4 of them fire for the benchmark basket. Each run is one 20-line
purchase's campaign step exactly as processing runs it (`campaigns.services.hooks.
purchase_processed`: campaigns in force, audience lists, nth purchase, the engine, goals,
limits, budgets and the ledger postings of the campaigns that fire), inside a transaction that
is rolled back so every run sees the same state. Prints p50/p95/p99 in milliseconds, for:
  1. the pure engine alone (20 campaigns × 1 basket, no database);
  2. the whole campaign step (engine + database work of the firing campaigns);
  3. the same step when no campaign fires (the common case: the query cost alone).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal

from common import use_database


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return (
        f"p50 {statistics.median(ordered):6.2f} ms   p95 {at(0.95):6.2f} ms   p99 {at(0.99):6.2f} ms"
        f"   (n={len(ordered)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--restrictions", type=int, default=50)
    args = parser.parse_args()
    use_database("loyalty_bench_campaigns")

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from campaigns.selectors import PURCHASE_TRIGGERS, campaigns_in_force
    from campaigns.services.definitions import campaign_create
    from campaigns.services.engine import CauseFacts, evaluate
    from campaigns.services.hooks import purchase_processed
    from core.baskets import BasketLine
    from loyalty.models import Contact
    from loyalty.services.contacts import contact_create
    from loyalty.services.ledger import account_get_or_create
    from offers.services.engine import BasketContext
    from transactions.models import Transaction
    from transactions.services.processing import PurchaseFacts

    livemode = False
    contact = contact_create(livemode=livemode, first_name="Bench", email="bench@example.com")
    lines = [
        BasketLine(
            sku=f"SKU{n:03d}",
            amount=1000 + 37 * n,
            quantity=Decimal(1 + n % 3),
            family=f"fam{n % 7}",
            brand=f"br{n % 5}",
        )
        for n in range(20)
    ]
    firing = 4
    for number in range(args.campaigns):
        fires = number < firing
        # Non-firing campaigns name products this basket does not hold (their whole restriction
        # list is scanned and misses); firing ones include one of the basket's SKUs among 49 others.
        restrictions = [
            {"mode": "include", "kind": ("sku", "family", "brand")[n % 3], "value": f"other-{number}-{n}"}
            for n in range(args.restrictions - 2)
        ]
        restrictions.append({"mode": "include", "kind": "sku", "value": f"SKU{number:03d}" if fires else "absent"})
        restrictions.append({"mode": "exclude", "kind": "brand", "value": f"excluded-{number}"})
        fields = {
            "name": f"Campaign {number}",
            "trigger": "purchase",
            "currency": "EUR",
            "priority": number,
            "channels": ["pos", "web"],
            "days_of_week": [1, 2, 3, 4, 5, 6, 7],
            "min_spend": 500,
        }
        if number % 4 == 1:
            fields.update(goal_metric="spend", goal_target=100_000, goal_period="month")
        if number % 4 == 2:
            fields.update(limit_per_contact=1_000_000, limit_period="month", budget_awards=10**9)
        outcomes = [{"kind": "points", "points": 50 + number}]
        if number % 3 == 0:
            outcomes.append({"kind": "points_multiplier", "multiplier": "2"})
        campaign_create(livemode=livemode, restrictions=restrictions, outcomes=outcomes, status="active", **fields)

    occurred_at = datetime.now(UTC)
    txn = Transaction.objects.create(
        livemode=livemode,
        external_id="BENCH-1",
        fingerprint="x",
        contact=contact,
        occurred_at=occurred_at,
        currency="EUR",
        channel="pos",
        amount=sum(line.amount for line in lines),
    )
    contact = Contact.objects.get(pk=contact.pk)
    account_get_or_create(contact=contact, kind="points")  # every earning contact has one
    specs = campaigns_in_force(livemode=livemode, triggers=PURCHASE_TRIGGERS, at=occurred_at)
    assert len(specs) == args.campaigns, len(specs)
    facts = CauseFacts(
        kind="purchase",
        key=f"txn:{txn.pk}",
        occurred_at=occurred_at,
        contact_id=str(contact.pk),
        basket=BasketContext(lines=lines, currency="EUR", at=occurred_at, channel="pos"),
        base_points=250,
    )
    fired = sum(evaluate(spec, facts).fires for spec in specs)
    print(f"{args.campaigns} campaigns x {args.restrictions} restrictions, 20-line basket: {fired} fire")

    engine_times = []
    for _ in range(args.runs):
        basket = BasketContext(lines=lines, currency="EUR", at=occurred_at, channel="pos")  # fresh line index
        started = time.perf_counter()
        for spec in specs:
            evaluate(spec, CauseFacts(**{**facts.__dict__, "basket": basket}))
        engine_times.append((time.perf_counter() - started) * 1000)
    print(f"  engine only (20 campaigns)      {_percentiles(engine_times)}")

    class Rollback(Exception):
        pass

    def step(purchase_facts: PurchaseFacts) -> float:
        started = 0.0
        try:
            with transaction.atomic():
                started = time.perf_counter()
                purchase_processed(purchase_facts)
                elapsed = (time.perf_counter() - started) * 1000
                raise Rollback(elapsed)
        except Rollback as done:
            return done.args[0]

    purchase_facts = PurchaseFacts(
        transaction=txn, contact=contact, lines=lines, tier=None, base_points=250, offer_points=0
    )
    for _ in range(20):  # warm the spec cache and the connection
        step(purchase_facts)
    firing_times = [step(purchase_facts) for _ in range(args.runs)]
    print(f"  campaign step, {fired} firing        {_percentiles(firing_times)}")

    other_lines = [BasketLine(sku=f"NONE{n}", amount=1000, quantity=Decimal(1)) for n in range(20)]
    quiet_facts = PurchaseFacts(
        transaction=txn, contact=contact, lines=other_lines, tier=None, base_points=250, offer_points=0
    )
    quiet_times = [step(quiet_facts) for _ in range(args.runs)]
    print(f"  campaign step, none firing      {_percentiles(quiet_times)}")
    for label, run_facts in ((f"{fired} firing", purchase_facts), ("none firing", quiet_facts)):
        with CaptureQueriesContext(connection) as queries:
            step(run_facts)
        print(f"  queries per step, {label}: {len(queries.captured_queries)}")
        if os.environ.get("BENCH_SHOW_QUERIES"):
            for query in queries.captured_queries:
                print("    ", query["sql"][:160])


if __name__ == "__main__":
    main()
