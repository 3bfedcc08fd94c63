"""Voids and returns (service level): compensating entries only, offers reinstated, the
program's negative-points policy when the points were spent, returns in proportion and never
beyond what was bought (also under parallel returns), the 12-month window, ad hoc returns."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from django.db import connection
from django.utils import timezone

from core.exceptions import Conflict, IdempotencyMismatch, NotFound, ValidationError
from core.models import OutboxEvent
from loyalty.models import Account, EarningRuleExclusion, LedgerEntry, Payout, PointsShortfall, Program, Tier
from loyalty.services.ledger import Cause, account_check, account_get_or_create, ledger_debit
from loyalty.services.wallets import money_credit, payout_settle, points_earn, program_for
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer, Offer
from transactions.models import Return, Transaction, TransactionItem
from transactions.services.intake import transaction_intake
from transactions.services.processing import transaction_process, unmatched_attach
from transactions.services.reversals import return_process, transaction_void
from transactions.tests.factories import base_rule, locked_offer, purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    return ContactFactory(livemode=False)


@pytest.fixture
def rule():
    return base_rule()


def set_policy(policy: str) -> None:
    program = program_for(livemode=False)
    program.negative_points_policy = policy
    program.save()


def processed(sent, *, livemode=False) -> Transaction:
    txn, _, _ = transaction_intake(livemode=livemode, purchase=sent)
    return transaction_process(transaction_id=txn.pk)


def points(contact) -> int:
    account = Account.objects.filter(contact=contact, kind=Account.Kind.POINTS).first()
    return account.balance if account else 0


def money(contact) -> int:
    account = Account.objects.filter(contact=contact, kind=Account.Kind.OPEN, currency="EUR").first()
    return account.available if account else 0


def spend_points(contact, amount: int, key: str = "spent") -> None:
    ledger_debit(
        account=account_get_or_create(contact=contact, kind=Account.Kind.POINTS),
        amount=amount,
        kind=LedgerEntry.Kind.SPEND,
        cause=Cause(LedgerEntry.Source.MANUAL, key, key),
    )


def give_back(return_id, *, original="T-1", items=(("A", 1),), occurred_at=None, **extra):
    """A return of (sku, quantity) or (sku, quantity, line) against `original`."""
    lines = [{"sku": item[0], "quantity": Decimal(item[1]), "line": (*item, None)[2]} for item in items]
    return return_process(
        livemode=False,
        external_id=return_id,
        fingerprint=f"{return_id}:{original}:{items}:{extra.get('amount')}",
        occurred_at=occurred_at or timezone.now(),
        currency="EUR",
        original_external_id=original,
        items=lines if original else None,
        **extra,
    )


def assert_books_balance(contact) -> None:
    for account in Account.objects.filter(contact=contact):
        assert account_check(account=account) == [], account


# --- void -------------------------------------------------------------------------------------


def test_a_void_reverses_the_earned_points_with_a_compensating_entry(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 3000)]))
    earn = LedgerEntry.objects.get(contact=contact, kind="earn")

    voided = transaction_void(transaction=txn, reason="till error")

    assert voided.status == "voided" and Transaction.objects.get().status == "voided"
    reverse = LedgerEntry.objects.get(contact=contact, kind="reverse")
    assert (reverse.amount, reverse.reverses_id, reverse.source_id) == (-30, earn.pk, "T-1")
    assert LedgerEntry.objects.get(pk=earn.pk).amount == 30  # never edited
    assert points(contact) == 0
    assert txn.events.last().kind == "voided"
    event = OutboxEvent.objects.get(event_type="transaction.voided")
    assert event.payload["id"] == "T-1" and event.payload["reason"] == "till error"
    assert_books_balance(contact)


def test_voiding_again_changes_nothing(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 3000)]))
    transaction_void(transaction=txn)

    again = transaction_void(transaction=txn)

    assert again.status == "voided"
    assert LedgerEntry.objects.filter(contact=contact, kind="reverse").count() == 1
    assert OutboxEvent.objects.filter(event_type="transaction.voided").count() == 1
    assert txn.events.filter(kind="voided").count() == 1


def test_a_void_gives_back_a_front_end_spend(contact, rule):
    money_credit(contact=contact, kind="open", currency="EUR", amount=5000, cause=Cause("system", "s", "seed"))
    txn = processed(purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 500, "reduction": "front_end"}))
    assert money(contact) == 4500

    transaction_void(transaction=txn)

    assert money(contact) == 5000 and points(contact) == 0
    assert_books_balance(contact)


def test_a_void_fails_the_pending_payout_and_gives_the_money_back_once(contact, rule):
    money_credit(contact=contact, kind="open", currency="EUR", amount=5000, cause=Cause("system", "s", "seed"))
    txn = processed(purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 1200, "reduction": "back_end"}))

    transaction_void(transaction=txn, reason="customer changed mind")

    payout = Payout.objects.get()
    assert payout.status == "failed" and "purchase voided" in payout.failure_reason
    assert money(contact) == 5000
    assert LedgerEntry.objects.filter(account__kind="open", kind="reverse").count() == 1
    assert_books_balance(contact)


def test_a_void_after_the_payout_was_paid_does_not_give_the_money_back_twice(contact, rule):
    money_credit(contact=contact, kind="open", currency="EUR", amount=5000, cause=Cause("system", "s", "seed"))
    txn = processed(purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 1200, "reduction": "back_end"}))
    payout_settle(payout=Payout.objects.get(), paid=True)

    transaction_void(transaction=txn)

    # The 12.00 already reached the contact's card: the wallet does not get it again.
    assert Payout.objects.get().status == "paid"
    assert money(contact) == 3800
    assert points(contact) == 0
    assert_books_balance(contact)


def test_a_void_reinstates_the_offers_the_purchase_redeemed(contact, rule):
    issued, evaluation = locked_offer(contact=contact, transaction_id="T-1")
    txn = processed(purchase(contact=contact, discounts=[(evaluation.discount, str(issued.pk))]))

    transaction_void(transaction=txn)

    issued.refresh_from_db()
    assert issued.status == IssuedOffer.Status.AVAILABLE and issued.redeemed_transaction_id == ""
    assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 0


def test_a_void_after_the_offer_ended_still_voids_the_purchase(contact, rule):
    issued, evaluation = locked_offer(
        contact=contact, transaction_id="T-1", valid_until=timezone.now() + timedelta(days=1)
    )
    txn = processed(purchase(contact=contact, discounts=[(evaluation.discount, str(issued.pk))]))

    with time_machine.travel(timezone.now() + timedelta(days=2)):
        transaction_void(transaction=txn)

    assert Transaction.objects.get().status == "voided" and points(contact) == 0
    issued.refresh_from_db()
    assert issued.status == IssuedOffer.Status.REDEEMED


def test_a_void_after_the_points_were_spent_leaves_a_debt_when_the_program_allows_it(contact, rule):
    set_policy(Program.NegativePointsPolicy.ALLOW_DEBT)
    txn = processed(purchase(contact=contact, lines=[("A", 3000)]))
    spend_points(contact, 25)

    transaction_void(transaction=txn)

    assert points(contact) == -25
    assert LedgerEntry.objects.get(kind="reverse").amount == -30
    assert not PointsShortfall.objects.exists()
    assert_books_balance(contact)


def test_a_void_after_the_points_were_spent_stops_at_zero_and_records_the_shortfall(contact, rule):
    set_policy(Program.NegativePointsPolicy.CLAMP)
    txn = processed(purchase(contact=contact, lines=[("A", 3000)]))
    spend_points(contact, 25)

    transaction_void(transaction=txn)

    assert points(contact) == 0
    assert LedgerEntry.objects.get(kind="reverse").amount == -5
    shortfall = PointsShortfall.objects.get()
    assert (shortfall.amount, shortfall.original_entry.kind, shortfall.source_id) == (25, "earn", "T-1")
    assert_books_balance(contact)


def test_a_debt_left_by_a_void_is_paid_by_the_next_earnings(contact, rule):
    set_policy(Program.NegativePointsPolicy.ALLOW_DEBT)
    txn = processed(purchase("T-1", contact=contact, lines=[("A", 3000)]))
    spend_points(contact, 25)
    transaction_void(transaction=txn)

    processed(purchase("T-2", contact=contact, lines=[("A", 4000)]))

    assert points(contact) == 15
    assert_books_balance(contact)


def test_a_purchase_voided_before_it_was_processed_never_earns(contact, rule):
    txn, _, _ = transaction_intake(livemode=False, purchase=purchase(contact=contact))

    transaction_void(transaction=txn)
    transaction_process(transaction_id=txn.pk)

    assert Transaction.objects.get().status == "voided"
    assert not LedgerEntry.objects.exists()
    assert not OutboxEvent.objects.filter(event_type="transaction.processed").exists()


def test_a_voided_unmatched_purchase_is_not_collected_by_a_new_contact(rule):
    txn = processed(purchase(contact={"match_key": "+46701112233", "match_key_type": "mobile_phone"}))
    transaction_void(transaction=txn)

    late = ContactFactory(mobile_phone="+46701112233")

    assert unmatched_attach(contact_id=late.pk) == 0
    assert Transaction.objects.get().contact_id is None


def test_a_void_after_a_partial_return_reverses_only_what_is_left(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 1000), ("B", 2000)]))
    give_back("R-1", items=[("A", 1)])
    assert points(contact) == 20

    transaction_void(transaction=txn)

    assert points(contact) == 0
    assert sum(LedgerEntry.objects.filter(kind="reverse").values_list("amount", flat=True)) == -30
    assert_books_balance(contact)


# --- returns against a purchase ---------------------------------------------------------------


def test_a_return_gives_back_the_returned_units_share_of_the_points(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 2000, 2), ("B", 1000)]))

    record, replayed = give_back("R-1", items=[("A", 1)])

    assert replayed is False and record.points_reversed == 10 and record.amount == 1000
    assert record.response["points_reversed"] == 10 and record.response["amount"] == "10.00"
    assert points(contact) == 20
    reverse = LedgerEntry.objects.get(kind="reverse")
    assert (reverse.source_type, reverse.source_id, reverse.reverses.kind) == ("return", "R-1", "earn")
    item = txn.items.get(sku="A")
    assert (item.returned_quantity, item.returned_amount) == (1, 1000)
    assert OutboxEvent.objects.filter(event_type="return.processed").count() == 1
    assert_books_balance(contact)


def test_returning_every_unit_one_by_one_gives_back_every_point_and_every_cent(contact, rule):
    processed(purchase(contact=contact, lines=[("A", 1000, 3)]))

    records = [give_back(f"R-{n}", items=[("A", 1)])[0] for n in range(3)]

    assert sum(record.points_reversed for record in records) == 10
    assert sum(record.amount for record in records) == 1000
    assert points(contact) == 0


def test_a_returned_line_gives_back_what_it_earned_net_of_order_discounts(contact, rule):
    processed(purchase(contact=contact, lines=[("A", 1000), ("B", 3000)], discounts=[(800, None)]))

    record, _ = give_back("R-1", items=[("A", 1)])

    # A cost 10.00 before the 8.00 order discount (2.00 of it on A): it earned 8 points, not 10.
    assert record.points_reversed == 8
    assert points(contact) == 24


def test_a_returned_line_no_rule_rewarded_gives_back_no_points(contact):
    rule = base_rule()
    EarningRuleExclusion.objects.create(rule=rule, kind="sku", value="GIFT-CARD")
    processed(purchase(contact=contact, lines=[("A", 1000), ("GIFT-CARD", 5000)]))

    gift_card, _ = give_back("R-1", items=[("GIFT-CARD", 1)])
    goods, _ = give_back("R-2", items=[("A", 1)])

    assert (gift_card.points_reversed, goods.points_reversed) == (0, 10)
    assert points(contact) == 0


def test_a_return_of_bonus_points_lines_gives_back_the_offer_points_of_those_lines(contact, rule):
    issued, _ = locked_offer(
        contact=contact,
        transaction_id="T-1",
        lines=[("A", 1000), ("B", 1000)],
        benefit_type="points_multiplier",
        benefit_value=3,
        restrictions=[("include", "sku", "A")],
    )
    processed(purchase(contact=contact, lines=[("A", 1000), ("B", 1000)], discounts=[(0, str(issued.pk))]))

    record, _ = give_back("R-1", items=[("B", 1)])

    assert record.points_reversed == 10
    assert points(contact) == 30


def test_more_than_was_bought_can_never_be_returned_across_returns(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 2000, 2)]))
    give_back("R-1", items=[("A", 1)])

    with pytest.raises(ValidationError) as error:
        give_back("R-2", items=[("A", 2)])

    assert error.value.parameters[0]["name"] == "items.0.quantity"
    assert not Return.objects.filter(external_id="R-2").exists()
    assert txn.items.get().returned_quantity == 1 and points(contact) == 10


def test_a_return_can_name_the_line_of_the_purchase(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 1000), ("A", 3000)]))

    record, _ = give_back("R-1", items=[("A", 1, 1)])

    assert record.points_reversed == 30
    assert list(txn.items.values_list("line_number", "returned_quantity")) == [(0, 0), (1, 1)]


def test_more_than_was_bought_of_a_named_line_cannot_be_returned(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 2000, 2)]))
    give_back("R-1", items=[("A", 1, 0)])

    with pytest.raises(ValidationError) as error:
        give_back("R-2", items=[("A", 2, 0)])

    assert error.value.parameters[0]["name"] == "items"
    assert txn.items.get().returned_quantity == 1 and Return.objects.count() == 1


def test_a_return_naming_a_line_of_another_sku_is_refused(contact, rule):
    processed(purchase(contact=contact, lines=[("A", 1000), ("B", 3000)]))

    with pytest.raises(ValidationError) as error:
        give_back("R-1", items=[("A", 1, 1)])

    assert error.value.parameters[0]["name"] == "items.0.line"
    assert not Return.objects.exists()


def test_a_return_by_sku_takes_the_purchases_lines_in_order(contact, rule):
    txn = processed(purchase(contact=contact, lines=[("A", 1000), ("A", 3000, 3)]))

    give_back("R-1", items=[("A", 2)])

    assert list(txn.items.values_list("returned_quantity", flat=True)) == [1, 1]
    assert points(contact) == 40 - 10 - 10


def test_a_return_of_a_purchase_older_than_12_months_keeps_its_points(contact, rule):
    program = program_for(livemode=False)
    program.points_expiry_months = None
    program.save()
    txn = processed(purchase(contact=contact, lines=[("A", 2000, 2)]))

    with time_machine.travel(timezone.now() + relativedelta(months=12, days=1)):
        record, _ = give_back("R-1", items=[("A", 1)])

    assert (record.points_reversed, record.amount) == (0, 1000)
    assert points(contact) == 20
    assert not LedgerEntry.objects.filter(source_type="return").exists()
    assert txn.items.get().returned_quantity == 1


def test_a_return_within_12_months_gives_back_points(contact, rule):
    processed(purchase(contact=contact, lines=[("A", 2000, 2)]))

    with time_machine.travel(timezone.now() + relativedelta(months=11)):
        record, _ = give_back("R-1", items=[("A", 1)])

    assert record.points_reversed == 10


def test_a_return_after_part_of_the_points_were_spent_records_the_shortfall(contact, rule):
    set_policy(Program.NegativePointsPolicy.CLAMP)
    processed(purchase(contact=contact, lines=[("A", 3000, 3)]))
    spend_points(contact, 25)

    record, _ = give_back("R-1", items=[("A", 2)])

    assert record.points_reversed == 20
    assert points(contact) == 0
    assert PointsShortfall.objects.get().amount == 15
    assert_books_balance(contact)


def test_a_return_after_part_of_the_points_were_spent_leaves_a_debt_when_allowed(contact, rule):
    set_policy(Program.NegativePointsPolicy.ALLOW_DEBT)
    processed(purchase(contact=contact, lines=[("A", 3000, 3)]))
    spend_points(contact, 25)

    give_back("R-1", items=[("A", 2)])

    assert points(contact) == -15
    assert not PointsShortfall.objects.exists()
    assert_books_balance(contact)


def test_a_return_is_idempotent_on_its_id(contact, rule):
    processed(purchase(contact=contact, lines=[("A", 2000, 2)]))
    first, _ = give_back("R-1", items=[("A", 1)])

    again, replayed = give_back("R-1", items=[("A", 1)])

    assert replayed is True and again.pk == first.pk and again.response == first.response
    assert LedgerEntry.objects.filter(source_type="return").count() == 1
    assert TransactionItem.objects.get().returned_quantity == 1
    with pytest.raises(IdempotencyMismatch):
        give_back("R-1", items=[("A", 2)])


def test_a_return_against_a_voided_purchase_is_a_conflict(contact, rule):
    txn = processed(purchase(contact=contact))
    transaction_void(transaction=txn)

    with pytest.raises(Conflict):
        give_back("R-1", items=[("SKU0", 1)])

    assert not Return.objects.exists()


def test_a_return_against_an_unknown_purchase_is_not_found():
    with pytest.raises(NotFound):
        give_back("R-1", original="NOPE")


def test_a_return_against_a_purchase_of_the_other_mode_is_not_found(rule):
    processed(purchase(contact=ContactFactory(livemode=True)), livemode=True)

    with pytest.raises(NotFound):
        give_back("R-1", items=[("SKU0", 1)])


def test_a_return_of_an_anonymous_purchase_records_the_goods_only(rule):
    txn = processed(purchase(lines=[("A", 1000)]))

    record, _ = give_back("R-1", items=[("A", 1)])

    assert (record.points_reversed, record.amount) == (0, 1000)
    assert txn.items.get().returned_quantity == 1


# --- ad hoc returns ---------------------------------------------------------------------------


def test_an_ad_hoc_return_gives_back_the_base_rate_points_of_its_amount(contact, rule):
    gold = Tier.objects.create(livemode=False, name="Gold", rank=1, threshold=0, multiplier=Decimal("3"))
    base_rule(tier=gold, name="Gold extra", points_per_unit="5")
    points_earn(contact=contact, points=100, cause=Cause("system", "seed", "seed"))

    record, _ = give_back("R-1", original=None, amount=1500, contact=contact)

    assert (record.points_reversed, record.amount, record.original_id) == (15, 1500, None)
    assert points(contact) == 85
    reverse = LedgerEntry.objects.get(source_type="return")
    assert (reverse.kind, reverse.amount, reverse.source_id) == ("reverse", -15, "R-1")
    assert_books_balance(contact)


def test_an_ad_hoc_return_never_takes_more_than_the_contact_has(contact, rule):
    points_earn(contact=contact, points=4, cause=Cause("system", "seed", "seed"))

    record, _ = give_back("R-1", original=None, amount=1500, contact=contact)

    assert record.points_reversed == 4 and points(contact) == 0


@pytest.mark.parametrize(("amount", "with_contact", "field"), [(1500, False, "contact"), (0, True, "amount")])
def test_an_ad_hoc_return_needs_a_contact_and_a_positive_amount(contact, rule, amount, with_contact, field):
    with pytest.raises(ValidationError) as error:
        give_back("R-1", original=None, amount=amount, contact=contact if with_contact else None)

    assert error.value.parameters[0]["name"] == field
    assert not Return.objects.exists()


def test_a_return_against_a_purchase_needs_its_lines(contact, rule):
    processed(purchase(contact=contact))

    with pytest.raises(ValidationError) as error:
        give_back("R-1", items=[])

    assert error.value.parameters[0]["name"] == "items"


# --- parallel returns -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_parallel_returns_never_return_more_than_was_bought():
    base_rule()
    contact = ContactFactory()
    txn = processed(purchase(contact=contact, lines=[("A", 3000, 3)]))
    count = 8
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = give_back(f"R-{index}", items=[("A", 1)])
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads)
    accepted = [result for result in results if isinstance(result, tuple)]
    refused = [result for result in results if isinstance(result, ValidationError)]
    assert (len(accepted), len(refused)) == (3, count - 3), results
    assert Return.objects.count() == 3
    assert TransactionItem.objects.get(transaction=txn).returned_quantity == 3
    assert sum(record.points_reversed for record, _ in accepted) == 30
    assert points(contact) == 0
    assert_books_balance(contact)
