import threading

import pytest
from django.db import connection

from catalogue.tests.factories import VenueFactory
from core.models import OutboxEvent
from loyalty.tests.factories import ContactFactory
from orders.models import Order, OrderCancellationReason
from transactions.models import Transaction

pytestmark = pytest.mark.django_db


def place(client, contact, venue, **extra):
    body = {
        "contact": {"id": str(contact.pk)},
        "venue": str(venue.pk),
        "currency": "EUR",
        "fulfilment": "pick_up",
        "lines": [{"sku": "LATTE", "quantity": 2, "unit_price": "3.50"}, {"sku": "BUN", "unit_price": "2.00"}],
        **extra,
    }
    return client.post("/api/v1/orders", body, format="json")


@pytest.fixture
def contact():
    return ContactFactory(livemode=False)


@pytest.fixture
def venue():
    return VenueFactory()


def test_a_placed_order_is_new_totalled_and_announced(client_test, contact, venue):
    response = place(client_test, contact, venue)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["amount"], len(body["lines"])) == ("new", "9.00", 2)
    assert OutboxEvent.objects.get(event_type="order.placed").payload["order_id"] == body["id"]
    listed = client_test.get("/api/v1/orders", {"status": "new", "venue": str(venue.pk)}).json()
    assert [order["id"] for order in listed["results"]] == [body["id"]]


def test_placing_is_idempotent_with_an_idempotency_key(client_test, contact, venue):
    body = {
        "contact": {"id": str(contact.pk)},
        "venue": str(venue.pk),
        "currency": "EUR",
        "lines": [{"sku": "LATTE", "unit_price": "3.50"}],
    }
    first = client_test.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    again = client_test.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.json() == again.json()
    assert Order.objects.count() == 1


def test_completing_an_order_creates_its_purchase(client_test, contact, venue, django_capture_on_commit_callbacks):
    order = place(client_test, contact, venue).json()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_test.put(f"/api/v1/orders/{order['id']}/actions", {"action": "complete"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "completed"
    purchase = Transaction.objects.get(external_id=f"order:{order['id']}")
    assert (purchase.contact_id, purchase.amount, purchase.status) == (contact.pk, 900, "processed")
    again = client_test.put(
        f"/api/v1/orders/{order['id']}/actions",
        {"action": "cancel", "cancellation_reason": "customer_request"},
        format="json",
    )
    assert again.status_code == 409 and again.json()["error"] == "ORDER_STATE_CONFLICT"


def test_cancelling_needs_a_known_reason(client_test, contact, venue):
    order = place(client_test, contact, venue).json()
    url = f"/api/v1/orders/{order['id']}/actions"
    missing = client_test.put(url, {"action": "cancel"}, format="json")
    assert missing.status_code == 400 and missing.json()["parameters"] == ["cancellation_reason"]
    unknown = client_test.put(url, {"action": "cancel", "cancellation_reason": "bored"}, format="json")
    assert unknown.status_code == 400
    reasons = client_test.get("/api/v1/order-cancellation-reasons").json()["results"]
    reason = next(r for r in reasons if r["code"] == "out_of_stock")
    done = client_test.put(url, {"action": "cancel", "cancellation_reason": reason["id"]}, format="json")
    assert done.status_code == 200
    assert done.json()["cancellation_reason"]["code"] == "out_of_stock"
    assert Order.objects.get(pk=order["id"]).history.count() == 2


def test_orders_of_another_mode_are_not_found(client_live, client_test, contact, venue):
    order = place(client_test, contact, venue).json()
    assert client_live.get(f"/api/v1/orders/{order['id']}").status_code == 404
    assert (
        client_live.put(f"/api/v1/orders/{order['id']}/actions", {"action": "complete"}, format="json").status_code
        == 404
    )


def test_bad_orders_are_refused_naming_the_field(client_test, contact, venue):
    empty = place(client_test, contact, venue, lines=[])
    assert empty.status_code == 400 and "lines" in empty.json()["parameters"]
    negative = place(client_test, contact, venue, lines=[{"sku": "X", "unit_price": "-1.00"}])
    assert negative.status_code == 400 and "lines.0.unit_price" in negative.json()["parameters"]
    bad_action = client_test.put(
        f"/api/v1/orders/{place(client_test, contact, venue).json()['id']}/actions",
        {"action": "teleport"},
        format="json",
    )
    assert bad_action.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_complete_and_cancel_racing_on_one_order_exactly_one_wins(make_client, django_capture_on_commit_callbacks):
    contact, venue = ContactFactory(livemode=False), VenueFactory()
    setup = make_client()
    clients = [make_client() for _ in range(10)]
    # The reasons a data migration seeded may have been flushed by an earlier transactional test.
    OrderCancellationReason.objects.get_or_create(livemode=False, code="customer_request", defaults={"name": "x"})
    for _round in range(3):
        order_id = place(setup, contact, venue).json()["id"]
        barrier = threading.Barrier(len(clients))
        results = []

        def act(client, index, order_id=order_id, barrier=barrier, results=results):
            barrier.wait()
            body = (
                {"action": "complete"} if index % 2 else {"action": "cancel", "cancellation_reason": "customer_request"}
            )
            response = client.put(f"/api/v1/orders/{order_id}/actions", body, format="json")
            results.append((body["action"], response.status_code))
            connection.close()

        threads = [threading.Thread(target=act, args=(client, index)) for index, client in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [result for result in results if result[1] == 200]
        assert len(winners) == 1, results
        assert all(status == 409 for _, status in results if (_, status) not in winners)
        order = Order.objects.get(pk=order_id)
        assert order.status == ("completed" if winners[0][0] == "complete" else "cancelled")
        assert order.history.count() == 2
        assert Transaction.objects.filter(external_id=f"order:{order_id}").count() == (order.status == "completed")
