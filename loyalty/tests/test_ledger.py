from datetime import timedelta

import pytest
import time_machine
from django.db import DatabaseError, transaction
from django.utils import timezone

from core.exceptions import InsufficientBalance, ValidationError
from loyalty.models import Account, LedgerEntry, PointsShortfall, Program
from loyalty.services.ledger import (
    Cause,
    IdempotencyKeyReused,
    account_check,
    account_get_or_create,
    ledger_credit,
    ledger_debit,
    ledger_reverse,
    lots_expire_due,
    pending_lots_release,
)
from loyalty.tests.factories import ContactFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("ledger_path")]


def cause(key, source="transaction"):
    return Cause(source, key, key)


@pytest.fixture
def points(db):
    return account_get_or_create(contact=ContactFactory(), kind=Account.Kind.POINTS)


def test_credit_then_debit_keeps_balance_equal_to_the_sum_of_entries(points):
    ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    ledger_debit(account=points, amount=30, kind="spend", cause=cause("b"))
    points.refresh_from_db()
    assert points.balance == 70
    assert account_check(account=points) == []
    assert list(points.entries.order_by("id").values_list("amount", "balance_after")) == [(100, 100), (-30, 70)]


def test_same_cause_posts_once(points):
    first = ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    again = ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    points.refresh_from_db()
    assert again.pk == first.pk
    assert points.balance == 100


def test_reusing_a_key_for_another_amount_is_a_conflict(points):
    ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    with pytest.raises(IdempotencyKeyReused):
        ledger_credit(account=points, amount=50, kind="earn", cause=cause("a"))


def test_spending_more_than_available_names_the_available_amount(points):
    ledger_credit(account=points, amount=40, kind="earn", cause=cause("a"))
    with pytest.raises(InsufficientBalance) as error:
        ledger_debit(account=points, amount=41, kind="spend", cause=cause("b"))
    assert error.value.parameters[0]["available"] == 40
    points.refresh_from_db()
    assert points.balance == 40


@pytest.mark.parametrize("amount", [0, -5])
def test_zero_or_negative_amounts_are_refused(points, amount):
    with pytest.raises(ValidationError):
        ledger_credit(account=points, amount=amount, kind="earn", cause=cause("a"))


def test_spending_takes_the_soonest_expiring_lot_first(points):
    now = timezone.now()
    late = ledger_credit(
        account=points, amount=50, kind="earn", cause=cause("late"), expires_at=now + timedelta(days=300)
    )
    soon = ledger_credit(
        account=points, amount=50, kind="earn", cause=cause("soon"), expires_at=now + timedelta(days=10)
    )
    never = ledger_credit(account=points, amount=50, kind="earn", cause=cause("never"))
    ledger_debit(account=points, amount=70, kind="spend", cause=cause("spend"))
    remaining = {lot.entry_id: lot.remaining for lot in points.lots.all()}
    assert remaining == {soon.pk: 0, late.pk: 30, never.pk: 50}


def test_expiry_posts_expire_entries_once_and_keeps_books_exact(points):
    now = timezone.now()
    ledger_credit(account=points, amount=80, kind="earn", cause=cause("a"), expires_at=now + timedelta(days=1))
    ledger_credit(account=points, amount=20, kind="earn", cause=cause("b"))
    ledger_debit(account=points, amount=30, kind="spend", cause=cause("c"))
    with time_machine.travel(now + timedelta(days=2)):
        assert lots_expire_due() == 50
        assert lots_expire_due() == 0
    points.refresh_from_db()
    assert points.balance == 20
    assert points.entries.filter(kind="expire").get().amount == -50
    assert account_check(account=points) == []


def test_spending_never_uses_points_past_their_expiry_even_before_the_sweep(points):
    now = timezone.now()
    ledger_credit(account=points, amount=80, kind="earn", cause=cause("a"), expires_at=now + timedelta(days=1))
    with time_machine.travel(now + timedelta(days=2)), pytest.raises(InsufficientBalance):
        ledger_debit(account=points, amount=10, kind="spend", cause=cause("b"))
    # The attempted spend rolled back; the sweep still expires the lot.
    with time_machine.travel(now + timedelta(days=2)):
        assert lots_expire_due() == 80
    assert account_check(account=points) == []


def test_pending_points_are_not_spendable_until_released(points):
    now = timezone.now()
    ledger_credit(account=points, amount=60, kind="earn", cause=cause("a"), pending_until=now + timedelta(days=14))
    points.refresh_from_db()
    assert (points.balance, points.pending) == (60, 60)
    with pytest.raises(InsufficientBalance):
        ledger_debit(account=points, amount=1, kind="spend", cause=cause("b"))
    with time_machine.travel(now + timedelta(days=15)):
        assert pending_lots_release() == 60
        ledger_debit(account=points, amount=60, kind="spend", cause=cause("c"))
    points.refresh_from_db()
    assert (points.balance, points.pending) == (0, 0)
    assert account_check(account=points) == []


def test_reversing_a_pending_earning_removes_it_from_pending(points):
    now = timezone.now()
    earn = ledger_credit(
        account=points, amount=60, kind="earn", cause=cause("a"), pending_until=now + timedelta(days=14)
    )
    ledger_reverse(original=earn, cause=cause("r"))
    points.refresh_from_db()
    assert (points.balance, points.pending) == (0, 0)
    assert account_check(account=points) == []


def test_reversal_of_spent_points_goes_into_debt_when_the_program_allows(points):
    earn = ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    ledger_debit(account=points, amount=80, kind="spend", cause=cause("b"))
    ledger_reverse(original=earn, cause=cause("r"), negative_policy=Program.NegativePointsPolicy.ALLOW_DEBT)
    points.refresh_from_db()
    assert points.balance == -80
    # Future earnings pay the debt first.
    ledger_credit(account=points, amount=100, kind="earn", cause=cause("c"))
    points.refresh_from_db()
    assert points.balance == 20
    assert account_check(account=points) == []


def test_reversal_of_spent_points_stops_at_zero_and_records_the_shortfall_under_clamp(points):
    earn = ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    ledger_debit(account=points, amount=80, kind="spend", cause=cause("b"))
    entry = ledger_reverse(original=earn, cause=cause("r"), negative_policy=Program.NegativePointsPolicy.CLAMP)
    points.refresh_from_db()
    assert points.balance == 0
    assert entry.amount == -20
    assert PointsShortfall.objects.get(original_entry=earn).amount == 80
    # The shortfall counts as reversed: nothing more can be reversed.
    with pytest.raises(ValidationError):
        ledger_reverse(original=earn, cause=cause("r2"), amount=1)


def test_partial_reversals_never_exceed_the_original(points):
    earn = ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    ledger_reverse(original=earn, cause=cause("r1"), amount=60)
    with pytest.raises(ValidationError):
        ledger_reverse(original=earn, cause=cause("r2"), amount=41)
    ledger_reverse(original=earn, cause=cause("r3"), amount=40)
    points.refresh_from_db()
    assert points.balance == 0


def test_reversing_a_spend_gives_back_lots_with_their_original_expiry(points):
    expires_at = timezone.now() + timedelta(days=30)
    ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"), expires_at=expires_at)
    spend = ledger_debit(account=points, amount=70, kind="spend", cause=cause("b"))
    ledger_reverse(original=spend, cause=cause("void"))
    points.refresh_from_db()
    assert points.balance == 100
    restored = points.lots.get(entry__kind="reverse")
    assert (restored.remaining, restored.expires_at) == (70, expires_at)
    assert account_check(account=points) == []


def test_ledger_rows_cannot_be_updated_or_deleted_in_the_database(points):
    entry = ledger_credit(account=points, amount=100, kind="earn", cause=cause("a"))
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=1000)
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    entry.refresh_from_db()
    assert entry.amount == 100


def test_money_balance_cannot_go_negative_even_by_a_direct_update(db):
    account = account_get_or_create(contact=ContactFactory(), kind=Account.Kind.OPEN, currency="EUR")
    with pytest.raises(DatabaseError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(balance=-1)
