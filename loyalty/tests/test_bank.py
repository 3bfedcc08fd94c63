"""The bank test: many threads earn, spend, expire and reverse on a few hot wallets at once,
against PostgreSQL; afterwards every account's books must be exact and no earning lost or
doubled."""

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.db.models import Sum
from django.utils import timezone

from core.exceptions import DomainError
from loyalty.models import Account, LedgerEntry, Program
from loyalty.services.ledger import (
    Cause,
    account_check,
    account_get_or_create,
    ledger_credit,
    ledger_debit,
    ledger_reverse,
    lots_expire_due,
)
from loyalty.tests.factories import ContactFactory

THREADS = 12
OPERATIONS_PER_THREAD = 60
WALLETS = 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("ledger_path")
@pytest.mark.parametrize(
    "negative_policy", [Program.NegativePointsPolicy.CLAMP, Program.NegativePointsPolicy.ALLOW_DEBT]
)
def test_concurrent_earn_spend_expire_reverse_keep_every_account_exact(negative_policy):
    accounts = []
    for _ in range(WALLETS):
        contact = ContactFactory()
        accounts.append(account_get_or_create(contact=contact, kind=Account.Kind.POINTS))
        accounts.append(account_get_or_create(contact=contact, kind=Account.Kind.OPEN, currency="EUR"))
    earned: dict[str, int] = {}
    earned_lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        try:
            barrier.wait()
            for step in range(OPERATIONS_PER_THREAD):
                account = rng.choice(accounts)
                operation = rng.choices(["earn", "retry", "spend", "expire", "reverse"], [5, 2, 4, 1, 2])[0]
                try:
                    if operation in ("earn", "retry"):
                        with earned_lock:
                            known = [key for key in earned if key.startswith(f"{account.pk}:")]
                        if operation == "retry" and known:
                            key = rng.choice(known)
                            amount = earned[key]
                        else:
                            key, amount = f"{account.pk}:{worker}:{step}", rng.randint(1, 500)
                        # Some lots expire during the run: the sweep and spends race with them.
                        expires_at = timezone.now() + timedelta(seconds=rng.choice([0.2, 1, 3600]))
                        ledger_credit(
                            account=account,
                            amount=amount,
                            kind="earn",
                            cause=Cause("transaction", key, key),
                            expires_at=expires_at,
                        )
                        with earned_lock:
                            earned[key] = amount
                    elif operation == "spend":
                        key = f"spend:{worker}:{step}"
                        ledger_debit(
                            account=account,
                            amount=rng.randint(1, 300),
                            kind="spend",
                            cause=Cause("transaction", key, key),
                        )
                    elif operation == "expire":
                        lots_expire_due()
                    else:
                        original = LedgerEntry.objects.filter(account=account, kind="earn").order_by("?").first()
                        if original is not None:
                            key = f"reverse:{original.pk}:{worker}:{step}"
                            ledger_reverse(
                                original=original,
                                cause=Cause("return", key, key),
                                amount=rng.randint(1, original.amount),
                                negative_policy=negative_policy,
                            )
                except DomainError:
                    pass  # insufficient balance, nothing left to reverse: expected refusals
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close_old_connections()
    assert errors == []
    lots_expire_due(now=timezone.now() + timedelta(days=1))  # the sweep leaves nothing behind

    for account in accounts:
        assert account_check(account=account) == [], account
        account.refresh_from_db()
        if account.kind == Account.Kind.OPEN or negative_policy == Program.NegativePointsPolicy.CLAMP:
            assert account.balance >= 0
    # Every earning the threads made is in the ledger exactly once, with its amount.
    posted = Counter(LedgerEntry.objects.filter(kind="earn").values_list("idempotency_key", flat=True))
    assert set(posted) == set(earned)
    assert max(posted.values()) == 1
    assert LedgerEntry.objects.filter(kind="earn").aggregate(total=Sum("amount"))["total"] == sum(earned.values())
