"""Mode isolation at the key level: test keys see test data only, live keys live data only."""

from __future__ import annotations

import pytest

from core.tests.assertions import assert_error_body

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts"


def identify_by_email(client, email):
    return client.get(CONTACTS, {"match_key": email, "match_key_type": "email"})


def test_contact_created_with_a_test_key_is_invisible_to_a_live_key(client_test, client_live):
    created = client_test.post(CONTACTS, {"first_name": "Ana", "email": "ana@example.com"}, format="json")
    assert created.status_code == 201
    contact = created.json()
    assert contact["livemode"] is False

    assert_error_body(client_live.get(f"{CONTACTS}/{contact['id']}"), 404, "NOT_FOUND", ["id", contact["id"]])
    assert_error_body(
        identify_by_email(client_live, "ana@example.com"),
        404,
        "NOT_FOUND",
        ["match_key", "ana@example.com", "match_key_type", "email"],
    )
    assert client_live.get(CONTACTS).json()["results"] == []
    assert_error_body(
        client_live.patch(f"{CONTACTS}/{contact['id']}", {"first_name": "Eve"}, format="json"), 404, "NOT_FOUND"
    )

    assert client_test.get(f"{CONTACTS}/{contact['id']}").json()["first_name"] == "Ana"
    assert identify_by_email(client_test, "ANA@example.com").json()["results"][0]["id"] == contact["id"]


def test_contact_created_with_a_live_key_is_invisible_to_a_test_key(client_test, client_live):
    created = client_live.post(CONTACTS, {"first_name": "Bo", "email": "bo@example.com"}, format="json")
    assert created.status_code == 201
    contact = created.json()
    assert contact["livemode"] is True

    assert_error_body(client_test.get(f"{CONTACTS}/{contact['id']}"), 404, "NOT_FOUND")
    assert_error_body(identify_by_email(client_test, "bo@example.com"), 404, "NOT_FOUND")
    assert client_test.get(CONTACTS).json()["results"] == []

    assert client_live.get(f"{CONTACTS}/{contact['id']}").status_code == 200
    assert identify_by_email(client_live, "bo@example.com").json()["results"][0]["id"] == contact["id"]


def test_the_same_email_can_be_registered_once_in_each_mode(client_test, client_live):
    in_test = client_test.post(CONTACTS, {"email": "same@example.com"}, format="json")
    in_live = client_live.post(CONTACTS, {"email": "same@example.com"}, format="json")

    assert in_test.status_code == in_live.status_code == 201
    assert identify_by_email(client_test, "same@example.com").json()["results"][0]["id"] == in_test.json()["id"]
    assert identify_by_email(client_live, "same@example.com").json()["results"][0]["id"] == in_live.json()["id"]


def test_mode_comes_from_the_key_and_cannot_be_chosen_in_the_body(client_test):
    response = client_test.post(CONTACTS, {"first_name": "Ana", "livemode": True}, format="json")

    assert_error_body(response, 400, "VALIDATION_ERROR")


def test_management_data_is_isolated_by_mode_too(make_client):
    test_management = make_client(livemode=False, scopes=("management",))
    live_management = make_client(livemode=True, scopes=("management",))
    merchant = test_management.post("/api/v1/merchants", {"number": "M1", "name": "Shop"}, format="json").json()
    assert merchant["livemode"] is False

    assert_error_body(live_management.get(f"/api/v1/merchants/{merchant['id']}"), 404, "NOT_FOUND")
    assert live_management.get("/api/v1/merchants").json()["results"] == []
    assert test_management.get(f"/api/v1/merchants/{merchant['id']}").status_code == 200
