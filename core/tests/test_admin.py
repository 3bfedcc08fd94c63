"""Admin smoke tests for the platform kernel: API keys are issued in the admin and shown once."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from core.models import ApiKey
from core.services import api_key_create

pytestmark = pytest.mark.django_db

KEY_IN_TEXT = re.compile(r"lk_(?:live|test)_[A-Za-z0-9]{12}\.[A-Za-z0-9]{40}")
CHANGELIST = "/admin/core/apikey/"
ADD = "/admin/core/apikey/add/"


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="root", email="root@example.com", password="x" * 20)


@pytest.fixture
def admin_client_logged_in(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def add_key(client, **fields):
    data = {"name": "Web shop", "scopes": ["integration"], "expiry_date_0": "", "expiry_date_1": "", "_save": "Save"}
    data.update(fields)
    return client.post(ADD, data, follow=True)


def test_superuser_can_load_the_admin_index(admin_client_logged_in):
    response = admin_client_logged_in.get("/admin/")

    assert response.status_code == 200
    assert CHANGELIST.encode() in response.content


def test_anonymous_visitor_is_sent_to_the_login_page(client):
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_superuser_can_load_the_api_key_changelist_and_add_page(admin_client_logged_in):
    api_key, _ = api_key_create(name="Listed till", livemode=True)

    changelist = admin_client_logged_in.get(CHANGELIST)
    add_page = admin_client_logged_in.get(ADD)

    assert changelist.status_code == 200
    assert b"Listed till" in changelist.content
    assert api_key.prefix.encode() in changelist.content
    assert add_page.status_code == 200
    assert b'name="scopes"' in add_page.content


def test_superuser_can_load_an_api_key_change_page_without_the_hash(admin_client_logged_in):
    api_key, _ = api_key_create(name="Till", livemode=False)

    response = admin_client_logged_in.get(f"{CHANGELIST}{api_key.pk}/change/")

    assert response.status_code == 200
    assert api_key.hashed_key.encode() not in response.content


def test_key_created_in_the_admin_is_shown_once_and_stored_only_as_a_hash(admin_client_logged_in, superuser):
    response = add_key(admin_client_logged_in, name="Web shop", livemode="on", scopes=["integration", "management"])

    assert response.status_code == 200
    shown = [KEY_IN_TEXT.search(str(message)) for message in response.context["messages"]]
    raw_keys = {match.group(0) for match in shown if match}
    assert len(raw_keys) == 1
    (raw_key,) = raw_keys
    assert raw_key.startswith("lk_live_")

    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.livemode, api_key.scopes) == ("Web shop", True, ["integration", "management"])
    assert api_key.created_by == superuser
    assert api_key.pk == raw_key.partition(".")[0]
    secret = raw_key.partition(".")[2]
    assert all(secret not in str(value) for value in ApiKey.objects.values().get().values())

    # Shown once: the next page does not repeat it.
    assert raw_key.encode() not in admin_client_logged_in.get(CHANGELIST).content
    assert raw_key.encode() not in admin_client_logged_in.get(f"{CHANGELIST}{api_key.pk}/change/").content


def test_key_created_in_the_admin_authenticates_with_its_mode_and_scopes(admin_client_logged_in):
    response = add_key(admin_client_logged_in, name="POS", scopes=["integration"])
    raw_key = next(
        match.group(0) for message in response.context["messages"] if (match := KEY_IN_TEXT.search(str(message)))
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")

    assert raw_key.startswith("lk_test_")
    created = api.post("/api/v1/contacts", {"first_name": "Ana"}, format="json")
    assert created.status_code == 201
    assert created.json()["livemode"] is False
    assert api.get("/api/v1/merchants").status_code == 403


def test_admin_refuses_a_key_without_scopes(admin_client_logged_in):
    response = admin_client_logged_in.post(
        ADD, {"name": "No scopes", "expiry_date_0": "", "expiry_date_1": "", "_save": "Save"}
    )

    assert response.status_code == 200  # the form again, with its error
    assert ApiKey.objects.count() == 0
    assert not [message for message in get_messages(response.wsgi_request) if KEY_IN_TEXT.search(str(message))]


def test_editing_a_key_keeps_its_mode_and_scopes(admin_client_logged_in):
    api_key, raw_key = api_key_create(name="Till", livemode=False, scopes=("integration",))

    admin_client_logged_in.post(
        f"{CHANGELIST}{api_key.pk}/change/",
        {
            "name": "Till renamed",
            "livemode": "on",
            "scopes": ["integration", "management"],
            "expiry_date_0": "",
            "expiry_date_1": "",
            "_save": "Save",
        },
    )

    api_key.refresh_from_db()
    assert api_key.name == "Till renamed"
    assert (api_key.livemode, api_key.scopes) == (False, ["integration"])
    assert api_key.is_valid(raw_key)


def test_revoke_action_revokes_the_selected_keys(admin_client_logged_in):
    revoked, revoked_raw_key = api_key_create(name="Lost till", livemode=False)
    kept, kept_raw_key = api_key_create(name="Kept till", livemode=False)

    response = admin_client_logged_in.post(
        CHANGELIST, {"action": "revoke_keys", "_selected_action": [revoked.pk]}, follow=True
    )

    assert response.status_code == 200
    assert ApiKey.objects.get(pk=revoked.pk).revoked is True
    assert ApiKey.objects.get(pk=kept.pk).revoked is False
    api = APIClient()
    assert api.get("/api/v1/contacts", HTTP_AUTHORIZATION=f"Api-Key {revoked_raw_key}").status_code == 401
    assert api.get("/api/v1/contacts", HTTP_AUTHORIZATION=f"Api-Key {kept_raw_key}").status_code == 200


def test_integration_admin_can_issue_keys_in_the_admin(django_user_model):
    from django.contrib.auth.models import Group

    staff = django_user_model.objects.create_user(username="integrator", is_staff=True)
    staff.groups.add(Group.objects.get(name="Integration admins"))
    client = Client()
    client.force_login(staff)

    assert client.get(CHANGELIST).status_code == 200
    response = add_key(client, name="From integration admin")
    assert response.status_code == 200
    assert ApiKey.objects.filter(name="From integration admin", created_by=staff).exists()


def test_order_agent_cannot_see_api_keys_in_the_admin(django_user_model):
    from django.contrib.auth.models import Group

    staff = django_user_model.objects.create_user(username="agent", is_staff=True)
    staff.groups.add(Group.objects.get(name="Order agents"))
    client = Client()
    client.force_login(staff)

    assert client.get(CHANGELIST).status_code == 403
    assert client.get(ADD).status_code == 403
