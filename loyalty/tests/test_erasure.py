"""GDPR erasure (DELETE /contacts/{id} and the admin action): personal data and identifiers go,
the ledger stays with the anonymous contact, open offer locks are released, the erasure is
audited and announced, and a repeat changes nothing."""

from __future__ import annotations

from datetime import date

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from core.models import OutboxEvent
from loyalty.models import Account, Contact, ContactErasure, ContactExternalId, LedgerEntry
from loyalty.services.erasure import CONTACT_ERASED_HOOKS, contact_erase
from loyalty.services.ledger import Cause
from loyalty.services.wallets import points_earn, spend_token_issue
from loyalty.tests.factories import ContactExternalIdFactory, ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact():
    contact = ContactFactory(
        livemode=False,
        first_name="Ana",
        last_name="Lind",
        email="ana.lind@example.com",
        mobile_phone="+46707234567",
        birth_date=date(1990, 5, 17),
        email_consent=True,
        sms_consent=True,
        attributes={"favourite_store": "Gamla stan"},
    )
    ContactExternalIdFactory(contact=contact, source="pos", value="POS-42")
    return contact


def earn(contact, points=120, key="seed-1"):
    return points_earn(contact=contact, points=points, cause=Cause("system", key, key))


def test_erasure_removes_every_personal_field_and_identifier(contact):
    member_number = contact.member_number

    contact_erase(contact=contact, erased_by="user:dpo")

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ERASED
    assert (contact.first_name, contact.last_name, contact.birth_date) == ("", "", None)
    assert (contact.email, contact.mobile_phone, contact.attributes) == (None, None, {})
    assert (contact.email_consent, contact.sms_consent) == (False, False)
    assert not ContactExternalId.objects.filter(contact=contact).exists()
    assert contact.member_number != member_number
    assert contact.member_number.startswith("erased-")
    assert len(contact.member_number) <= Contact._meta.get_field("member_number").max_length


def test_two_erased_contacts_get_distinct_tombstone_member_numbers(contact):
    other = ContactFactory(livemode=False)

    contact_erase(contact=contact, erased_by="user:dpo")
    contact_erase(contact=other, erased_by="user:dpo")

    contact.refresh_from_db()
    other.refresh_from_db()
    assert contact.member_number != other.member_number


def test_erasure_keeps_the_ledger_and_the_balance_with_the_anonymous_contact(contact):
    earn(contact, 120)
    entries_before = LedgerEntry.objects.filter(contact=contact).count()

    contact_erase(contact=contact, erased_by="user:dpo")

    assert LedgerEntry.objects.filter(contact=contact).count() == entries_before
    assert Account.objects.get(contact=contact, kind="points").balance == 120


def test_erasure_deletes_spend_tokens(contact):
    spend_token_issue(contact=contact)

    contact_erase(contact=contact, erased_by="user:dpo")

    assert not contact.spend_tokens.exists()


def test_erasure_is_audited_without_personal_data_and_announced_with_the_id_only(contact):
    contact_erase(contact=contact, erased_by="api-key:lk_test_abc")

    erasure = ContactErasure.objects.get(contact=contact)
    assert erasure.erased_by == "api-key:lk_test_abc"
    assert erasure.livemode is False
    event = OutboxEvent.objects.get(event_type="contact.erased")
    assert event.payload == {"id": str(contact.pk)}
    assert event.livemode is False


def test_erasing_an_erased_contact_changes_nothing(contact):
    contact_erase(contact=contact, erased_by="user:dpo")
    contact.refresh_from_db()
    tombstone = contact.member_number

    contact_erase(contact=contact, erased_by="user:someone-else")

    contact.refresh_from_db()
    assert contact.member_number == tombstone
    assert ContactErasure.objects.filter(contact=contact).count() == 1
    assert ContactErasure.objects.get(contact=contact).erased_by == "user:dpo"
    assert OutboxEvent.objects.filter(event_type="contact.erased").count() == 1


def test_the_upper_apps_register_their_erasure_hooks():
    names = {name for hook in CONTACT_ERASED_HOOKS for name in hook.__code__.co_freevars + hook.__code__.co_names}
    assert {"contact_offer_locks_release", "contact_transactions_anonymise", "contact_orders_anonymise"} <= names


def test_erasure_releases_the_contacts_open_offer_locks(contact):
    from offers.models import IssuedOffer
    from transactions.tests.factories import locked_offer

    issued, _ = locked_offer(contact=contact, transaction_id="T-9")
    assert IssuedOffer.objects.get(pk=issued.pk).status == IssuedOffer.Status.LOCKED

    contact_erase(contact=contact, erased_by="user:dpo")

    issued.refresh_from_db()
    assert issued.status == IssuedOffer.Status.AVAILABLE
    assert issued.transitions.last().action == "unlock"


def test_erasure_forgets_the_identifier_a_purchase_named_the_contact_by(contact):
    from transactions.models import Transaction

    txn = Transaction.objects.create(
        livemode=False,
        external_id="T-1",
        fingerprint="f",
        status=Transaction.Status.PROCESSED,
        contact=contact,
        match_key_type="mobile_phone",
        match_key=contact.mobile_phone,
        occurred_at="2026-01-01T12:00:00Z",
        currency="EUR",
        amount=1000,
    )

    contact_erase(contact=contact, erased_by="user:dpo")

    txn.refresh_from_db()
    assert (txn.match_key, txn.amount, txn.contact_id) == ("", 1000, contact.pk)


# --- DELETE /contacts/{id} --------------------------------------------------------------------


def test_delete_erases_the_contact_and_answers_200_with_id_and_status(client_test, contact):
    response = client_test.delete(f"/api/v1/contacts/{contact.pk}")

    assert response.status_code == 200, response.json()
    assert response.json() == {"id": str(contact.pk), "status": "erased"}
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ERASED
    assert ContactErasure.objects.get(contact=contact).erased_by == f"api-key:{client_test.api_key.prefix}"


def test_a_repeated_delete_answers_the_same_200(client_test, contact):
    first = client_test.delete(f"/api/v1/contacts/{contact.pk}")
    second = client_test.delete(f"/api/v1/contacts/{contact.pk}")

    assert second.status_code == 200
    assert second.json() == first.json()


def test_an_erased_contact_can_no_longer_be_found_by_its_old_identifiers(client_test, contact):
    client_test.delete(f"/api/v1/contacts/{contact.pk}")

    by_phone = client_test.get("/api/v1/contacts", {"match_key": "+46707234567", "match_key_type": "mobile_phone"})
    by_external_id = client_test.get("/api/v1/contacts", {"match_key": "POS-42", "match_key_type": "external_id"})

    assert by_phone.status_code == 404
    assert by_external_id.status_code == 404


def test_deleting_a_contact_of_the_other_mode_is_404_and_erases_nothing(client_live, contact):
    response = client_live.delete(f"/api/v1/contacts/{contact.pk}")

    assert response.status_code == 404
    assert response.json()["error"] == "NOT_FOUND"
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


# --- the admin action -------------------------------------------------------------------------


@pytest.fixture
def marketer(django_user_model):
    user = django_user_model.objects.create_user("marketer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


def test_no_staff_group_may_erase_by_default():
    assert not Group.objects.filter(permissions__codename="erase_contact").exists()


def test_a_superuser_erases_a_contact_from_its_page_and_the_erasure_names_them(client, admin_user, contact):
    client.force_login(admin_user)
    url = reverse("admin:loyalty_contact_erase_contact", args=[contact.pk])

    assert client.get(url).status_code == 200
    response = client.post(url)

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ERASED
    assert ContactErasure.objects.get(contact=contact).erased_by == f"user:{admin_user.username}"


def test_staff_without_the_erase_permission_cannot_erase(client, marketer, contact):
    client.force_login(marketer)

    response = client.post(reverse("admin:loyalty_contact_erase_contact", args=[contact.pk]))

    assert response.status_code == 403
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE


def test_staff_given_the_erase_permission_can_erase(client, marketer, contact):
    marketer.user_permissions.add(Permission.objects.get(codename="erase_contact"))
    client.force_login(marketer)

    response = client.post(reverse("admin:loyalty_contact_erase_contact", args=[contact.pk]))

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ERASED
