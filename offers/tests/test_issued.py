"""Issued offers at the service level: the transition table, each action's guards, the history
rows and counters every change writes, the sweeps, the rules of issuing, and external
redemptions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from core.baskets import BasketLine
from core.exceptions import Conflict, NotFound, ValidationError
from core.models import OutboxEvent
from loyalty.tests.factories import ContactFactory
from offers import tasks
from offers.exceptions import OfferLimitReached, OfferLocked, OfferNotApplicable, OfferNotAvailable
from offers.models import IssuedOffer, IssuedOfferTransition, Offer, OfferContactUsage
from offers.services import issued as services
from offers.services.engine import BasketContext
from offers.tests.factories import IssuedOfferFactory, OfferFactory

pytestmark = pytest.mark.django_db

Status = IssuedOffer.Status
ALL_STATUSES = list(Status.values)

MILK = BasketLine(sku="MILK", amount=300, quantity=Decimal(2), unit_price=150)
BREAD = BasketLine(sku="BREAD", amount=200, quantity=Decimal(1), unit_price=200)
CHEESE = BasketLine(sku="CHEESE", amount=1000, quantity=Decimal(1), unit_price=1000)


def context(*lines: BasketLine, currency: str = "EUR") -> BasketContext:
    """A basket; by default MILK 3.00 + BREAD 2.00, on which the factory's 10 % offer gives 0.50."""
    return BasketContext(lines=list(lines or (MILK, BREAD)), currency=currency, at=timezone.now())


def issued_in(status: str, **kwargs) -> IssuedOffer:
    """An issued offer already in `status`, with the fields the check constraints ask for."""
    now = timezone.now()
    fields: dict = {}
    if status == Status.LOCKED:
        fields = {
            "locked_transaction_id": "T-HOLDER",
            "locked_until": now + timedelta(minutes=5),
            "locked_discount": 50,
        }
    elif status == Status.REDEEMED:
        fields = {"redeemed_transaction_id": "T-HOLDER", "redeemed_at": now, "redeemed_discount": 50}
    return IssuedOfferFactory(status=status, **fields, **kwargs)


def history(issued: IssuedOffer) -> list[tuple[str, str, str, str, int]]:
    return list(
        IssuedOfferTransition.objects.filter(issued_offer=issued)
        .order_by("id")
        .values_list("action", "from_status", "to_status", "transaction_id", "discount")
    )


def counters(offer: Offer) -> tuple[int, int, int]:
    offer.refresh_from_db()
    return offer.issued_count, offer.redeemed_count, offer.discount_given


def usage(issued: IssuedOffer) -> int:
    row = OfferContactUsage.objects.filter(offer_id=issued.offer_id, contact_id=issued.contact_id).first()
    return row.redeemed_count if row else 0


def snapshot(issued: IssuedOffer) -> tuple:
    """Everything a refused call must leave exactly as it was."""
    row = IssuedOffer.objects.get(pk=issued.pk)
    offer = Offer.objects.get(pk=issued.offer_id)
    return (
        row.status,
        row.locked_transaction_id,
        row.locked_until,
        row.locked_discount,
        row.redeemed_transaction_id,
        row.redeemed_at,
        row.redeemed_discount,
        offer.redeemed_count,
        offer.discount_given,
        usage(issued),
        IssuedOfferTransition.objects.filter(issued_offer_id=issued.pk).count(),
        OutboxEvent.objects.count(),
    )


# --- the transition table ---------------------------------------------------------------------


def test_transition_table_is_the_documented_state_machine():
    assert {
        "lock": ({Status.AVAILABLE, Status.LOCKED}, Status.LOCKED),
        "unlock": ({Status.LOCKED}, Status.AVAILABLE),
        "release": ({Status.LOCKED}, Status.AVAILABLE),
        "redeem": ({Status.AVAILABLE, Status.LOCKED}, Status.REDEEMED),
        "reinstate": ({Status.REDEEMED}, Status.AVAILABLE),
        "expire": ({Status.AVAILABLE, Status.LOCKED}, Status.EXPIRED),
        "revoke": ({Status.AVAILABLE, Status.LOCKED}, Status.REVOKED),
    } == services.TRANSITIONS


@pytest.mark.parametrize("start", ALL_STATUSES)
@pytest.mark.parametrize("action", sorted(services.TRANSITIONS))
def test_transition_service_applies_exactly_what_the_table_allows(action, start):
    issued = issued_in(start)
    allowed_from, to_status = services.TRANSITIONS[action]
    extra = (
        {"locked_transaction_id": "T-NEW", "locked_until": timezone.now() + timedelta(minutes=1)}
        if to_status == Status.LOCKED
        else {}
    )
    if action == "redeem":
        extra = {"redeemed_at": timezone.now()}

    with transaction.atomic():
        row = IssuedOffer.objects.select_for_update().get(pk=issued.pk)
        if start in allowed_from:
            services.issued_offer_transition(
                issued=row, action=action, now=timezone.now(), transaction_id="T-NEW", actor="test", **extra
            )
        else:
            with pytest.raises(OfferNotAvailable):
                services.issued_offer_transition(
                    issued=row, action=action, now=timezone.now(), transaction_id="T-NEW", actor="test", **extra
                )

    issued.refresh_from_db()
    if start in allowed_from:
        assert issued.status == to_status
        assert history(issued) == [(action, start, to_status, "T-NEW", 0)]
        if to_status != Status.LOCKED:
            assert (issued.locked_transaction_id, issued.locked_until, issued.locked_discount) == ("", None, 0)
    else:
        assert issued.status == start
        assert history(issued) == []


# Which public service may start from which status: "ok" changes it, "noop" leaves it alone
# without error, anything else is refused with OfferNotAvailable.
SERVICE_OUTCOMES = {
    "lock": {"available": "ok", "locked": "ok", "redeemed": "refused", "expired": "refused", "revoked": "refused"},
    "unlock": {"available": "noop", "locked": "ok", "redeemed": "refused", "expired": "refused", "revoked": "refused"},
    "redeem": {"available": "ok", "locked": "ok", "redeemed": "refused", "expired": "refused", "revoked": "refused"},
    "reinstate": {
        "available": "refused",
        "locked": "refused",
        "redeemed": "ok",
        "expired": "refused",
        "revoked": "refused",
    },
    "revoke": {"available": "ok", "locked": "ok", "redeemed": "refused", "expired": "refused", "revoked": "refused"},
}

CALLS = {
    "lock": lambda pk: services.issued_offer_lock(issued_offer_id=pk, transaction_id="T-HOLDER", context=context()),
    "unlock": lambda pk: services.issued_offer_unlock(issued_offer_id=pk, transaction_id="T-HOLDER"),
    "redeem": lambda pk: services.issued_offer_redeem(issued_offer_id=pk, transaction_id="T-HOLDER"),
    "reinstate": lambda pk: services.issued_offer_reinstate(issued_offer_id=pk),
    "revoke": lambda pk: services.issued_offer_revoke(issued_offer_id=pk),
}
RESULTING_STATUS = {
    "lock": Status.LOCKED,
    "unlock": Status.AVAILABLE,
    "redeem": Status.REDEEMED,
    "reinstate": Status.AVAILABLE,
    "revoke": Status.REVOKED,
}


@pytest.mark.parametrize("start", ALL_STATUSES)
@pytest.mark.parametrize("action", sorted(SERVICE_OUTCOMES))
def test_each_service_moves_only_from_the_statuses_the_table_allows(action, start):
    issued = issued_in(start)
    if start == Status.REDEEMED:
        # A redeemed offer was counted; reinstating gives the use back.
        Offer.objects.filter(pk=issued.offer_id).update(redeemed_count=1, discount_given=50)
    outcome = SERVICE_OUTCOMES[action][start]
    before = snapshot(issued)

    if outcome == "refused":
        with pytest.raises(OfferNotAvailable):
            CALLS[action](issued.pk)
        assert snapshot(issued) == before
        return
    CALLS[action](issued.pk)

    issued.refresh_from_db()
    if outcome == "noop":
        assert snapshot(issued) == before
    else:
        assert issued.status == RESULTING_STATUS[action]
        [(recorded_action, from_status, to_status, *_)] = history(issued)
        assert (recorded_action, from_status, to_status) == (action, start, RESULTING_STATUS[action])


# --- lock -------------------------------------------------------------------------------------


def test_lock_binds_the_offer_to_the_transaction_prices_it_and_records_the_change(settings, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    settings.OFFER_LOCK_TTL_SECONDS = 900
    issued = IssuedOfferFactory()

    locked, evaluation = services.issued_offer_lock(
        issued_offer_id=issued.pk, transaction_id="T1", context=context(), actor="pos"
    )

    assert evaluation.discount == 50
    issued.refresh_from_db()
    assert issued.status == Status.LOCKED
    assert (issued.locked_transaction_id, issued.locked_discount) == ("T1", 50)
    assert issued.locked_until == timezone.now() + timedelta(seconds=900)
    assert locked.locked_until == issued.locked_until
    assert history(issued) == [("lock", "available", "locked", "T1", 50)]
    assert IssuedOfferTransition.objects.get(issued_offer=issued).actor == "pos"
    assert OutboxEvent.objects.filter(event_type="offer.locked", payload__transaction_id="T1").count() == 1


def test_default_lock_ttl_comes_from_the_setting(settings, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    settings.OFFER_LOCK_TTL_SECONDS = 120
    issued = IssuedOfferFactory()

    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    issued.refresh_from_db()
    assert issued.locked_until == timezone.now() + timedelta(seconds=120)


def test_same_transaction_locking_again_reprices_and_extends_the_deadline(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    time_machine.shift(timedelta(seconds=30))

    _, evaluation = services.issued_offer_lock(
        issued_offer_id=issued.pk, transaction_id="T1", context=context(MILK, BREAD, CHEESE), ttl_seconds=60
    )

    assert evaluation.discount == 150
    issued.refresh_from_db()
    assert (issued.status, issued.locked_transaction_id, issued.locked_discount) == (Status.LOCKED, "T1", 150)
    assert issued.locked_until == timezone.now() + timedelta(seconds=60)
    assert history(issued) == [
        ("lock", "available", "locked", "T1", 50),
        ("lock", "locked", "locked", "T1", 150),
    ]


def test_another_transaction_cannot_lock_a_live_lock_and_nothing_changes():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())
    before = snapshot(issued)

    with pytest.raises(OfferLocked) as refused:
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T2", context=context())

    assert refused.value.code == "OFFER_LOCKED"
    assert snapshot(issued) == before


def test_expired_lock_is_free_at_once_for_another_transaction_without_a_sweep(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    time_machine.shift(timedelta(seconds=61))

    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T2", context=context())

    issued.refresh_from_db()
    assert (issued.status, issued.locked_transaction_id) == (Status.LOCKED, "T2")
    assert [row[3] for row in history(issued)] == ["T1", "T2"]


def test_lock_is_still_held_one_second_before_its_deadline(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    time_machine.shift(timedelta(seconds=59))

    with pytest.raises(OfferLocked):
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T2", context=context())


def test_lock_without_a_transaction_id_is_refused_and_nothing_changes():
    issued = IssuedOfferFactory()
    before = snapshot(issued)

    with pytest.raises(ValidationError) as refused:
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="", context=context())

    assert refused.value.parameters[0]["name"] == "transaction_id"
    assert snapshot(issued) == before


@pytest.mark.parametrize("ttl_seconds", [-1, 0, services.MIN_LOCK_TTL - 1, services.MAX_LOCK_TTL + 1])
def test_lock_ttl_out_of_range_is_refused_and_nothing_changes(ttl_seconds):
    issued = IssuedOfferFactory()
    before = snapshot(issued)

    with pytest.raises(ValidationError) as refused:
        services.issued_offer_lock(
            issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=ttl_seconds
        )

    assert refused.value.parameters[0]["name"] == "ttl_seconds"
    assert snapshot(issued) == before


@pytest.mark.parametrize("ttl_seconds", [services.MIN_LOCK_TTL, services.MAX_LOCK_TTL])
def test_lock_ttl_at_either_bound_is_accepted(ttl_seconds, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()

    services.issued_offer_lock(
        issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=ttl_seconds
    )

    issued.refresh_from_db()
    assert issued.locked_until == timezone.now() + timedelta(seconds=ttl_seconds)


def test_lock_on_a_basket_the_offer_does_not_apply_to_is_refused_and_nothing_changes():
    issued = IssuedOfferFactory(offer__min_spend=10_000)
    before = snapshot(issued)

    with pytest.raises(OfferNotApplicable) as refused:
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    assert refused.value.parameters[0]["reasons"] == ["min_spend_not_met"]
    assert snapshot(issued) == before


def test_lock_of_an_issued_offer_past_its_expiry_is_refused_before_the_sweep_ran(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory(expires_at=timezone.now() + timedelta(hours=1))
    time_machine.shift(timedelta(hours=1))
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable):
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    assert snapshot(issued) == before


@pytest.mark.parametrize("offer_status", [Offer.Status.PAUSED, Offer.Status.ARCHIVED, Offer.Status.DRAFT])
def test_lock_and_redeem_of_an_offer_that_is_not_active_are_refused(offer_status):
    issued = IssuedOfferFactory(offer__status=offer_status)
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable):
        services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())
    with pytest.raises(OfferNotAvailable):
        services.issued_offer_redeem(issued_offer_id=issued.pk)

    assert snapshot(issued) == before


# --- unlock -----------------------------------------------------------------------------------


def test_unlock_by_the_holder_releases_the_lock_and_records_it():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    services.issued_offer_unlock(issued_offer_id=issued.pk, transaction_id="T1", actor="pos")

    issued.refresh_from_db()
    assert issued.status == Status.AVAILABLE
    assert (issued.locked_transaction_id, issued.locked_until, issued.locked_discount) == ("", None, 0)
    assert history(issued)[-1] == ("unlock", "locked", "available", "T1", 0)


def test_unlock_by_another_transaction_of_a_live_lock_is_refused():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())
    before = snapshot(issued)

    with pytest.raises(OfferLocked):
        services.issued_offer_unlock(issued_offer_id=issued.pk, transaction_id="T2")

    assert snapshot(issued) == before


def test_unlock_of_an_available_offer_is_a_no_op_without_history():
    issued = IssuedOfferFactory()

    result = services.issued_offer_unlock(issued_offer_id=issued.pk, transaction_id="T1")

    assert result.status == Status.AVAILABLE
    assert history(issued) == []


# --- redeem -----------------------------------------------------------------------------------


def test_immediate_redeem_with_a_basket_counts_the_use_and_the_discount():
    issued = IssuedOfferFactory()

    redeemed, evaluation = services.issued_offer_redeem(
        issued_offer_id=issued.pk, transaction_id="T1", context=context(), actor="pos"
    )

    assert evaluation.discount == 50
    issued.refresh_from_db()
    assert issued.status == Status.REDEEMED
    assert (issued.redeemed_transaction_id, issued.redeemed_discount) == ("T1", 50)
    assert issued.redeemed_at is not None
    assert counters(issued.offer) == (0, 1, 50)
    assert usage(issued) == 1
    assert history(issued) == [("redeem", "available", "redeemed", "T1", 50)]
    assert OutboxEvent.objects.filter(event_type="offer.redeemed").count() == 1


def test_immediate_redeem_without_transaction_or_basket_gives_no_discount_but_counts_the_use():
    issued = IssuedOfferFactory()

    _, evaluation = services.issued_offer_redeem(issued_offer_id=issued.pk)

    assert evaluation is None
    issued.refresh_from_db()
    assert (issued.status, issued.redeemed_transaction_id, issued.redeemed_discount) == (Status.REDEEMED, "", 0)
    assert counters(issued.offer) == (0, 1, 0)


def test_redeem_through_the_lock_holder_without_a_basket_uses_the_locked_price():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(MILK, BREAD, CHEESE))

    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1")

    issued.refresh_from_db()
    assert (issued.status, issued.redeemed_discount, issued.locked_transaction_id) == (Status.REDEEMED, 150, "")
    assert counters(issued.offer) == (0, 1, 150)
    assert [row[:3] for row in history(issued)] == [
        ("lock", "available", "locked"),
        ("redeem", "locked", "redeemed"),
    ]


def test_redeem_through_the_lock_holder_with_a_basket_reprices():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(MILK, BREAD, CHEESE))

    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    issued.refresh_from_db()
    assert issued.redeemed_discount == 50


@pytest.mark.parametrize("transaction_id", ["T2", None])
def test_redeem_of_an_offer_locked_by_another_transaction_is_refused(transaction_id):
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())
    before = snapshot(issued)

    with pytest.raises(OfferLocked):
        services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id=transaction_id, context=context())

    assert snapshot(issued) == before


def test_second_redeem_of_the_same_offer_is_refused_and_counted_once():
    issued = IssuedOfferFactory()
    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1", context=context())
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable) as refused:
        services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    assert refused.value.code == "OFFER_NOT_AVAILABLE"
    assert snapshot(issued) == before
    assert counters(issued.offer) == (0, 1, 50)


def test_redeem_records_the_time_the_caller_gives():
    issued = IssuedOfferFactory()
    when = timezone.now() - timedelta(hours=3)

    services.issued_offer_redeem(issued_offer_id=issued.pk, at=when)

    issued.refresh_from_db()
    assert issued.redeemed_at == when


def test_redeem_on_a_basket_the_offer_does_not_apply_to_is_refused_and_nothing_changes():
    issued = IssuedOfferFactory(offer__channels=["web"])
    before = snapshot(issued)

    with pytest.raises(OfferNotApplicable):
        services.issued_offer_redeem(
            issued_offer_id=issued.pk,
            context=BasketContext(lines=[MILK], currency="EUR", at=timezone.now(), channel="pos"),
        )

    assert snapshot(issued) == before


def test_redeem_of_an_issued_offer_past_its_expiry_is_refused(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory(expires_at=timezone.now() + timedelta(minutes=1))
    time_machine.shift(timedelta(minutes=2))
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable):
        services.issued_offer_redeem(issued_offer_id=issued.pk)

    assert snapshot(issued) == before


def test_after_the_ttl_another_transaction_locks_and_the_old_holders_redeem_is_refused(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    time_machine.shift(timedelta(seconds=61))
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T2", context=context())

    with pytest.raises(OfferLocked):
        services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1")

    issued.refresh_from_db()
    assert (issued.status, issued.locked_transaction_id) == (Status.LOCKED, "T2")
    assert counters(issued.offer)[1] == 0


def test_after_the_ttl_with_nobody_else_locking_the_old_holders_redeem_is_an_immediate_redeem(time_machine):
    # Current behaviour, pinned: a lapsed lock is no lock at all, so its old holder redeems as
    # anyone may redeem an available offer; without a basket the lapsed price is not used.
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    time_machine.shift(timedelta(seconds=61))

    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1")

    issued.refresh_from_db()
    assert (issued.status, issued.redeemed_transaction_id, issued.redeemed_discount) == (Status.REDEEMED, "T1", 0)


def test_redeem_beyond_the_total_budget_count_is_refused_and_nothing_changes():
    offer = OfferFactory(budget_count=1)
    first, second = IssuedOfferFactory(offer=offer), IssuedOfferFactory(offer=offer)
    services.issued_offer_redeem(issued_offer_id=first.pk)
    before = snapshot(second)

    with pytest.raises(OfferLimitReached) as refused:
        services.issued_offer_redeem(issued_offer_id=second.pk)

    assert refused.value.code == "LIMIT_EXCEEDED"
    assert refused.value.parameters[0]["reason"] == "budget_exhausted"
    assert snapshot(second) == before
    assert counters(offer) == (0, 1, 0)


def test_redeem_whose_discount_would_overrun_the_money_budget_is_refused():
    offer = OfferFactory(budget_amount=80)
    first, second = IssuedOfferFactory(offer=offer), IssuedOfferFactory(offer=offer)
    services.issued_offer_redeem(issued_offer_id=first.pk, context=context())
    before = snapshot(second)

    with pytest.raises(OfferLimitReached):
        services.issued_offer_redeem(issued_offer_id=second.pk, context=context())

    assert snapshot(second) == before
    assert counters(offer) == (0, 1, 50)


def test_redeem_within_what_is_left_of_the_money_budget_is_allowed():
    offer = OfferFactory(budget_amount=100)
    first, second = IssuedOfferFactory(offer=offer), IssuedOfferFactory(offer=offer)
    services.issued_offer_redeem(issued_offer_id=first.pk, context=context())

    services.issued_offer_redeem(issued_offer_id=second.pk, context=context())

    assert counters(offer) == (0, 2, 100)


def test_redeem_beyond_the_per_contact_limit_is_refused_but_another_contact_may_redeem():
    offer = OfferFactory(redemptions_per_contact=1)
    contact = ContactFactory()
    first = IssuedOfferFactory(offer=offer, contact=contact)
    second = IssuedOfferFactory(offer=offer, contact=contact)
    someone_else = IssuedOfferFactory(offer=offer)
    services.issued_offer_redeem(issued_offer_id=first.pk)
    before = snapshot(second)

    with pytest.raises(OfferLimitReached) as refused:
        services.issued_offer_redeem(issued_offer_id=second.pk)
    after_refusal = snapshot(second)
    services.issued_offer_redeem(issued_offer_id=someone_else.pk)

    assert refused.value.parameters[0]["reason"] == "limit_reached"
    assert after_refusal == before
    assert counters(offer) == (0, 2, 0)
    assert usage(first) == 1 and usage(someone_else) == 1


# --- reinstate --------------------------------------------------------------------------------


def test_reinstate_undoes_the_redemption_and_gives_back_its_counters():
    issued = IssuedOfferFactory()
    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    services.issued_offer_reinstate(issued_offer_id=issued.pk, actor="agent")

    issued.refresh_from_db()
    assert issued.status == Status.AVAILABLE
    assert (issued.redeemed_transaction_id, issued.redeemed_at, issued.redeemed_discount) == ("", None, 0)
    assert counters(issued.offer) == (0, 0, 0)
    assert usage(issued) == 0
    assert history(issued)[-1] == ("reinstate", "redeemed", "available", "T1", -50)
    assert OutboxEvent.objects.filter(event_type="offer.reinstated").count() == 1


def test_reinstated_offer_may_be_redeemed_again_within_the_per_contact_limit():
    issued = IssuedOfferFactory(offer__redemptions_per_contact=1, offer__budget_count=1)
    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T1")
    services.issued_offer_reinstate(issued_offer_id=issued.pk)

    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="T2")

    issued.refresh_from_db()
    assert (issued.status, issued.redeemed_transaction_id) == (Status.REDEEMED, "T2")
    assert counters(issued.offer)[1] == 1
    assert [row[0] for row in history(issued)] == ["redeem", "reinstate", "redeem"]


def test_reinstate_of_an_offer_that_was_never_redeemed_is_refused():
    issued = IssuedOfferFactory()
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable):
        services.issued_offer_reinstate(issued_offer_id=issued.pk)

    assert snapshot(issued) == before


def test_reinstate_after_the_issued_offer_expired_is_refused(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory(expires_at=timezone.now() + timedelta(hours=1))
    services.issued_offer_redeem(issued_offer_id=issued.pk)
    time_machine.shift(timedelta(hours=2))
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable):
        services.issued_offer_reinstate(issued_offer_id=issued.pk)

    assert snapshot(issued) == before


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_ends_a_locked_offer_and_clears_its_lock():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context())

    services.issued_offer_revoke(issued_offer_id=issued.pk, actor="agent")

    issued.refresh_from_db()
    assert (issued.status, issued.locked_transaction_id, issued.locked_until) == (Status.REVOKED, "", None)
    assert history(issued)[-1][:3] == ("revoke", "locked", "revoked")


# --- sweeps -----------------------------------------------------------------------------------


def test_lock_release_sweep_frees_lapsed_locks_only_and_records_each(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    lapsed = [IssuedOfferFactory() for _ in range(3)]
    live = IssuedOfferFactory()
    for index, issued in enumerate(lapsed):
        services.issued_offer_lock(
            issued_offer_id=issued.pk, transaction_id=f"T{index}", context=context(), ttl_seconds=60
        )
    services.issued_offer_lock(issued_offer_id=live.pk, transaction_id="LIVE", context=context(), ttl_seconds=600)
    time_machine.shift(timedelta(seconds=60))

    released = services.issued_offer_locks_release(batch_size=2)

    assert released == 3
    for index, issued in enumerate(lapsed):
        issued.refresh_from_db()
        assert (issued.status, issued.locked_transaction_id, issued.locked_until) == (Status.AVAILABLE, "", None)
        assert history(issued)[-1] == ("release", "locked", "available", f"T{index}", 0)
        assert IssuedOfferTransition.objects.filter(issued_offer=issued).last().actor == "system"
    live.refresh_from_db()
    assert (live.status, live.locked_transaction_id) == (Status.LOCKED, "LIVE")
    assert services.issued_offer_locks_release() == 0


def test_lock_release_task_runs_the_sweep(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    time_machine.shift(timedelta(seconds=61))

    assert tasks.locks_release() == 1

    issued.refresh_from_db()
    assert issued.status == Status.AVAILABLE


def test_expiry_sweep_expires_due_offers_but_keeps_live_locks_and_redeemed_ones(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    due = timezone.now() + timedelta(hours=1)
    available = IssuedOfferFactory(expires_at=due)
    lapsed_lock = IssuedOfferFactory(expires_at=due)
    live_lock = IssuedOfferFactory(expires_at=due)
    redeemed = IssuedOfferFactory(expires_at=due)
    not_due = IssuedOfferFactory(expires_at=due + timedelta(days=1))
    never = IssuedOfferFactory(expires_at=None)
    services.issued_offer_lock(issued_offer_id=lapsed_lock.pk, transaction_id="T1", context=context(), ttl_seconds=60)
    services.issued_offer_redeem(issued_offer_id=redeemed.pk)
    time_machine.shift(timedelta(minutes=59))
    services.issued_offer_lock(issued_offer_id=live_lock.pk, transaction_id="T2", context=context(), ttl_seconds=600)
    time_machine.shift(timedelta(minutes=1))

    expired = tasks.issued_offers_expire()

    assert expired == 2
    statuses = {
        name: IssuedOffer.objects.get(pk=issued.pk).status
        for name, issued in [
            ("available", available),
            ("lapsed_lock", lapsed_lock),
            ("live_lock", live_lock),
            ("redeemed", redeemed),
            ("not_due", not_due),
            ("never", never),
        ]
    }
    assert statuses == {
        "available": Status.EXPIRED,
        "lapsed_lock": Status.EXPIRED,
        "live_lock": Status.LOCKED,
        "redeemed": Status.REDEEMED,
        "not_due": Status.AVAILABLE,
        "never": Status.AVAILABLE,
    }
    assert history(available) == [("expire", "available", "expired", "", 0)]
    assert history(lapsed_lock)[-1] == ("expire", "locked", "expired", "T1", 0)
    assert IssuedOffer.objects.get(pk=lapsed_lock.pk).locked_until is None
    assert services.issued_offers_expire_due() == 0


# --- issuing ----------------------------------------------------------------------------------


def test_issue_puts_the_offer_in_the_wallet_counts_it_and_tells_the_outbox():
    offer = OfferFactory()
    contact = ContactFactory()

    issued = services.issued_offer_issue(offer=offer, contact=contact, actor="api-key:x")

    assert (issued.status, issued.contact_id, issued.livemode) == (Status.AVAILABLE, contact.pk, False)
    assert counters(offer) == (1, 0, 0)
    assert history(issued) == [("issue", "", "available", "", 0)]
    event = OutboxEvent.objects.get(event_type="offer.issued")
    assert event.payload["issued_offer_id"] == str(issued.pk)


@pytest.mark.parametrize(
    ("offer_status", "reason"),
    [
        (Offer.Status.PAUSED, "offer_paused"),
        (Offer.Status.ARCHIVED, "offer_not_active"),
        (Offer.Status.DRAFT, "offer_not_active"),
    ],
)
def test_offer_that_is_not_active_cannot_be_issued(offer_status, reason):
    offer = OfferFactory(status=offer_status)

    with pytest.raises(OfferNotAvailable) as refused:
        services.issued_offer_issue(offer=offer, contact=ContactFactory())

    assert refused.value.parameters[0]["reasons"] == [reason]
    assert not IssuedOffer.objects.exists()
    assert counters(offer) == (0, 0, 0)


def test_offer_that_has_ended_cannot_be_issued(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    offer = OfferFactory(valid_until=timezone.now() + timedelta(seconds=1))
    time_machine.shift(timedelta(seconds=1))

    with pytest.raises(OfferNotAvailable) as refused:
        services.issued_offer_issue(offer=offer, contact=ContactFactory())

    assert refused.value.parameters[0]["reasons"] == ["offer_ended"]
    assert not IssuedOffer.objects.exists()


def test_offer_not_yet_valid_may_be_issued_ahead_of_time():
    offer = OfferFactory(valid_from=timezone.now() + timedelta(days=1))

    issued = services.issued_offer_issue(offer=offer, contact=ContactFactory())

    assert issued.status == Status.AVAILABLE


def test_issued_expiry_defaults_to_and_is_capped_at_the_offers_end():
    offer = OfferFactory(valid_until=timezone.now() + timedelta(days=10))

    by_default = services.issued_offer_issue(offer=offer, contact=ContactFactory())
    too_late = services.issued_offer_issue(
        offer=offer, contact=ContactFactory(), expires_at=timezone.now() + timedelta(days=30)
    )
    earlier = timezone.now() + timedelta(days=2)
    shorter = services.issued_offer_issue(offer=offer, contact=ContactFactory(), expires_at=earlier)

    assert by_default.expires_at == offer.valid_until
    assert too_late.expires_at == offer.valid_until
    assert shorter.expires_at == earlier


def test_issue_with_an_expiry_in_the_past_is_refused():
    offer = OfferFactory()

    with pytest.raises(ValidationError) as refused:
        services.issued_offer_issue(
            offer=offer, contact=ContactFactory(), expires_at=timezone.now() - timedelta(minutes=1)
        )

    assert refused.value.parameters[0]["name"] == "expires_at"
    assert not IssuedOffer.objects.exists()
    assert counters(offer) == (0, 0, 0)


def test_external_reference_is_unique_within_a_mode_and_the_duplicate_changes_nothing():
    offer = OfferFactory()
    services.issued_offer_issue(offer=offer, contact=ContactFactory(), external_reference="EXT-1")
    events_before = OutboxEvent.objects.count()

    with pytest.raises(Conflict) as refused:
        services.issued_offer_issue(offer=offer, contact=ContactFactory(), external_reference="EXT-1")

    assert refused.value.parameters[0] == {"name": "external_reference", "value": "EXT-1"}
    assert IssuedOffer.objects.count() == 1
    assert counters(offer) == (1, 0, 0)
    assert OutboxEvent.objects.count() == events_before


def test_same_external_reference_may_be_used_in_the_other_mode():
    services.issued_offer_issue(offer=OfferFactory(), contact=ContactFactory(), external_reference="EXT-1")

    live = services.issued_offer_issue(
        offer=OfferFactory(livemode=True), contact=ContactFactory(livemode=True), external_reference="EXT-1"
    )

    assert live.livemode is True


def test_offer_cannot_be_issued_to_a_contact_of_the_other_mode():
    with pytest.raises(NotFound):
        services.issued_offer_issue(offer=OfferFactory(livemode=True), contact=ContactFactory(livemode=False))

    assert not IssuedOffer.objects.exists()


# --- external redemptions ---------------------------------------------------------------------


def test_external_redemption_by_issued_offer_id_redeems_it_at_the_reported_time():
    issued = IssuedOfferFactory(offer__is_external=True)
    when = timezone.now() - timedelta(hours=1)

    result, created = services.external_redemption_record(
        livemode=False, issued_offer_id=issued.pk, redeemed_at=when, transaction_id="EXT-T1"
    )

    assert created is True
    issued.refresh_from_db()
    assert (issued.status, issued.redeemed_transaction_id, issued.redeemed_at) == (Status.REDEEMED, "EXT-T1", when)
    assert counters(issued.offer)[1] == 1
    assert IssuedOfferTransition.objects.get(issued_offer=issued).actor == "external"


def test_external_redemption_by_external_reference_finds_the_issued_offer():
    issued = IssuedOfferFactory(offer__is_external=True, external_reference="VENDOR-9")

    result, created = services.external_redemption_record(
        livemode=False, external_reference="VENDOR-9", transaction_id="EXT-T1"
    )

    assert (result.pk, created) == (issued.pk, True)
    assert IssuedOffer.objects.get(pk=issued.pk).status == Status.REDEEMED


def test_repeated_external_redemption_is_a_no_op():
    issued = IssuedOfferFactory(external_reference="VENDOR-9")
    services.external_redemption_record(livemode=False, external_reference="VENDOR-9", transaction_id="EXT-T1")
    before = snapshot(issued)

    result, created = services.external_redemption_record(
        livemode=False, issued_offer_id=issued.pk, transaction_id="EXT-T1"
    )

    assert (result.pk, created) == (issued.pk, False)
    assert snapshot(issued) == before
    assert counters(issued.offer)[1] == 1


def test_external_redemption_of_an_offer_redeemed_by_another_transaction_is_refused():
    issued = IssuedOfferFactory(external_reference="VENDOR-9")
    services.issued_offer_redeem(issued_offer_id=issued.pk, transaction_id="POS-1")
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable) as refused:
        services.external_redemption_record(livemode=False, external_reference="VENDOR-9", transaction_id="EXT-T1")

    assert refused.value.parameters[0] == {"name": "transaction_id", "value": "POS-1"}
    assert snapshot(issued) == before


@pytest.mark.parametrize("status", [Status.EXPIRED, Status.REVOKED])
def test_external_redemption_of_an_ended_offer_is_refused(status):
    issued = issued_in(status)
    before = snapshot(issued)

    with pytest.raises(OfferNotAvailable):
        services.external_redemption_record(livemode=False, issued_offer_id=issued.pk, transaction_id="EXT-T1")

    assert snapshot(issued) == before


def test_external_redemption_of_an_offer_locked_by_a_pos_transaction_is_refused():
    issued = IssuedOfferFactory()
    services.issued_offer_lock(issued_offer_id=issued.pk, transaction_id="POS-1", context=context())
    before = snapshot(issued)

    with pytest.raises(OfferLocked):
        services.external_redemption_record(livemode=False, issued_offer_id=issued.pk, transaction_id="EXT-T1")

    assert snapshot(issued) == before


@pytest.mark.parametrize("by", ["issued_offer_id", "external_reference"])
def test_external_redemption_of_an_unknown_or_other_mode_offer_is_not_found(by):
    live = IssuedOfferFactory(offer__livemode=True, external_reference="VENDOR-LIVE")
    lookups = {"issued_offer_id": live.pk, "external_reference": "VENDOR-LIVE"}

    with pytest.raises(NotFound) as in_other_mode:
        services.external_redemption_record(livemode=False, **{by: lookups[by]})
    with pytest.raises(NotFound):
        services.external_redemption_record(
            livemode=True, **{by: "00000000-0000-0000-0000-000000000000" if by == "issued_offer_id" else "NOPE"}
        )

    assert in_other_mode.value.parameters[0]["name"] == by
    assert IssuedOffer.objects.get(pk=live.pk).status == Status.AVAILABLE


def test_a_lock_is_refused_once_the_contact_has_used_up_the_offer():
    from offers.exceptions import OfferLimitReached
    from offers.services.issued import issued_offer_lock, issued_offer_redeem
    from offers.tests.factories import IssuedOfferFactory, OfferFactory

    offer = OfferFactory(redemptions_per_contact=1)
    first = IssuedOfferFactory(offer=offer)
    second = IssuedOfferFactory(offer=offer, contact=first.contact)
    issued_offer_redeem(issued_offer_id=first.pk, transaction_id="T1")
    with pytest.raises(OfferLimitReached):
        issued_offer_lock(issued_offer_id=second.pk, transaction_id="T2", context=None)
    second.refresh_from_db()
    assert second.status == "available"
