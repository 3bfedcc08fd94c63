"""Issued offers under real concurrency on PostgreSQL: threads released together by a barrier,
each with its own database connection (and its own API key when going through the API).

The history table (`IssuedOfferTransition`) is the record the invariants are checked against:
an offer is never redeemed twice between reinstates, a live lock is only ever used by its holder,
and the counters agree with the history."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.baskets import BasketLine
from core.exceptions import DomainError
from core.tests.assertions import assert_error_body
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer, IssuedOfferTransition, Offer, OfferContactUsage
from offers.services import issued as services
from offers.services.engine import BasketContext
from offers.tests.factories import IssuedOfferFactory, OfferFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("offers-concurrency")]

Status = IssuedOffer.Status
BASKET = {
    "currency": "EUR",
    "channel": "pos",
    "items": [
        {"sku": "MILK", "quantity": 2, "unit_price": "1.50", "amount": "3.00"},
        {"sku": "BREAD", "quantity": 1, "unit_price": "2.00", "amount": "2.00"},
    ],
}


def in_parallel(count: int, work: Callable[[int], object]) -> list:
    """Run `work(0..count-1)` in `count` threads released at once; each result, or the exception
    it raised. Every thread closes its own database connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,), name=f"offers-{index}") for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return results


def history(issued_id) -> list[tuple[str, str, str, str]]:
    return list(
        IssuedOfferTransition.objects.filter(issued_offer_id=issued_id)
        .order_by("id")
        .values_list("action", "from_status", "to_status", "transaction_id")
    )


def url(issued, action: str) -> str:
    return f"/api/v1/issued-offers/{issued.pk}/{action}"


# --- one offer, many callers ------------------------------------------------------------------


def test_fifty_parallel_redeems_of_one_offer_give_one_success_and_49_clean_conflicts(make_client):
    issued = IssuedOfferFactory()
    clients = [make_client(name=f"pos {index}") for index in range(50)]

    responses = in_parallel(
        50,
        lambda index: clients[index].post(
            url(issued, "redeem"), {"transaction_id": f"T{index}", "basket": BASKET}, format="json"
        ),
    )

    assert not [response for response in responses if isinstance(response, BaseException)], responses
    assert Counter(response.status_code for response in responses) == {200: 1, 409: 49}
    for response in responses:
        if response.status_code == 409:
            assert_error_body(response, 409, "OFFER_NOT_AVAILABLE", ["id", str(issued.pk), "status", "redeemed"])
    [winner] = [response.json() for response in responses if response.status_code == 200]
    issued.refresh_from_db()
    assert (issued.status, issued.redeemed_transaction_id) == (Status.REDEEMED, winner["redeemed_transaction_id"])
    assert history(issued.pk) == [("redeem", "available", "redeemed", winner["redeemed_transaction_id"])]
    offer = Offer.objects.get(pk=issued.offer_id)
    assert (offer.redeemed_count, offer.discount_given) == (1, 50)
    assert OfferContactUsage.objects.get(offer=offer).redeemed_count == 1


def test_two_transactions_locking_the_same_offer_in_parallel_give_one_winner(make_client):
    pairs = 8
    offers = [IssuedOfferFactory() for _ in range(pairs)]
    clients = [make_client(name=f"till {index}") for index in range(pairs * 2)]

    def lock(index: int):
        issued, transaction_id = offers[index // 2], f"T{index}"
        return clients[index].post(
            url(issued, "lock"), {"transaction_id": transaction_id, "basket": BASKET}, format="json"
        )

    responses = in_parallel(pairs * 2, lock)

    assert not [response for response in responses if isinstance(response, BaseException)], responses
    for pair, issued in enumerate(offers):
        first, second = responses[2 * pair], responses[2 * pair + 1]
        assert sorted([first.status_code, second.status_code]) == [200, 409]
        loser = first if first.status_code == 409 else second
        assert_error_body(loser, 409, "OFFER_LOCKED")
        winner = (first if first.status_code == 200 else second).json()
        issued.refresh_from_db()
        assert (issued.status, issued.locked_transaction_id) == (Status.LOCKED, winner["locked_transaction_id"])
        assert history(issued.pk) == [("lock", "available", "locked", winner["locked_transaction_id"])]


def test_lock_redeem_unlock_reinstate_interleavings_never_redeem_an_offer_twice_between_reinstates():
    offers = [IssuedOfferFactory(offer=OfferFactory()) for _ in range(3)]
    ids = [issued.pk for issued in offers]
    threads, steps = 8, 40
    succeeded: Counter = Counter()
    succeeded_lock = threading.Lock()

    def work(worker: int) -> None:
        rng = random.Random(worker)
        transaction_id = f"T{worker}"
        for _ in range(steps):
            issued_id = rng.choice(ids)
            action = rng.choice(["lock", "lock", "redeem", "redeem", "redeem_anonymously", "unlock", "reinstate"])
            try:
                if action == "lock":
                    services.issued_offer_lock(issued_offer_id=issued_id, transaction_id=transaction_id, context=None)
                elif action == "redeem":
                    services.issued_offer_redeem(issued_offer_id=issued_id, transaction_id=transaction_id)
                elif action == "redeem_anonymously":
                    services.issued_offer_redeem(issued_offer_id=issued_id)
                elif action == "unlock":
                    services.issued_offer_unlock(issued_offer_id=issued_id, transaction_id=transaction_id)
                else:
                    services.issued_offer_reinstate(issued_offer_id=issued_id)
            except DomainError as error:
                assert error.code in ("OFFER_LOCKED", "OFFER_NOT_AVAILABLE"), error
                continue
            with succeeded_lock:
                succeeded[action.replace("_anonymously", "")] += 1

    results = in_parallel(threads, work)

    assert not [result for result in results if isinstance(result, BaseException)], results
    total_redeems = total_reinstates = 0
    for issued_id in ids:
        rows = history(issued_id)
        status = Status.AVAILABLE
        holder = ""
        outstanding = 0
        for action, from_status, to_status, transaction_id in rows:
            # The history is one unbroken chain of states.
            assert from_status == status, rows
            if action == "lock":
                # A live lock (900 s: none lapses here) is only ever renewed by its holder.
                assert from_status == Status.AVAILABLE or transaction_id == holder, rows
                holder = transaction_id
            elif action == "redeem":
                # Redeeming a locked offer goes through the transaction holding it.
                assert from_status == Status.AVAILABLE or transaction_id == holder, rows
                outstanding += 1
                assert outstanding == 1, f"redeemed twice without a reinstate: {rows}"
            elif action == "reinstate":
                outstanding -= 1
                assert outstanding == 0, rows
            if to_status != Status.LOCKED:
                holder = ""
            status = to_status
        assert IssuedOffer.objects.get(pk=issued_id).status == status
        total_redeems += sum(1 for row in rows if row[0] == "redeem")
        total_reinstates += sum(1 for row in rows if row[0] == "reinstate")
    actions = Counter(IssuedOfferTransition.objects.filter(issued_offer_id__in=ids).values_list("action", flat=True))
    # Every call that succeeded wrote exactly one history row (an unlock of a free offer writes none).
    assert (actions["lock"], actions["redeem"], actions["reinstate"]) == (
        succeeded["lock"],
        succeeded["redeem"],
        succeeded["reinstate"],
    )
    assert actions["unlock"] <= succeeded["unlock"]
    assert total_redeems > 0 and total_reinstates > 0, "the run exercised too little"
    redeemed_now = IssuedOffer.objects.filter(pk__in=ids, status=Status.REDEEMED).count()
    assert total_redeems - total_reinstates == redeemed_now
    assert sum(Offer.objects.filter(issued__pk__in=ids).values_list("redeemed_count", flat=True)) == redeemed_now
    assert sum(OfferContactUsage.objects.values_list("redeemed_count", flat=True)) == redeemed_now


# --- a lock's time running out ----------------------------------------------------------------


def test_after_the_ttl_a_new_lock_and_the_old_holders_redeem_race_and_only_one_wins(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    rounds = 6
    offers = [IssuedOfferFactory() for _ in range(rounds)]
    for issued in offers:
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=None, ttl_seconds=60)
    time_machine.shift(timedelta(seconds=61))

    def work(index: int):
        issued = offers[index // 2]
        if index % 2 == 0:
            return services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T2", context=None)
        return services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1")

    results = in_parallel(rounds * 2, work)

    for round_number, issued in enumerate(offers):
        lock_result, redeem_result = results[2 * round_number], results[2 * round_number + 1]
        issued.refresh_from_db()
        if isinstance(redeem_result, BaseException):
            # T2 locked first: T1's lock had lapsed and its redeem is refused.
            assert getattr(redeem_result, "code", None) == "OFFER_LOCKED", redeem_result
            assert not isinstance(lock_result, BaseException), lock_result
            assert (issued.status, issued.locked_transaction_id) == (Status.LOCKED, "T2")
        else:
            # T1 redeemed first (a lapsed lock counts as no lock): T2 finds it redeemed.
            assert getattr(lock_result, "code", None) == "OFFER_NOT_AVAILABLE", lock_result
            assert issued.status == Status.REDEEMED
        assert [row[0] for row in history(issued.pk)] in (["lock", "lock"], ["lock", "redeem"])


def test_lock_release_sweep_racing_a_fresh_lock_never_frees_the_fresh_lock(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    offers = [IssuedOfferFactory() for _ in range(20)]
    for issued in offers:
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=None, ttl_seconds=60)
    time_machine.shift(timedelta(seconds=61))
    workers = 5

    def work(index: int):
        if index == 0:
            return services.issued_offer_locks_release(batch_size=3)
        for issued in offers[index - 1 :: workers - 1]:
            services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id=f"T2-{index}", context=None)
        return None

    results = in_parallel(workers, work)

    assert not [result for result in results if isinstance(result, BaseException)], results
    for issued in offers:
        issued.refresh_from_db()
        assert issued.status == Status.LOCKED and issued.locked_transaction_id.startswith("T2-"), history(issued.pk)
        assert issued.locked_until > timezone.now()
        rows = history(issued.pk)
        assert [row[0] for row in rows] in (["lock", "lock"], ["lock", "release", "lock"]), rows
    assert results[0] == IssuedOfferTransition.objects.filter(action="release").count()


# --- budgets and per-contact limits -----------------------------------------------------------


def test_total_budget_count_holds_under_parallel_redemption(make_client):
    offer = OfferFactory(budget_count=3)
    offers = [IssuedOfferFactory(offer=offer) for _ in range(10)]
    clients = [make_client(name=f"pos {index}") for index in range(10)]

    responses = in_parallel(
        10,
        lambda index: clients[index].post(url(offers[index], "redeem"), {"transaction_id": f"T{index}"}, format="json"),
    )

    assert not [response for response in responses if isinstance(response, BaseException)], responses
    assert Counter(response.status_code for response in responses) == {200: 3, 409: 7}
    for response in responses:
        if response.status_code == 409:
            assert_error_body(
                response, 409, "LIMIT_EXCEEDED", ["offer_id", str(offer.pk), "reason", "budget_exhausted"]
            )
    offer.refresh_from_db()
    assert offer.redeemed_count == 3
    assert IssuedOffer.objects.filter(offer=offer, status=Status.REDEEMED).count() == 3
    assert IssuedOfferTransition.objects.filter(issued_offer__offer=offer, action="redeem").count() == 3


def test_total_budget_amount_holds_under_parallel_redemption():
    offer = OfferFactory(budget_amount=160)
    offers = [IssuedOfferFactory(offer=offer) for _ in range(10)]
    context = BasketContext(
        lines=[BasketLine("MILK", 300), BasketLine("BREAD", 200)], currency="EUR", at=timezone.now()
    )

    results = in_parallel(
        10, lambda index: services.issued_offer_redeem(issued_offer_id=offers[index].pk, context=context)
    )

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 7 and all(getattr(error, "code", None) == "LIMIT_EXCEEDED" for error in failures), failures
    offer.refresh_from_db()
    assert (offer.redeemed_count, offer.discount_given) == (3, 150)


def test_per_contact_limit_holds_under_parallel_redemption_of_one_contacts_offers():
    offer = OfferFactory(redemptions_per_contact=1)
    contact = ContactFactory()
    offers = [IssuedOfferFactory(offer=offer, contact=contact) for _ in range(5)]

    results = in_parallel(
        5, lambda index: services.issued_offer_redeem(issued_offer_id=offers[index].pk, transaction_id=f"T{index}")
    )

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 4, results
    assert all(getattr(error, "code", None) == "LIMIT_EXCEEDED" for error in failures), failures
    assert IssuedOffer.objects.filter(contact=contact, status=Status.REDEEMED).count() == 1
    assert OfferContactUsage.objects.get(offer=offer, contact=contact).redeemed_count == 1
    offer.refresh_from_db()
    assert offer.redeemed_count == 1


# --- issuing and external reports -------------------------------------------------------------


def test_parallel_issues_with_one_external_reference_give_one_issued_offer():
    offer = OfferFactory()
    contacts = [ContactFactory() for _ in range(6)]

    results = in_parallel(
        6,
        lambda index: services.issued_offer_issue(offer=offer, contact=contacts[index], external_reference="EXT-1"),
    )

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 5 and all(getattr(error, "code", None) == "CONFLICT" for error in failures), failures
    assert IssuedOffer.objects.filter(external_reference="EXT-1").count() == 1
    offer.refresh_from_db()
    assert offer.issued_count == 1


def test_parallel_repeats_of_one_external_redemption_report_are_all_answered_as_the_same_redemption():
    issued = IssuedOfferFactory(offer__is_external=True, external_reference="VENDOR-1")

    results = in_parallel(
        10,
        lambda index: services.external_redemption_record(
            livemode=False, external_reference="VENDOR-1", transaction_id="EXT-T1"
        ),
    )

    assert not [result for result in results if isinstance(result, BaseException)], results
    assert sorted(created for _, created in results) == [False] * 9 + [True]
    assert history(issued.pk) == [("redeem", "available", "redeemed", "EXT-T1")]
    assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 1
