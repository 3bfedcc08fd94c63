"""Intake (service level): a purchase is validated, stored with its lines and answered `queued`;
idempotent on its id; finalize redeems the offers this transaction locked, inside the same
database transaction as the insert; a spend is approved at once (front end) or paid out later
(back end). Whatever refuses the purchase leaves nothing behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from core.exceptions import IdempotencyMismatch, NotFound, ValidationError
from core.models import OutboxEvent
from loyalty.exceptions import OtpInvalid, OtpRequired
from loyalty.models import Account, LedgerEntry, Payout, SpendToken, WalletPreference
from loyalty.services.ledger import Cause
from loyalty.services.wallets import money_credit, program_for, spend_token_issue
from loyalty.tests.factories import ContactFactory
from offers.exceptions import OfferLocked, OfferNotAvailable
from offers.models import IssuedOffer, Offer
from offers.tests.factories import IssuedOfferFactory
from transactions.models import Transaction, TransactionDiscount, TransactionEvent, TransactionItem
from transactions.services.intake import transaction_intake
from transactions.tests.factories import locked_offer, purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    return ContactFactory(livemode=False)


def open_balance(contact, amount: int = 5000):
    """Credit the contact's open money balance (EUR minor units)."""
    return money_credit(
        contact=contact,
        kind=Account.Kind.OPEN,
        currency="EUR",
        amount=amount,
        cause=Cause("system", "seed", f"seed:{contact.pk}:{amount}"),
    )


def money_available(contact) -> int:
    account = Account.objects.filter(contact=contact, kind=Account.Kind.OPEN, currency="EUR").first()
    return account.available if account else 0


def assert_nothing_stored(*issued_offers: IssuedOffer) -> None:
    assert not Transaction.objects.exists()
    assert not TransactionItem.objects.exists()
    assert not TransactionDiscount.objects.exists()
    assert not TransactionEvent.objects.exists()
    assert not LedgerEntry.objects.filter(source_type=LedgerEntry.Source.TRANSACTION).exists()
    assert not Payout.objects.exists()
    assert not OutboxEvent.objects.filter(event_type__in=["offer.redeemed", "payout.requested"]).exists()
    for issued in issued_offers:
        issued.refresh_from_db()
        assert issued.status != IssuedOffer.Status.REDEEMED
        assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 0


# --- storing and answering --------------------------------------------------------------------


def test_a_purchase_is_stored_with_its_lines_and_answered_queued(contact):
    txn, response, replayed = transaction_intake(
        livemode=False, purchase=purchase(lines=[("MILK", 300, 2), ("BREAD", 250)], contact=contact)
    )

    assert replayed is False
    assert response["status"] == "queued" and response["id"] == "T-1"
    assert response["transaction_id"] == str(txn.pk) and response["contact_id"] == str(contact.pk)
    txn.refresh_from_db()
    assert (txn.status, txn.amount, txn.contact_id, txn.livemode) == ("queued", 550, contact.pk, False)
    assert txn.response == response
    assert list(txn.items.values_list("line_number", "sku", "amount")) == [(0, "MILK", 300), (1, "BREAD", 250)]
    assert list(txn.events.values_list("kind", flat=True)) == ["received"]


def test_order_level_discounts_are_spread_over_the_lines_in_proportion(contact):
    txn, _, _ = transaction_intake(
        livemode=False,
        purchase=purchase(lines=[("A", 1000), ("B", 3000)], discounts=[(400, None)], contact=contact),
    )

    assert txn.discount_total == 400
    assert list(txn.items.values_list("sku", "discount_allocated")) == [("A", 100), ("B", 300)]
    assert txn.net_amount == 3600


def test_sending_the_same_purchase_again_returns_the_first_answer_and_stores_nothing_new(contact):
    sent = purchase(contact=contact)
    first, first_response, _ = transaction_intake(livemode=False, purchase=sent)

    again, again_response, replayed = transaction_intake(livemode=False, purchase=sent)

    assert replayed is True and again.pk == first.pk and again_response == first_response
    assert Transaction.objects.count() == 1
    assert TransactionItem.objects.count() == 1
    assert TransactionEvent.objects.count() == 1


def test_reusing_an_id_with_other_content_is_an_idempotency_mismatch(contact):
    transaction_intake(livemode=False, purchase=purchase(lines=[("A", 1000)], contact=contact))

    with pytest.raises(IdempotencyMismatch) as error:
        transaction_intake(livemode=False, purchase=purchase(lines=[("A", 1001)], contact=contact))

    assert error.value.parameters[0]["name"] == "id" and error.value.parameters[0]["value"] == "T-1"
    assert Transaction.objects.get().amount == 1000


def test_the_same_id_in_the_other_mode_is_another_purchase():
    transaction_intake(livemode=False, purchase=purchase())
    live, _, replayed = transaction_intake(livemode=True, purchase=purchase(lines=[("OTHER", 5)]))

    assert replayed is False and live.livemode is True
    assert Transaction.objects.filter(external_id="T-1").count() == 2


def test_discounts_larger_than_the_lines_are_refused_and_nothing_is_stored(contact):
    with pytest.raises(ValidationError) as error:
        transaction_intake(livemode=False, purchase=purchase(lines=[("A", 1000)], discounts=[(600, None), (500, None)]))

    assert error.value.parameters[0]["name"] == "discounts"
    assert_nothing_stored()


def test_an_unknown_contact_id_is_not_found_and_nothing_is_stored():
    with pytest.raises(NotFound):
        transaction_intake(livemode=False, purchase=purchase(contact={"id": "0b0ca7e5-0000-4000-8000-000000000000"}))

    assert_nothing_stored()


def test_a_contact_of_the_other_mode_is_not_found():
    live_contact = ContactFactory(livemode=True)

    with pytest.raises(NotFound):
        transaction_intake(livemode=False, purchase=purchase(contact=live_contact))


@pytest.mark.parametrize(
    ("reference", "stored"),
    [
        ({"match_key": "070-111 22 33", "match_key_type": "mobile_phone"}, ("mobile_phone", "+46701112233", "")),
        ({"match_key": "Ana@Example.COM", "match_key_type": "email"}, ("email", "ana@example.com", "")),
        (
            {"match_key": "CARD-9", "match_key_type": "external_id", "source": "shopify"},
            ("external_id", "CARD-9", "shopify"),
        ),
    ],
)
def test_a_secondary_key_matching_nobody_is_kept_normalised_for_later(reference, stored):
    txn, response, _ = transaction_intake(livemode=False, purchase=purchase(contact=reference))

    assert txn.contact_id is None and response["contact_id"] is None
    assert (txn.match_key_type, txn.match_key, txn.match_source) == stored


def test_a_secondary_key_is_resolved_to_the_contact_when_it_matches(contact):
    txn, _, _ = transaction_intake(
        livemode=False, purchase=purchase(contact={"match_key": contact.email.upper(), "match_key_type": "email"})
    )

    assert txn.contact_id == contact.pk and txn.match_key == ""


# --- finalize ---------------------------------------------------------------------------------


def test_a_discount_naming_an_offer_locked_by_this_transaction_redeems_it(contact):
    issued, evaluation = locked_offer(contact=contact, transaction_id="T-1", lines=[("SKU0", 1000)])

    txn, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, lines=[("SKU0", 1000)], discounts=[(evaluation.discount, str(issued.pk))]),
    )

    issued.refresh_from_db()
    assert issued.status == IssuedOffer.Status.REDEEMED
    assert issued.redeemed_transaction_id == "T-1" and issued.redeemed_discount == evaluation.discount == 100
    assert response["redeemed_offers"] == [str(issued.pk)]
    assert txn.discounts.get().issued_offer_id == issued.pk
    assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 1


def test_a_finalized_purchase_sent_again_does_not_redeem_twice(contact):
    issued, evaluation = locked_offer(contact=contact, transaction_id="T-1")
    sent = purchase(contact=contact, discounts=[(evaluation.discount, str(issued.pk))])
    transaction_intake(livemode=False, purchase=sent)

    _, response, replayed = transaction_intake(livemode=False, purchase=sent)

    assert replayed is True and response["redeemed_offers"] == [str(issued.pk)]
    assert Offer.objects.get(pk=issued.offer_id).redeemed_count == 1
    assert issued.transitions.filter(action="redeem").count() == 1


def test_an_offer_locked_by_another_transaction_fails_the_whole_purchase_and_stores_nothing(contact):
    open_balance(contact, 5000)
    issued, evaluation = locked_offer(contact=contact, transaction_id="OTHER-TILL")

    with pytest.raises(OfferLocked) as error:
        transaction_intake(
            livemode=False,
            purchase=purchase(
                contact=contact,
                discounts=[(evaluation.discount, str(issued.pk))],
                spend={"amount": 300, "reduction": "front_end"},
            ),
        )

    assert error.value.parameters[0]["name"] == "discounts.0.issued_offer_id"
    assert_nothing_stored(issued)
    assert issued.status == IssuedOffer.Status.LOCKED and issued.locked_transaction_id == "OTHER-TILL"
    assert money_available(contact) == 5000


def test_an_expired_lock_fails_the_whole_purchase_and_stores_nothing(contact):
    open_balance(contact, 5000)
    issued, evaluation = locked_offer(contact=contact, transaction_id="T-1", ttl_seconds=60)

    with time_machine.travel(timezone.now() + timedelta(seconds=61)), pytest.raises(OfferNotAvailable):
        transaction_intake(
            livemode=False,
            purchase=purchase(
                contact=contact,
                discounts=[(evaluation.discount, str(issued.pk))],
                spend={"amount": 300, "reduction": "back_end"},
            ),
        )

    assert_nothing_stored(issued)
    assert money_available(contact) == 5000


def test_an_offer_that_was_never_locked_cannot_be_redeemed_by_a_discount(contact):
    issued = IssuedOfferFactory(contact=contact)

    with pytest.raises(OfferNotAvailable):
        transaction_intake(livemode=False, purchase=purchase(contact=contact, discounts=[(100, str(issued.pk))]))

    assert_nothing_stored(issued)


def test_an_issued_offer_of_another_contact_is_not_found(contact):
    issued, evaluation = locked_offer(contact=ContactFactory(), transaction_id="T-1")

    with pytest.raises(NotFound):
        transaction_intake(
            livemode=False, purchase=purchase(contact=contact, discounts=[(evaluation.discount, str(issued.pk))])
        )

    assert_nothing_stored(issued)


def test_after_a_refused_finalize_the_same_purchase_goes_through_once_locked_again(contact):
    issued, evaluation = locked_offer(contact=contact, transaction_id="T-1", ttl_seconds=60)
    sent = purchase(contact=contact, discounts=[(evaluation.discount, str(issued.pk))])
    with time_machine.travel(timezone.now() + timedelta(seconds=61)), pytest.raises(OfferNotAvailable):
        transaction_intake(livemode=False, purchase=sent)

    from offers.services.issued import issued_offer_lock

    issued_offer_lock(issued_offer_id=issued.pk, transaction_id="T-1", context=None)
    txn, _, replayed = transaction_intake(livemode=False, purchase=sent)

    assert replayed is False and txn.status == "queued"
    issued.refresh_from_db()
    assert issued.status == IssuedOffer.Status.REDEEMED


# --- spending ---------------------------------------------------------------------------------


def test_a_front_end_spend_is_approved_at_once_and_taken_from_the_wallet(contact):
    open_balance(contact, 5000)

    txn, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 500, "reduction": "front_end"}),
    )

    assert response["spend"]["approved"] == "5.00" and response["spend"]["payout_id"] is None
    assert (txn.spend_requested, txn.spend_approved, txn.spend_reduction) == (500, 500, "front_end")
    assert money_available(contact) == 4500
    entry = LedgerEntry.objects.get(source_type="transaction", source_id="T-1")
    assert (entry.kind, entry.amount) == ("spend", -500)
    assert not Payout.objects.exists()


def test_a_front_end_spend_is_capped_by_the_wallet(contact):
    open_balance(contact, 700)

    _, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 1500, "reduction": "front_end"}),
    )

    assert response["spend"]["requested"] == "15.00" and response["spend"]["approved"] == "7.00"
    assert money_available(contact) == 0


def test_a_spend_never_exceeds_what_is_left_to_pay_after_discounts(contact):
    open_balance(contact, 5000)

    txn, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(
            contact=contact,
            lines=[("A", 1000)],
            discounts=[(200, None)],
            spend={"amount": 5000, "reduction": "front_end"},
        ),
    )

    assert response["spend"]["approved"] == "8.00" and txn.spend_approved == 800


def test_a_back_end_spend_creates_a_pending_payout(contact):
    open_balance(contact, 5000)

    txn, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 1200, "reduction": "back_end"}),
    )

    payout = Payout.objects.get()
    assert (payout.status, payout.amount, payout.source_id, payout.contact_id) == ("pending", 1200, "T-1", contact.pk)
    assert response["spend"]["payout_id"] == str(payout.pk) and response["spend"]["approved"] == "12.00"
    assert txn.spend_reduction == "back_end"
    assert LedgerEntry.objects.get(source_id="T-1").kind == "payout"
    assert OutboxEvent.objects.filter(event_type="payout.requested").count() == 1


def test_spending_needs_a_known_contact(contact):
    open_balance(contact, 5000)
    unknown_key = {"match_key": "+46709999999", "match_key_type": "mobile_phone"}

    for reference in (None, unknown_key):
        with pytest.raises(ValidationError) as error:
            transaction_intake(
                livemode=False, purchase=purchase(contact=reference, spend={"amount": 100, "reduction": "front_end"})
            )
        assert error.value.parameters[0]["name"] == "spend"
    assert_nothing_stored()


def test_a_spend_with_the_right_otp_is_approved_when_the_program_requires_one(contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    open_balance(contact, 5000)
    token, code = spend_token_issue(contact=contact)

    _, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, spend={"amount": 400, "otp": code, "reduction": "front_end"}),
    )

    assert response["spend"]["approved"] == "4.00"
    token.refresh_from_db()
    assert token.used_at is not None


def test_a_spend_without_otp_is_refused_when_the_program_requires_one(contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    open_balance(contact, 5000)

    with pytest.raises(OtpRequired):
        transaction_intake(
            livemode=False, purchase=purchase(contact=contact, spend={"amount": 400, "reduction": "front_end"})
        )

    assert_nothing_stored()
    assert money_available(contact) == 5000


def test_a_wrong_otp_is_refused_costs_an_attempt_and_stores_nothing(contact):
    program = program_for(livemode=False)
    program.spend_requires_otp = True
    program.save()
    open_balance(contact, 5000)
    token, code = spend_token_issue(contact=contact)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    with pytest.raises(OtpInvalid):
        transaction_intake(
            livemode=False,
            purchase=purchase(contact=contact, spend={"amount": 400, "otp": wrong, "reduction": "front_end"}),
        )

    token.refresh_from_db()
    assert token.attempts == 1 and token.used_at is None
    assert_nothing_stored()
    assert money_available(contact) == 5000


def test_a_purchase_refused_for_its_discounts_does_not_use_up_a_right_otp(contact):
    open_balance(contact, 5000)
    token, code = spend_token_issue(contact=contact)

    with pytest.raises(ValidationError):
        transaction_intake(
            livemode=False,
            purchase=purchase(
                contact=contact,
                lines=[("A", 1000)],
                discounts=[(1500, None)],
                spend={"amount": 400, "otp": code, "reduction": "front_end"},
            ),
        )

    token.refresh_from_db()
    assert token.used_at is None and token.attempts == 0


def test_a_purchase_refused_at_finalize_does_not_use_up_a_right_otp(contact):
    open_balance(contact, 5000)
    issued, evaluation = locked_offer(contact=contact, transaction_id="OTHER-TILL")
    token, code = spend_token_issue(contact=contact)

    with pytest.raises(OfferLocked):
        transaction_intake(
            livemode=False,
            purchase=purchase(
                contact=contact,
                discounts=[(evaluation.discount, str(issued.pk))],
                spend={"amount": 400, "otp": code, "reduction": "front_end"},
            ),
        )

    assert SpendToken.objects.get(pk=token.pk).used_at is None
    assert_nothing_stored(issued)


def test_a_spend_in_a_basket_of_a_catalogued_family_uses_commerce_money_meant_for_that_family(contact):
    from catalogue.tests.factories import ProductFactory, ProductFamilyFactory
    from loyalty.models import SpendCondition, SpendConditionRestriction

    ProductFactory(sku="MILK", family=ProductFamilyFactory(code="dairy"))
    condition = SpendCondition.objects.create(livemode=False, name="Dairy only")
    SpendConditionRestriction.objects.create(condition=condition, kind="family", value="dairy")
    money_credit(
        contact=contact,
        kind=Account.Kind.COMMERCE,
        currency="EUR",
        amount=300,
        cause=Cause("system", "seed", "seed:commerce"),
        spend_condition=condition,
    )

    # The till sends the SKU only; the catalogue knows it is dairy.
    _, response, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, lines=[("MILK", 1000)], spend={"amount": 300, "reduction": "front_end"}),
    )

    assert response["spend"]["from_commerce"] == "3.00"


# --- auto-spend -------------------------------------------------------------------------------


def test_the_auto_spend_preference_spends_everything_when_no_spend_is_asked(contact):
    WalletPreference.objects.create(contact=contact, auto_spend=WalletPreference.AutoSpend.ALL)
    open_balance(contact, 700)

    txn, response, _ = transaction_intake(livemode=False, purchase=purchase(contact=contact, lines=[("A", 2000)]))

    assert response["spend"]["approved"] == "7.00"
    assert txn.spend_approved == 700 and txn.spend_reduction == "back_end"
    assert Payout.objects.get().amount == 700
    assert money_available(contact) == 0


def test_the_auto_spend_preference_keeps_the_threshold(contact):
    WalletPreference.objects.create(
        contact=contact, auto_spend=WalletPreference.AutoSpend.ABOVE_THRESHOLD, auto_spend_threshold=500
    )
    open_balance(contact, 1200)

    txn, _, _ = transaction_intake(livemode=False, purchase=purchase(contact=contact, lines=[("A", 2000)]))

    assert txn.spend_approved == 700
    assert money_available(contact) == 500


def test_no_auto_spend_preference_spends_nothing(contact):
    WalletPreference.objects.create(contact=contact, auto_spend=WalletPreference.AutoSpend.OFF)
    open_balance(contact, 1200)

    txn, response, _ = transaction_intake(livemode=False, purchase=purchase(contact=contact))

    assert response["spend"] is None and txn.spend_approved == 0
    assert money_available(contact) == 1200


def test_an_explicit_spend_wins_over_the_auto_spend_preference(contact):
    WalletPreference.objects.create(contact=contact, auto_spend=WalletPreference.AutoSpend.ALL)
    open_balance(contact, 1200)

    txn, _, _ = transaction_intake(
        livemode=False,
        purchase=purchase(contact=contact, lines=[("A", 2000)], spend={"amount": 300, "reduction": "front_end"}),
    )

    assert (txn.spend_approved, txn.spend_reduction) == (300, "front_end")
    assert money_available(contact) == 900
