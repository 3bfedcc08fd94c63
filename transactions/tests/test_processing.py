"""Processing (service level): economy rules and the tier in force at `occurred_at`, point-type
offer benefits, the ledger posting with its idempotency key, the tier update, the outbox event,
anonymous and unmatched purchases, failures, the sweeper."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from django.utils import timezone

from catalogue.models import Product
from catalogue.tests.factories import BrandFactory, ProductFactory, ProductFamilyFactory
from core.cache import redis_key
from core.models import OutboxEvent
from loyalty.models import ContactTier, EarningRuleExclusion, LedgerEntry, Lot, Tier, TierHistory
from loyalty.services.contacts import contact_create, contact_update
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer
from transactions import tasks
from transactions.models import Transaction
from transactions.services import intake, processing
from transactions.services.intake import transaction_intake
from transactions.services.processing import (
    queued_sweep,
    transaction_process,
    transaction_requeue,
    unmatched_attach,
)
from transactions.tests.factories import base_rule, locked_offer, purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    return ContactFactory(livemode=False)


@pytest.fixture
def rule():
    return base_rule()


@pytest.fixture
def gold():
    return Tier.objects.create(livemode=False, name="Gold", rank=5, threshold=10**9, multiplier=Decimal("2.00"))


def processed(sent, *, livemode=False) -> Transaction:
    txn, _, _ = transaction_intake(livemode=livemode, purchase=sent)
    return transaction_process(transaction_id=txn.pk)


def in_tier(contact, tier, *, since, until=None) -> None:
    """Tier history: the contact entered `tier` at `since` (and left it at `until`)."""
    TierHistory.objects.create(
        livemode=False, contact=contact, to_tier=tier, qualifying_value=0, reason="upgrade", created_at=since
    )
    if until is not None:
        TierHistory.objects.create(
            livemode=False, contact=contact, from_tier=tier, qualifying_value=0, reason="downgrade", created_at=until
        )


def earned(contact) -> int:
    return sum(LedgerEntry.objects.filter(contact=contact, kind="earn").values_list("amount", flat=True))


# --- base earning -----------------------------------------------------------------------------


def test_base_points_are_earned_on_the_net_of_discount_amount(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 1000), ("B", 2000)], discounts=[(600, None)]))

    assert (txn.status, txn.points_earned) == ("processed", 24)
    assert txn.processed_at is not None and txn.attempts == 1
    assert list(txn.items.values_list("sku", "points_earned")) == [("A", 8), ("B", 16)]
    entry = LedgerEntry.objects.get(contact=contact)
    assert (entry.kind, entry.amount, entry.idempotency_key) == ("earn", 24, f"txn:{txn.pk}:earn")
    assert (entry.source_type, entry.source_id, entry.occurred_at) == ("transaction", "T-1", txn.occurred_at)
    assert entry.qualifying_spend == 2400
    assert list(txn.events.values_list("kind", flat=True)) == ["received", "processed"]


def test_processing_again_posts_nothing_twice(contact, rule):
    txn = processed(purchase(contact=contact))

    again = transaction_process(transaction_id=txn.pk)
    txn.refresh_from_db()

    assert again.status == "processed" and txn.attempts == 1
    assert LedgerEntry.objects.filter(contact=contact).count() == 1
    assert OutboxEvent.objects.filter(event_type="transaction.processed").count() == 1


def test_processing_emits_transaction_processed_in_the_same_transaction(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 1234)]))

    event = OutboxEvent.objects.get(event_type="transaction.processed")
    assert event.livemode is False
    assert event.payload == {
        "id": "T-1",
        "transaction_id": str(txn.pk),
        "contact_id": str(contact.pk),
        "points_earned": 12,
        "occurred_at": txn.occurred_at.isoformat(),
    }


def test_earned_points_expire_counting_from_when_the_purchase_occurred(contact, rule):
    occurred_at = timezone.now() - timedelta(days=3)

    processed(purchase(contact=contact, occurred_at=occurred_at))

    lot = Lot.objects.get(account__contact=contact)
    assert lot.expires_at == occurred_at + relativedelta(months=12)


def test_a_purchase_in_another_currency_earns_only_under_that_currencys_rules(contact, rule):
    base_rule(currency="SEK", points_per_unit="0.1", name="Krona")

    txn = processed(purchase(contact=contact, currency="SEK", lines=[("A", 10000)]))

    assert txn.points_earned == 10
    assert LedgerEntry.objects.get(contact=contact).qualifying_spend == 0  # tiers count EUR


# --- tiers ------------------------------------------------------------------------------------


def test_the_tier_multiplier_in_force_at_the_purchase_multiplies_the_base_points(contact, rule, gold):
    in_tier(contact, gold, since=timezone.now() - timedelta(days=30))

    txn = processed(purchase(contact=contact, lines=[("A", 1000)]))

    assert txn.points_earned == 20


def test_a_rule_without_the_tier_multiplier_is_not_multiplied(contact, gold):
    base_rule(apply_tier_multiplier=False)
    in_tier(contact, gold, since=timezone.now() - timedelta(days=30))

    assert processed(purchase(contact=contact, lines=[("A", 1000)])).points_earned == 10


def test_a_tier_reached_after_a_late_purchase_does_not_multiply_it(contact, rule, gold):
    in_tier(contact, gold, since=timezone.now() - timedelta(days=1))

    txn = processed(purchase(contact=contact, lines=[("A", 1000)], occurred_at=timezone.now() - timedelta(days=2)))

    assert txn.points_earned == 10


def test_a_tier_lost_after_a_late_purchase_still_multiplies_it(contact, rule, gold):
    now = timezone.now()
    in_tier(contact, gold, since=now - timedelta(days=30), until=now - timedelta(days=1))

    txn = processed(purchase(contact=contact, lines=[("A", 1000)], occurred_at=now - timedelta(days=2)))

    assert txn.points_earned == 20


def test_a_tier_only_rule_rewards_contacts_of_that_tier_only(contact, rule, gold):
    base_rule(tier=gold, points_per_unit="5", name="Gold bonus", apply_tier_multiplier=False)
    other = ContactFactory()
    in_tier(contact, gold, since=timezone.now() - timedelta(days=30))

    assert processed(purchase("T-1", contact=contact, lines=[("A", 1000)])).points_earned == 20 + 50
    assert processed(purchase("T-2", contact=other, lines=[("A", 1000)])).points_earned == 10


def test_processing_moves_the_contact_up_a_tier(contact, rule):
    silver = Tier.objects.create(livemode=False, name="Silver", rank=1, threshold=50)

    processed(purchase(contact=contact, lines=[("A", 6000)]))

    assert ContactTier.objects.get(contact=contact).tier == silver
    assert OutboxEvent.objects.filter(event_type="tier.changed").count() == 1


# --- rules in force at occurred_at -----------------------------------------------------------


def test_a_late_purchase_earns_under_the_rules_in_force_when_it_occurred(contact):
    now = timezone.now()
    base_rule(name="Old", points_per_unit="1", valid_until=now - timedelta(days=1))
    base_rule(name="New", points_per_unit="3", valid_from=now - timedelta(days=1))

    late = processed(purchase("LATE", contact=contact, lines=[("A", 1000)], occurred_at=now - timedelta(days=2)))
    current = processed(purchase("NOW", contact=contact, lines=[("A", 1000)], occurred_at=now))

    assert (late.points_earned, current.points_earned) == (10, 30)


def test_a_purchase_before_any_rule_was_in_force_earns_nothing(contact):
    base_rule(valid_from=timezone.now() - timedelta(hours=1))

    txn = processed(purchase(contact=contact, occurred_at=timezone.now() - timedelta(hours=5)))

    assert (txn.status, txn.points_earned) == ("processed", 0)
    assert not LedgerEntry.objects.filter(contact=contact).exists()
    assert OutboxEvent.objects.filter(event_type="transaction.processed").count() == 1


# --- catalogue and exclusions -----------------------------------------------------------------


def test_lines_no_rule_rewards_earn_nothing_and_keep_no_points(contact):
    rule = base_rule()
    EarningRuleExclusion.objects.create(rule=rule, kind="family", value="tobacco")

    txn = processed(purchase(contact=contact, lines=[("MILK", 1000), ("CIG", 5000, 1, "tobacco")]))

    assert txn.points_earned == 10
    # What each line earned is what a return of it gives back.
    assert list(txn.items.values_list("sku", "points_earned")) == [("MILK", 10), ("CIG", 0)]


def test_rule_exclusions_apply_to_the_catalogue_family_the_till_did_not_send(contact):
    rule = base_rule()
    EarningRuleExclusion.objects.create(rule=rule, kind="family", value="tobacco")
    ProductFactory(sku="CIG", family=ProductFamilyFactory(code="tobacco"))

    txn = processed(purchase(contact=contact, lines=[("MILK", 1000), ("CIG", 5000)]))

    assert txn.points_earned == 10


def test_unknown_skus_of_a_purchase_join_the_catalogue_with_their_family_and_brand(contact, rule):
    processed(purchase(contact=contact, lines=[("NEW-1", 100, 1, "dairy", "arla"), ("NEW-2", 100)]))

    new = Product.objects.get(livemode=False, sku="NEW-1")
    assert (new.family.code, new.brand.code) == ("dairy", "arla")
    assert Product.objects.get(livemode=False, sku="NEW-2").family is None


def test_unknown_skus_of_an_anonymous_purchase_join_the_catalogue_too():
    txn = processed(purchase(lines=[("NEW-1", 100)]))

    assert txn.status == "anonymous"
    assert Product.objects.filter(livemode=False, sku="NEW-1").exists()


def test_a_purchase_does_not_change_products_the_catalogue_knows(contact, rule):
    product = ProductFactory(sku="KNOWN", name="Known", family=ProductFamilyFactory(code="bread"), brand=BrandFactory())

    processed(purchase(contact=contact, lines=[("KNOWN", 100, 1, "other-family")]))

    product.refresh_from_db()
    assert (product.name, product.family.code) == ("Known", "bread")
    assert Product.objects.filter(sku="KNOWN").count() == 1


def test_skus_are_created_in_the_mode_of_the_purchase(rule):
    live_contact = ContactFactory(livemode=True)

    processed(purchase(contact=live_contact, lines=[("LIVE-SKU", 100)]), livemode=True)

    assert list(Product.objects.filter(sku="LIVE-SKU").values_list("livemode", flat=True)) == [True]


# --- point-type offers ------------------------------------------------------------------------


def test_a_bonus_points_offer_redeemed_by_the_purchase_adds_its_points(contact, rule):
    issued, _ = locked_offer(
        contact=contact, transaction_id="T-1", lines=[("A", 1000)], benefit_type="bonus_points", benefit_value=50
    )

    txn = processed(purchase(contact=contact, lines=[("A", 1000)], discounts=[(0, str(issued.pk))]))

    assert txn.points_earned == 60
    assert LedgerEntry.objects.get(contact=contact).amount == 60
    issued.refresh_from_db()
    assert issued.status == IssuedOffer.Status.REDEEMED


def test_a_points_multiplier_offer_multiplies_only_its_qualifying_lines(contact, rule):
    issued, _ = locked_offer(
        contact=contact,
        transaction_id="T-1",
        lines=[("A", 1000), ("B", 2000)],
        benefit_type="points_multiplier",
        benefit_value=3,
        restrictions=[("include", "sku", "A")],
    )

    txn = processed(purchase(contact=contact, lines=[("A", 1000), ("B", 2000)], discounts=[(0, str(issued.pk))]))

    assert txn.points_earned == 30 + 20
    assert list(txn.items.values_list("sku", "points_earned")) == [("A", 30), ("B", 20)]


def test_a_points_multiplier_offer_on_a_family_applies_to_catalogued_lines(contact, rule):
    ProductFactory(sku="MILK", family=ProductFamilyFactory(code="dairy"))
    issued, _ = locked_offer(
        contact=contact,
        transaction_id="T-1",
        lines=[("MILK", 1000, "dairy"), ("BREAD", 1000)],
        benefit_type="points_multiplier",
        benefit_value=2,
        restrictions=[("include", "family", "dairy")],
    )

    txn = processed(purchase(contact=contact, lines=[("MILK", 1000), ("BREAD", 1000)], discounts=[(0, str(issued.pk))]))

    assert txn.points_earned == 20 + 10


def test_a_money_offer_redeemed_by_the_purchase_only_lowers_what_earns(contact, rule):
    issued, evaluation = locked_offer(contact=contact, transaction_id="T-1", lines=[("A", 1000)])  # 10 % off

    txn = processed(purchase(contact=contact, lines=[("A", 1000)], discounts=[(evaluation.discount, str(issued.pk))]))

    assert txn.points_earned == 9


def test_hooks_hear_of_each_processed_purchase(contact, rule, monkeypatch):
    heard = []
    monkeypatch.setattr(processing, "PURCHASE_PROCESSED_HOOKS", [heard.append])

    txn = processed(purchase(contact=contact, lines=[("A", 1000)]))
    transaction_process(transaction_id=txn.pk)

    assert len(heard) == 1
    assert (heard[0].transaction.pk, heard[0].contact, heard[0].base_points) == (txn.pk, contact, 10)


# --- anonymous and unmatched ------------------------------------------------------------------


def test_a_purchase_without_contact_is_anonymous_and_earns_nothing(rule):
    txn = processed(purchase())

    assert (txn.status, txn.points_earned) == ("anonymous", 0)
    assert not LedgerEntry.objects.exists()
    assert not OutboxEvent.objects.filter(event_type="transaction.processed").exists()
    assert txn.events.last().kind == "anonymous"


def test_a_secondary_key_matching_nobody_leaves_the_purchase_unmatched(rule):
    txn = processed(purchase(contact={"match_key": "+46701112233", "match_key_type": "mobile_phone"}))

    assert txn.status == "unmatched" and txn.contact_id is None
    assert not LedgerEntry.objects.exists()


def test_an_unmatched_purchase_is_processed_when_a_contact_registers_with_that_phone(
    rule, django_capture_on_commit_callbacks
):
    txn = processed(purchase(contact={"match_key": "070 111 22 33", "match_key_type": "mobile_phone"}))

    with django_capture_on_commit_callbacks(execute=True):
        contact = contact_create(livemode=False, mobile_phone="+46701112233")

    txn.refresh_from_db()
    assert (txn.status, txn.contact_id, txn.points_earned) == ("processed", contact.pk, 10)
    assert [kind for kind in txn.events.values_list("kind", flat=True)] == [
        "received",
        "unmatched",
        "attached",
        "processed",
    ]


def test_an_unmatched_purchase_is_processed_when_a_contact_gets_that_email(
    contact, rule, django_capture_on_commit_callbacks
):
    txn = processed(purchase(contact={"match_key": "Late@Example.com", "match_key_type": "email"}))

    with django_capture_on_commit_callbacks(execute=True):
        contact_update(contact=contact, email="LATE@example.COM")

    txn.refresh_from_db()
    assert (txn.status, txn.contact_id) == ("processed", contact.pk)


def test_an_unmatched_purchase_is_processed_when_a_contact_gets_that_external_id(
    contact, rule, django_capture_on_commit_callbacks
):
    reference = {"match_key": "CARD-9", "match_key_type": "external_id", "source": "shopify"}
    txn = processed(purchase(contact=reference))

    with django_capture_on_commit_callbacks(execute=True):
        contact_update(contact=contact, external_ids=[{"source": "shopify", "id": "CARD-9"}])

    txn.refresh_from_db()
    assert (txn.status, txn.contact_id) == ("processed", contact.pk)


@pytest.mark.parametrize("other_source", ["", "pos"])
def test_an_external_id_of_another_source_does_not_collect_the_purchase(
    contact, rule, django_capture_on_commit_callbacks, other_source
):
    reference = {"match_key": "CARD-9", "match_key_type": "external_id", "source": "shopify"}
    txn = processed(purchase(contact=reference))

    with django_capture_on_commit_callbacks(execute=True):
        contact_update(contact=contact, external_ids=[{"source": other_source, "id": "CARD-9"}])

    txn.refresh_from_db()
    assert (txn.status, txn.contact_id) == ("unmatched", None)


def test_a_purchase_keyed_without_source_is_collected_by_that_external_id_of_any_source(
    contact, rule, django_capture_on_commit_callbacks
):
    txn = processed(purchase(contact={"match_key": "CARD-9", "match_key_type": "external_id"}))

    with django_capture_on_commit_callbacks(execute=True):
        contact_update(contact=contact, external_ids=[{"source": "pos", "id": "CARD-9"}])

    txn.refresh_from_db()
    assert txn.status == "processed"


def test_an_attached_purchase_is_processed_exactly_once(rule, django_capture_on_commit_callbacks):
    txn = processed(purchase(contact={"match_key": "+46701112233", "match_key_type": "mobile_phone"}))
    with django_capture_on_commit_callbacks(execute=True):
        contact = contact_create(livemode=False, mobile_phone="+46701112233")

    with django_capture_on_commit_callbacks(execute=True):
        attached_again = unmatched_attach(contact_id=contact.pk)
        contact_update(contact=contact, first_name="Again")

    assert attached_again == 0
    assert LedgerEntry.objects.filter(source_id=txn.external_id).count() == 1
    assert OutboxEvent.objects.filter(event_type="transaction.processed").count() == 1


def test_a_blocked_contact_collects_no_purchases(rule):
    processed(purchase(contact={"match_key": "+46701112233", "match_key_type": "mobile_phone"}))
    blocked = ContactFactory(mobile_phone="+46701112233", status="blocked")

    assert unmatched_attach(contact_id=blocked.pk) == 0
    assert Transaction.objects.get().status == "unmatched"


def test_purchases_of_the_other_mode_are_not_collected(rule, django_capture_on_commit_callbacks):
    processed(purchase(contact={"match_key": "+46701112233", "match_key_type": "mobile_phone"}), livemode=True)

    with django_capture_on_commit_callbacks(execute=True):
        contact_create(livemode=False, mobile_phone="+46701112233")

    assert Transaction.objects.get().status == "unmatched"


def test_a_late_unmatched_purchase_earns_under_the_rules_of_when_it_occurred(django_capture_on_commit_callbacks):
    now = timezone.now()
    base_rule(name="Old", points_per_unit="1", valid_until=now - timedelta(days=1))
    base_rule(name="New", points_per_unit="3", valid_from=now - timedelta(days=1))
    txn = processed(
        purchase(
            contact={"match_key": "+46701112233", "match_key_type": "mobile_phone"},
            occurred_at=now - timedelta(days=5),
        )
    )

    with django_capture_on_commit_callbacks(execute=True):
        contact_create(livemode=False, mobile_phone="+46701112233")

    txn.refresh_from_db()
    assert (txn.status, txn.points_earned) == ("processed", 10)


# --- failures and the sweeper -----------------------------------------------------------------


def test_a_purchase_that_cannot_be_processed_is_marked_failed_then_requeued(
    contact, rule, monkeypatch, django_capture_on_commit_callbacks
):
    txn, _, _ = transaction_intake(livemode=False, purchase=purchase(contact=contact))

    def broken(**kwargs):
        raise ValueError("rule table unreadable")

    with monkeypatch.context() as patch:
        patch.setattr(processing, "basket_points", broken)
        tasks.process_transaction(str(txn.pk))

    txn.refresh_from_db()
    assert txn.status == "failed" and "ValueError: rule table unreadable" in txn.failure_reason
    assert not LedgerEntry.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert transaction_requeue(transaction_id=txn.pk) is True

    txn.refresh_from_db()
    assert (txn.status, txn.failure_reason, txn.points_earned) == ("processed", "", 10)
    assert [kind for kind in txn.events.values_list("kind", flat=True)] == [
        "received",
        "failed",
        "requeued",
        "processed",
    ]


def test_a_processed_purchase_cannot_be_requeued(contact, rule):
    txn = processed(purchase(contact=contact))

    assert transaction_requeue(transaction_id=txn.pk) is False
    assert Transaction.objects.get().status == "processed"


def test_a_purchase_whose_enqueue_was_lost_is_picked_up_by_the_sweeper(
    contact, rule, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    with monkeypatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        patch.setattr(tasks.process_transaction, "delay", broker_down)
        txn, response, _ = transaction_intake(livemode=False, purchase=purchase(contact=contact))

    assert response["status"] == "queued"
    assert Transaction.objects.get().status == "queued"
    assert queued_sweep() == 0  # too recent: its enqueue may still be on its way

    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert queued_sweep() == 1

    txn.refresh_from_db()
    assert (txn.status, txn.points_earned) == ("processed", 10)


# --- draining the queue -------------------------------------------------------------------------


def test_a_drain_processes_every_queued_purchase_oldest_first(contact, rule):
    sent = [transaction_intake(livemode=False, purchase=purchase(f"D-{n}", contact=contact))[0] for n in range(3)]

    result = processing.queued_drain()

    assert (result.processed, result.failed, result.more) == (3, 0, False)
    ordered = Transaction.objects.order_by("processed_at").values_list("pk", flat=True)
    assert list(ordered) == [txn.pk for txn in sent]
    assert earned(contact) == 30
    assert processing.queued_drain().processed == 0  # nothing twice


def test_a_drain_marks_a_purchase_that_fails_and_goes_on_with_the_next(contact, rule, monkeypatch):
    bad, _, _ = transaction_intake(livemode=False, purchase=purchase("D-bad", contact=contact))
    good, _, _ = transaction_intake(livemode=False, purchase=purchase("D-good", contact=contact))
    real = processing.basket_points

    def broken_for_the_first(**kwargs):
        if kwargs["lines"] and Transaction.objects.filter(pk=bad.pk, status="queued").exists():
            processing.basket_points = real  # only once
            raise TypeError("unexpected")
        return real(**kwargs)

    monkeypatch.setattr(processing, "basket_points", broken_for_the_first)
    result = processing.queued_drain()

    assert (result.processed, result.failed) == (1, 1)
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.status, bad.failure_reason) == ("failed", "TypeError: unexpected")
    assert (good.status, good.points_earned) == ("processed", 10)
    assert not LedgerEntry.objects.filter(source_id=bad.external_id).exists()


def test_a_drain_stops_at_its_budget_and_says_more_is_queued(contact, rule):
    for n in range(3):
        transaction_intake(livemode=False, purchase=purchase(f"D-{n}", contact=contact))

    result = processing.queued_drain(max_count=2)

    assert (result.processed, result.more) == (2, True)
    assert Transaction.objects.filter(status="queued").count() == 1


def test_the_drain_task_clears_its_flag_and_hands_over_when_its_budget_is_spent(contact, rule, monkeypatch, settings):
    from django.core.cache import cache

    for n in range(2):
        transaction_intake(livemode=False, purchase=purchase(f"D-{n}", contact=contact))
    cache.set("drain-flag-under-test", 1)
    handed_over = []
    monkeypatch.setattr(tasks.process_queued, "apply_async", lambda **kwargs: handed_over.append(kwargs))
    settings.TRANSACTION_DRAIN_SECONDS = 0  # the budget is spent after the first check

    assert tasks.process_queued(flag="drain-flag-under-test") == 0
    assert cache.get("drain-flag-under-test") is None
    assert handed_over == [{"queue": None}]
    settings.TRANSACTION_DRAIN_SECONDS = 10
    assert tasks.process_queued() == 2 and handed_over == [{"queue": None}]


def test_the_drain_reads_a_queued_purchase_as_the_orm_would(contact, rule, gold):
    contact.attributes = {"segment": "vip"}
    contact.save()
    in_tier(contact, gold, since=timezone.now() - timedelta(days=400))
    sent, _, _ = transaction_intake(livemode=False, purchase=purchase("D-row", contact=contact))

    taken = processing._next_queued()

    expected = Transaction.objects.select_related("contact").get(pk=sent.pk)
    for field in Transaction._meta.concrete_fields:
        assert getattr(taken, field.attname) == getattr(expected, field.attname), field.name
    for field in type(contact)._meta.concrete_fields:
        assert getattr(taken.contact, field.attname) == getattr(expected.contact, field.attname), field.name
    assert isinstance(taken.response, dict) and taken.contact.attributes == {"segment": "vip"}
    assert taken.tier_id_then == gold.pk


@pytest.mark.django_db(transaction=True)
def test_a_drain_that_finds_only_purchases_held_elsewhere_says_so_and_the_task_looks_again(rule, monkeypatch):
    import threading

    from django.db import connection, transaction

    monkeypatch.setattr("transactions.services.intake.transaction_enqueue", lambda transaction_id: None)
    contact = ContactFactory(livemode=False)
    sent, _, _ = transaction_intake(livemode=False, purchase=purchase("D-held", contact=contact))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another session holds the purchase's row, as a worker mid-purchase does
        try:
            with transaction.atomic():
                list(Transaction.objects.select_for_update().filter(pk=sent.pk))
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    scheduled = []
    monkeypatch.setattr(tasks.process_queued, "apply_async", lambda **kwargs: scheduled.append(kwargs))
    try:
        result = processing.queued_drain()
        assert (result.processed, result.held_elsewhere) == (0, True)
        assert tasks.process_queued() == 0
        assert scheduled == [{"countdown": tasks.DRAIN_RETRY_SECONDS, "queue": None, "kwargs": {}}]
        # Workers sharing Redis: the look-again carries its claim; none is sent while one waits.
        monkeypatch.setattr(intake, "drain_retry_claim", lambda queue, seconds: "claim-key")
        tasks.process_queued()
        assert scheduled[-1] == {
            "countdown": tasks.DRAIN_RETRY_SECONDS,
            "queue": None,
            "kwargs": {"retry_claim": "claim-key"},
        }
        monkeypatch.setattr(intake, "drain_retry_claim", lambda queue, seconds: False)
        tasks.process_queued()
        assert len(scheduled) == 2
    finally:
        release.set()
        holder.join(10)
    assert processing.queued_drain().processed == 1  # free again


@pytest.mark.django_db
def test_one_look_again_task_waits_at_a_time_per_queue(monkeypatch):
    """With Redis shared by web and workers, the first drain to find only purchases held by
    other sessions claims the look-again; later ones send nothing until the look-again task
    starts and clears the claim."""
    from celery import current_app

    from core.cache import redis_client

    assert redis_client() is not None, "the test settings use Redis as the cache"
    monkeypatch.setitem(current_app.conf, "task_always_eager", False)
    queue = f"look-again-{uuid.uuid4().hex}"
    claim = intake.drain_retry_claim(queue, 2)
    assert isinstance(claim, str)
    assert intake.drain_retry_claim(queue, 2) is False
    assert isinstance(intake.drain_retry_claim(f"{queue}-other", 2), str)  # per queue
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    assert tasks.process_queued(retry_claim=claim) == 0  # the look-again task starts: claim cleared
    monkeypatch.setitem(current_app.conf, "task_always_eager", False)
    assert intake.drain_retry_claim(queue, 2) == claim
    redis_client().delete(*[redis_key(k) for k in (claim, f"transactions:drain-retry:{queue}-other")])
