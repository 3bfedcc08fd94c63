import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from loyalty.models import LedgerEntry
from loyalty.services.earning import BasketLine
from loyalty.services.ledger import Cause
from loyalty.services.wallets import money_credit, points_earn, wallet_spend
from loyalty.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(django_user_model):
    user = django_user_model.objects.create_user("marketer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


@pytest.fixture
def agent(django_user_model):
    user = django_user_model.objects.create_user("agent", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Order agents"))
    return user


def test_marketer_posts_a_manual_adjustment_with_a_reason_recorded_with_their_user(client, marketer):
    contact = ContactFactory()
    client.force_login(marketer)
    url = reverse("admin:loyalty_contact_adjust_balance", args=[contact.pk])
    page = client.get(url)
    assert page.status_code == 200
    missing_reason = client.post(url, {"account": "points", "amount": "50", "reason": ""})
    assert missing_reason.status_code == 200
    assert not LedgerEntry.objects.filter(contact=contact).exists()
    response = client.post(url, {"account": "points", "amount": "50", "reason": "Goodwill: late delivery"})
    assert response.status_code == 302
    entry = LedgerEntry.objects.get(contact=contact)
    assert (entry.kind, entry.amount, entry.created_by, entry.reason) == (
        "adjust",
        50,
        marketer,
        "Goodwill: late delivery",
    )


def test_debit_adjustment_beyond_the_balance_is_refused_on_the_form(client, marketer):
    contact = ContactFactory()
    client.force_login(marketer)
    url = reverse("admin:loyalty_contact_adjust_balance", args=[contact.pk])
    response = client.post(url, {"account": "open", "currency": "EUR", "amount": "-5.00", "reason": "Fix"})
    assert response.status_code == 200
    assert b"available" in response.content
    assert not LedgerEntry.objects.filter(contact=contact).exists()


def test_order_agents_can_neither_adjust_nor_see_the_liability_report(client, agent):
    contact = ContactFactory()
    client.force_login(agent)
    adjust = client.post(
        reverse("admin:loyalty_contact_adjust_balance", args=[contact.pk]),
        {"account": "points", "amount": "50", "reason": "x"},
    )
    assert adjust.status_code in (302, 403)
    assert not LedgerEntry.objects.filter(contact=contact).exists()
    assert client.get(reverse("admin:loyalty_liability")).status_code == 403


def test_liability_report_shows_outstanding_points_and_money(client, marketer):
    contact = ContactFactory(livemode=True)
    points_earn(contact=contact, points=1234, cause=Cause("transaction", "t", "t"))
    money_credit(contact=contact, kind="open", currency="EUR", amount=999, cause=Cause("campaign", "c", "c"))
    client.force_login(marketer)
    response = client.get(reverse("admin:loyalty_liability"))
    assert response.status_code == 200
    content = response.content.decode()
    assert "1,234" in content and "9.99 EUR" in content
    assert "Earned" in content  # the chart's datasets


def test_ledger_is_read_only_in_the_admin(client, admin_user):
    contact = ContactFactory()
    entry = points_earn(contact=contact, points=10, cause=Cause("transaction", "t", "t"))
    client.force_login(admin_user)
    assert client.get(reverse("admin:loyalty_ledgerentry_changelist")).status_code == 200
    assert client.get(reverse("admin:loyalty_ledgerentry_change", args=[entry.pk])).status_code == 200
    assert client.post(reverse("admin:loyalty_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_marking_a_payout_failed_in_the_admin_returns_the_money(client, admin_user):
    contact = ContactFactory()
    money_credit(contact=contact, kind="open", currency="EUR", amount=1000, cause=Cause("campaign", "c", "c"))
    payout = wallet_spend(
        contact=contact,
        currency="EUR",
        amount=400,
        lines=[BasketLine(sku="A", amount=5000)],
        cause=Cause("transaction", "p", "p"),
        reduction="back_end",
    ).payout
    client.force_login(admin_user)
    client.post(reverse("admin:loyalty_payout_changelist"), {"action": "mark_failed", "_selected_action": [payout.pk]})
    payout.refresh_from_db()
    assert payout.status == "failed"
    assert contact.accounts.get(kind="open").balance == 1000
