"""An order agent's day in a real browser (Playwright driving the system's Chromium): log in,
complete one order, cancel another with a reason."""

import os
import shutil

import pytest
from django.contrib.auth.models import Group, Permission, User

from catalogue.tests.factories import VenueFactory
from core.baskets import BasketLine
from loyalty.tests.factories import ContactFactory
from orders.models import Order, OrderAgent, OrderCancellationReason
from orders.services import order_place

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


@pytest.fixture
def browser_page():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1":
            pytest.fail("Chromium is needed for the browser tests (apt-get install chromium)")
        pytest.skip("Chromium is not installed")
    playwright_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        finally:
            browser.close()


def _order(contact, venue, sku):
    return order_place(
        contact=contact, venue=venue, currency="EUR", lines=[BasketLine(sku=sku, amount=450, unit_price=450)]
    )


@pytest.mark.django_db(transaction=True)
def test_an_agent_completes_one_order_and_cancels_another_with_a_reason(live_server, browser_page, tmp_path):
    venue, other_venue = VenueFactory(name="Aurora Södermalm"), VenueFactory(name="Elsewhere")
    contact = ContactFactory(livemode=False, first_name="Astrid")
    reason, _ = OrderCancellationReason.objects.get_or_create(
        livemode=False, code="out_of_stock", defaults={"name": "An item is out of stock"}
    )
    agent = User.objects.create_user("agent", password="agent-pass-1", is_staff=True)
    agent.groups.add(Group.objects.get_or_create(name="Order agents")[0])
    agent.user_permissions.add(*Permission.objects.filter(codename__in=["view_order", "change_order"]))
    OrderAgent.objects.create(user=agent).venues.add(venue)
    latte = _order(contact, venue, "LATTE")
    bun = _order(contact, venue, "BUN")
    elsewhere = _order(contact, other_venue, "TEA")
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "agent-pass-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/admin/orders/order/")
    queue = page.content()
    assert "LATTE" in queue and "BUN" in queue
    assert "TEA" not in queue  # another venue's order is not in this agent's queue
    page.screenshot(path=str(tmp_path / "1-queue.png"))

    page.goto(f"{live_server.url}/admin/orders/order/{latte.pk}/change/")
    page.locator(f'a[href$="/order/{latte.pk}/complete/"]').first.click()
    page.wait_for_load_state()
    page.screenshot(path=str(tmp_path / "2-completed.png"))

    page.goto(f"{live_server.url}/admin/orders/order/{bun.pk}/change/")
    page.locator(f'a[href$="/order/{bun.pk}/cancel/"]').first.click()
    page.select_option("#id_reason", str(reason.pk))
    page.fill("#id_note", "Oven broke down")
    page.locator("#cancel-order-form button[type=submit]").click()
    page.wait_for_load_state()
    page.screenshot(path=str(tmp_path / "3-cancelled.png"))

    latte.refresh_from_db()
    bun.refresh_from_db()
    elsewhere.refresh_from_db()
    assert latte.status == Order.Status.COMPLETED and latte.transaction is not None
    assert bun.status == Order.Status.CANCELLED and bun.cancellation_reason == reason
    assert bun.history.last().note == "Oven broke down"
    assert elsewhere.status == Order.Status.NEW
    # Agents see orders, not marketing configuration.
    page.goto(f"{live_server.url}/admin/offers/offer/")
    assert "403" in page.title() or "Forbidden" in page.content() or "permission" in page.content().lower()
