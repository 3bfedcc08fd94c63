from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from catalogue.tests.factories import VenueFactory
from core.exceptions import InsufficientBalance, ValidationError
from core.models import OutboxEvent
from loyalty.exceptions import OtpExpired, OtpInvalid, OtpLocked, OtpRequired, OtpUsed, PayoutNotPending
from loyalty.models import (
    Account,
    ContactTier,
    Payout,
    Program,
    SpendCondition,
    SpendConditionRestriction,
    Tier,
    WalletPreference,
)
from loyalty.selectors.wallets import wallet_summary
from loyalty.services.earning import BasketLine
from loyalty.services.ledger import Cause, account_check
from loyalty.services.tiers import tier_evaluate
from loyalty.services.wallets import (
    money_credit,
    payout_settle,
    points_earn,
    program_for,
    spend_token_issue,
    spend_token_redeem,
    wallet_adjust,
    wallet_spend,
)
from loyalty.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def cause(key):
    return Cause("transaction", key, key)


@pytest.fixture
def contact():
    return ContactFactory()


def basket(*lines):
    return [BasketLine(sku=sku, amount=amount, family=family) for sku, amount, family in lines]


def test_earned_points_expire_after_the_program_default(contact):
    program = program_for(livemode=contact.livemode)
    program.points_expiry_months = 12
    program.save()
    occurred_at = datetime(2026, 1, 15, 12, tzinfo=ZoneInfo("UTC"))
    entry = points_earn(contact=contact, points=100, cause=Cause("transaction", "t1", "t1", occurred_at=occurred_at))
    assert entry.lots.get().expires_at == datetime(2027, 1, 15, 12, tzinfo=ZoneInfo("UTC"))


def test_earning_held_by_the_program_shows_as_pending(contact):
    program = program_for(livemode=contact.livemode)
    program.pending_days = 14
    program.save()
    points_earn(contact=contact, points=100, cause=cause("t1"))
    summary = wallet_summary(contact=contact)
    assert summary["points"] | {"next_expiring": None} == {
        "balance": 100,
        "available": 0,
        "pending": 100,
        "debt": 0,
        "next_expiring": None,
    }


def test_open_balance_is_spent_anywhere_and_front_end_spend_returns_the_approved_amount(contact):
    money_credit(contact=contact, kind="open", currency="EUR", amount=1500, cause=cause("cashback"))
    result = wallet_spend(
        contact=contact, currency="EUR", amount=1000, lines=basket(("A", 2500, None)), cause=cause("p1")
    )
    assert (result.approved, result.by_account) == (1000, {"open": 1000})
    assert result.entries[0].kind == "spend"
    account = Account.objects.get(contact=contact, kind="open")
    assert account.balance == 500
    assert account_check(account=account) == []


def test_spend_never_exceeds_the_basket_total(contact):
    money_credit(contact=contact, kind="open", currency="EUR", amount=5000, cause=cause("cashback"))
    result = wallet_spend(
        contact=contact, currency="EUR", amount=5000, lines=basket(("A", 1200, None)), cause=cause("p1")
    )
    assert result.approved == 1200


def test_commerce_balance_is_spent_only_on_qualifying_products(contact):
    condition = SpendCondition.objects.create(livemode=False, name="Dairy only")
    SpendConditionRestriction.objects.create(condition=condition, kind="family", value="dairy")
    money_credit(
        contact=contact, kind="commerce", currency="EUR", amount=1000, cause=cause("c"), spend_condition=condition
    )
    lines = basket(("MILK", 300, "dairy"), ("BREAD", 900, "bakery"))
    result = wallet_spend(contact=contact, currency="EUR", amount=1000, lines=lines, cause=cause("p1"))
    assert result.approved == 300


def test_commerce_balance_respects_venue_day_and_hours_in_the_venue_time_zone(contact):
    venue = VenueFactory(time_zone="Europe/Stockholm")
    other_venue = VenueFactory()
    condition = SpendCondition.objects.create(
        livemode=False, name="Weekday mornings", days_of_week=[1, 2, 3, 4, 5], hour_from=time(7), hour_until=time(11)
    )
    condition.venues.add(venue)
    money_credit(
        contact=contact, kind="commerce", currency="EUR", amount=500, cause=cause("c"), spend_condition=condition
    )
    lines = basket(("A", 1000, None))
    monday_9_local = datetime(2026, 11, 16, 9, tzinfo=STOCKHOLM)
    monday_12_local = datetime(2026, 11, 16, 12, tzinfo=STOCKHOLM)
    saturday_9_local = datetime(2026, 11, 21, 9, tzinfo=STOCKHOLM)
    for key, place, at in [
        ("x1", other_venue, monday_9_local),
        ("x2", venue, monday_12_local),
        ("x3", venue, saturday_9_local),
        ("x4", None, monday_9_local),
    ]:
        assert (
            wallet_spend(
                contact=contact, currency="EUR", amount=500, lines=lines, cause=cause(key), venue=place, at=at
            ).approved
            == 0
        )
    ok = wallet_spend(
        contact=contact, currency="EUR", amount=500, lines=lines, cause=cause("ok"), venue=venue, at=monday_9_local
    )
    assert ok.approved == 500


@pytest.mark.parametrize(
    "order, expected", [("commerce_first", {"commerce": 400, "open": 200}), ("open_first", {"open": 600})]
)
def test_program_setting_decides_which_balance_is_spent_first(contact, order, expected):
    program = program_for(livemode=False)
    program.spend_order = order
    program.save()
    money_credit(contact=contact, kind="open", currency="EUR", amount=1000, cause=cause("o"))
    money_credit(contact=contact, kind="commerce", currency="EUR", amount=400, cause=cause("c"))
    result = wallet_spend(
        contact=contact, currency="EUR", amount=600, lines=basket(("A", 5000, None)), cause=cause("p")
    )
    assert result.by_account == expected


def test_strict_spend_beyond_what_is_allowed_reports_the_available_amount(contact):
    money_credit(contact=contact, kind="open", currency="EUR", amount=750, cause=cause("o"))
    with pytest.raises(InsufficientBalance) as error:
        wallet_spend(
            contact=contact,
            currency="EUR",
            amount=1000,
            lines=basket(("A", 5000, None)),
            cause=cause("p"),
            allow_partial=False,
        )
    assert error.value.parameters[0]["available"] == "7.50"
    assert Account.objects.get(contact=contact, kind="open").balance == 750


def test_spend_is_idempotent_on_its_cause(contact):
    money_credit(contact=contact, kind="open", currency="EUR", amount=1000, cause=cause("o"))
    first = wallet_spend(contact=contact, currency="EUR", amount=400, lines=basket(("A", 5000, None)), cause=cause("p"))
    again = wallet_spend(contact=contact, currency="EUR", amount=400, lines=basket(("A", 5000, None)), cause=cause("p"))
    assert again.entries[0].pk == first.entries[0].pk
    assert Account.objects.get(contact=contact, kind="open").balance == 600


def test_negative_spend_amount_is_a_validation_error(contact):
    with pytest.raises(ValidationError):
        wallet_spend(contact=contact, currency="EUR", amount=-1, lines=[], cause=cause("p"))


def test_back_end_reduction_creates_a_pending_payout_announced_in_the_outbox(contact):
    WalletPreference.objects.create(contact=contact, payout_method="card", payout_reference="**** 4242")
    money_credit(contact=contact, kind="open", currency="EUR", amount=1000, cause=cause("o"))
    result = wallet_spend(
        contact=contact,
        currency="EUR",
        amount=300,
        lines=basket(("A", 5000, None)),
        cause=cause("p"),
        reduction="back_end",
    )
    assert result.entries[0].kind == "payout"
    payout = result.payout
    assert (payout.status, payout.amount, payout.method) == ("pending", 300, "card")
    event = OutboxEvent.objects.get(event_type="payout.requested")
    assert event.payload["amount"] == "3.00"


def test_failed_payout_gives_the_money_back_and_cannot_be_settled_twice(contact):
    money_credit(contact=contact, kind="open", currency="EUR", amount=1000, cause=cause("o"))
    payout = wallet_spend(
        contact=contact,
        currency="EUR",
        amount=300,
        lines=basket(("A", 5000, None)),
        cause=cause("p"),
        reduction="back_end",
    ).payout
    payout_settle(payout=payout, paid=False, failure_reason="card expired")
    account = Account.objects.get(contact=contact, kind="open")
    assert account.balance == 1000
    assert account_check(account=account) == []
    with pytest.raises(PayoutNotPending):
        payout_settle(payout=payout, paid=True)
    assert Payout.objects.get(pk=payout.pk).status == "failed"


def test_auto_spend_above_a_threshold_applies_when_no_amount_is_requested(contact):
    WalletPreference.objects.create(contact=contact, auto_spend="above_threshold", auto_spend_threshold=500)
    money_credit(contact=contact, kind="open", currency="EUR", amount=1200, cause=cause("o"))
    result = wallet_spend(
        contact=contact, currency="EUR", amount=None, lines=basket(("A", 5000, None)), cause=cause("p")
    )
    assert result.approved == 700


def test_auto_spend_off_spends_nothing(contact):
    money_credit(contact=contact, kind="open", currency="EUR", amount=1200, cause=cause("o"))
    result = wallet_spend(
        contact=contact, currency="EUR", amount=None, lines=basket(("A", 5000, None)), cause=cause("p")
    )
    assert result.approved == 0 and result.entries == []


def test_otp_protected_spend_needs_a_valid_single_use_code(contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    money_credit(contact=contact, kind="open", currency="EUR", amount=1000, cause=cause("o"))
    lines = basket(("A", 5000, None))
    with pytest.raises(OtpRequired):
        wallet_spend(contact=contact, currency="EUR", amount=100, lines=lines, cause=cause("p1"))
    _, code = spend_token_issue(contact=contact)
    assert len(code) == 6 and code.isdigit()
    assert (
        wallet_spend(contact=contact, currency="EUR", amount=100, lines=lines, cause=cause("p2"), otp=code).approved
        == 100
    )
    with pytest.raises(OtpUsed):
        wallet_spend(contact=contact, currency="EUR", amount=100, lines=lines, cause=cause("p3"), otp=code)


def test_wrong_otp_attempts_are_counted_and_lock_the_code(contact):
    program = program_for(livemode=False)
    program.otp_max_attempts = 3
    program.save()
    token, code = spend_token_issue(contact=contact)
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(OtpInvalid) as first:
        spend_token_redeem(contact=contact, code=wrong)
    assert first.value.parameters[0]["attempts_left"] == 2
    with pytest.raises(OtpInvalid):
        spend_token_redeem(contact=contact, code=wrong)
    with pytest.raises(OtpLocked):
        spend_token_redeem(contact=contact, code=wrong)
    with pytest.raises(OtpLocked):
        spend_token_redeem(contact=contact, code=code)
    token.refresh_from_db()
    assert token.attempts == 3 and token.used_at is None


def test_expired_otp_is_refused_and_a_new_code_replaces_the_old(contact):
    _, old_code = spend_token_issue(contact=contact)
    with time_machine.travel(timezone.now() + timedelta(minutes=10)), pytest.raises(OtpExpired):
        spend_token_redeem(contact=contact, code=old_code)
    _, first = spend_token_issue(contact=contact)
    _, second = spend_token_issue(contact=contact)
    if first != second:
        with pytest.raises(OtpInvalid):
            spend_token_redeem(contact=contact, code=first)
    spend_token_redeem(contact=contact, code=second)


def test_manual_adjustment_needs_a_reason_and_records_the_staff_user(contact, django_user_model):
    staff = django_user_model.objects.create_user("finance", is_staff=True)
    with pytest.raises(ValidationError):
        wallet_adjust(contact=contact, kind="points", amount=50, reason=" ", staff_user=staff)
    entry = wallet_adjust(
        contact=contact, kind="points", amount=50, reason="Goodwill for late delivery", staff_user=staff
    )
    assert (entry.kind, entry.amount, entry.created_by, entry.reason) == (
        "adjust",
        50,
        staff,
        "Goodwill for late delivery",
    )
    with pytest.raises(InsufficientBalance):
        wallet_adjust(contact=contact, kind="points", amount=-51, reason="Correction", staff_user=staff)
    wallet_adjust(contact=contact, kind="points", amount=-50, reason="Correction", staff_user=staff)


@pytest.fixture
def tiers():
    return [
        Tier.objects.create(livemode=False, name="Silver", rank=1, threshold=1000, multiplier=Decimal("1.25")),
        Tier.objects.create(livemode=False, name="Gold", rank=2, threshold=5000, multiplier=Decimal("1.5")),
    ]


def test_tier_upgrade_is_immediate_on_qualification(contact, tiers):
    points_earn(contact=contact, points=999, cause=cause("a"))
    assert tier_evaluate(contact=contact) is None
    points_earn(contact=contact, points=1, cause=cause("b"))
    assert tier_evaluate(contact=contact) == tiers[0]
    points_earn(contact=contact, points=4000, cause=cause("c"))
    assert tier_evaluate(contact=contact) == tiers[1]
    assert list(contact.tier_history.values_list("reason", flat=True)) == ["upgrade", "upgrade"]
    assert OutboxEvent.objects.filter(event_type="tier.changed").count() == 2


@pytest.mark.parametrize(
    "policy, after_days, expected",
    [
        ("never", 800, "Silver"),
        ("period_end", 200, "Silver"),  # still inside the 12-month period
        ("period_end", 400, None),  # period over, no longer qualifying
        ("after_grace", 400, "Silver"),  # first day seen below: grace starts
    ],
)
def test_tier_downgrade_follows_the_program_policy(contact, tiers, policy, after_days, expected):
    program = program_for(livemode=False)
    program.tier_downgrade_policy = policy
    program.save()
    points_earn(contact=contact, points=1000, cause=cause("a"))
    tier_evaluate(contact=contact)
    with time_machine.travel(timezone.now() + timedelta(days=after_days)):
        tier = tier_evaluate(contact=contact)
    assert (tier.name if tier else None) == expected


def test_downgrade_after_grace_happens_once_the_grace_days_pass(contact, tiers):
    program = program_for(livemode=False)
    program.tier_downgrade_policy = Program.DowngradePolicy.AFTER_GRACE
    program.tier_downgrade_grace_days = 30
    program.save()
    points_earn(contact=contact, points=1000, cause=cause("a"))
    tier_evaluate(contact=contact)
    start = timezone.now() + timedelta(days=400)
    with time_machine.travel(start):
        assert tier_evaluate(contact=contact) == tiers[0]
    with time_machine.travel(start + timedelta(days=31)):
        assert tier_evaluate(contact=contact) is None


def test_wallet_summary_shows_tier_progress(contact, tiers):
    points_earn(contact=contact, points=1200, cause=cause("a"))
    tier_evaluate(contact=contact)
    progress = wallet_summary(contact=contact)["tier"]
    assert progress["current"]["name"] == "Silver"
    assert progress["next"]["name"] == "Gold"
    assert progress["remaining_to_next"] == 3800


def test_earning_enough_points_upgrades_the_tier_at_once(contact, tiers):
    points_earn(contact=contact, points=1000, cause=cause("big purchase"))
    assert ContactTier.objects.get(contact=contact).tier == tiers[0]
