"""Ledger postings per second on PostgreSQL, beside a raw-SQL baseline run by pgbench.

    .venv/bin/python bench/ledger_postings.py [--seconds 10] [--clients 4]

Creates (and drops first) the database `loyalty_bench` on 127.0.0.1:5432, migrates it, makes
10,000 contacts with a points account, then measures:
  1. the service (`ledger_credit`, each posting a lot with an expiry) from N client threads,
     on one hot wallet and spread over the 10,000 wallets;
  2. pgbench with the same number of clients running `INSERT entry + UPDATE balance` in one
     transaction, on one hot account and on random accounts.
Prints postings/s for each and the service/raw ratio (goal: at least 0.25).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "loyalty_bench"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.pop("CELERY_BROKER_URL", None)
WALLETS = 10_000


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def setup() -> list[int]:
    import django

    django.setup()
    from django.core.management import call_command

    from core.validators import luhn_check_digit
    from loyalty.models import Account, Contact

    call_command("migrate", verbosity=0)
    contacts = []
    for n in range(WALLETS):
        body = f"8{n:010d}"
        contacts.append(Contact(livemode=False, member_number=body + luhn_check_digit(body)))
    Contact.objects.bulk_create(contacts, batch_size=2000)
    Account.objects.bulk_create(
        [Account(livemode=False, contact=contact, kind="points") for contact in contacts], batch_size=2000
    )
    return list(Account.objects.order_by("id").values_list("id", flat=True))


def run_service(account_ids: list[int], *, clients: int, seconds: float) -> float:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from loyalty.models import Account
    from loyalty.services.ledger import Cause, ledger_credit

    accounts = {account.pk: account for account in Account.objects.filter(pk__in=account_ids)}
    counts = [0] * clients
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(clients)

    def work(index: int) -> None:
        rng = random.Random(index)
        expires_at = timezone.now() + timedelta(days=365)
        barrier.wait()
        while time.monotonic() < deadline:
            key = uuid.uuid4().hex
            ledger_credit(
                account=accounts[rng.choice(account_ids)],
                amount=rng.randint(1, 500),
                kind="earn",
                cause=Cause("transaction", key, key),
                expires_at=expires_at,
            )
            counts[index] += 1
        connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


PGBENCH_SCRIPT = """\\set aid {aid}
BEGIN;
INSERT INTO loyalty_ledgerentry (livemode, account_id, contact_id, kind, amount, balance_after, source_type,
  source_id, idempotency_key, qualifying_points, qualifying_spend, reason, occurred_at, created_at)
  SELECT false, a.id, a.contact_id, 'earn', 10, 0, 'transaction', '', md5(random()::text || clock_timestamp()::text),
         0, 0, '', now(), now() FROM loyalty_account a WHERE a.id = :aid;
UPDATE loyalty_account SET balance = balance + 10 WHERE id = :aid;
COMMIT;
"""


def run_pgbench(aid_expression: str, *, clients: int, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT.format(aid=aid_expression))
    output = subprocess.run(
        [
            "pgbench",
            "-n",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(int(seconds)),
            "-f",
            script.name,
            DATABASE,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    for line in output.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    recreate_database()
    account_ids = setup()
    first, last = account_ids[0], account_ids[-1]
    print(f"ledger postings/s on PostgreSQL, {args.clients} clients, {args.seconds:.0f} s each, {WALLETS} wallets")
    results = {}
    from loyalty.models import Account
    from loyalty.services.ledger import account_check

    service_results = {}
    cases = [
        ("single hot wallet", [first], str(first)),
        ("spread over 10,000 wallets", account_ids, f"random({first}, {last})"),
    ]
    for label, ids, _ in cases:
        service_results[label] = run_service(ids, clients=args.clients, seconds=args.seconds)
    # Checked before pgbench writes rows of its own (without lots) into the same tables.
    problems = account_check(account=Account.objects.get(pk=first))
    for label, _, aid in cases:
        service = service_results[label]
        raw = run_pgbench(aid, clients=args.clients, seconds=args.seconds)
        results[label] = (service, raw)
        print(f"  {label:28s} service {service:8.0f}/s   raw SQL (pgbench) {raw:8.0f}/s   ratio {service / raw:.2f}")
    print(f"  books of the hot wallet after the service run: {problems or 'exact'}")


if __name__ == "__main__":
    main()
