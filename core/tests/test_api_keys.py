"""API keys: the prefix tells the mode, only a hash is stored, use is recorded, scopes are checked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from core import services
from core.exceptions import ValidationError
from core.models import ApiKey
from core.tests.assertions import assert_error_body

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts"
KEY_PATTERN = re.compile(r"^lk_(live|test)_[A-Za-z0-9]{12}\.[A-Za-z0-9]{40}$")


def test_live_key_starts_with_lk_live_and_is_a_live_key():
    api_key, raw_key = services.api_key_create(name="till", livemode=True)

    assert raw_key.startswith("lk_live_")
    assert KEY_PATTERN.match(raw_key)
    assert api_key.livemode is True
    assert api_key.mode == "live"
    assert api_key.prefix == api_key.pk == raw_key.partition(".")[0]


def test_test_key_starts_with_lk_test_and_is_a_test_key():
    api_key, raw_key = services.api_key_create(name="till", livemode=False)

    assert raw_key.startswith("lk_test_")
    assert KEY_PATTERN.match(raw_key)
    assert api_key.livemode is False
    assert api_key.mode == "test"


def test_every_key_is_different():
    raw_keys = {services.api_key_create(name=f"till {index}", livemode=False)[1] for index in range(5)}

    assert len(raw_keys) == 5
    assert len({raw_key.partition(".")[0] for raw_key in raw_keys}) == 5


def test_only_a_hash_of_the_key_is_stored():
    api_key, raw_key = services.api_key_create(name="till", livemode=True, scopes=("integration", "management"))
    secret = raw_key.partition(".")[2]

    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert row["hashed_key"] and row["hashed_key"] != raw_key
    for column, value in row.items():
        assert raw_key not in str(value), column
        assert secret not in str(value), column
    # And not in any column as the database holds it either (JSON, text or otherwise).
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT row_to_json(t)::text FROM {ApiKey._meta.db_table} t WHERE id = %s", [api_key.pk])
        (row_text,) = cursor.fetchone()
    assert secret not in row_text


def test_stored_hash_verifies_the_key_and_nothing_else():
    api_key, raw_key = services.api_key_create(name="till", livemode=False)

    assert api_key.is_valid(raw_key)
    assert not api_key.is_valid(raw_key[:-1] + ("a" if raw_key[-1] != "a" else "b"))
    assert ApiKey.objects.get_from_key(raw_key) == api_key


def test_last_used_at_is_set_after_a_request(client_test):
    assert ApiKey.objects.get(pk=client_test.api_key.pk).last_used_at is None

    assert client_test.get(CONTACTS).status_code == 200

    assert ApiKey.objects.get(pk=client_test.api_key.pk).last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(client_test, time_machine, settings):
    start = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)
    time_machine.move_to(start, tick=False)
    client_test.get(CONTACTS)

    time_machine.move_to(start + settings.API_KEY_LAST_USED_RESOLUTION / 2, tick=False)
    client_test.get(CONTACTS)
    assert ApiKey.objects.get(pk=client_test.api_key.pk).last_used_at == start

    later = start + settings.API_KEY_LAST_USED_RESOLUTION + timedelta(seconds=1)
    time_machine.move_to(later, tick=False)
    client_test.get(CONTACTS)
    assert ApiKey.objects.get(pk=client_test.api_key.pk).last_used_at == later


def test_a_rejected_key_does_not_count_as_used(client, client_test):
    prefix = client_test.raw_key.partition(".")[0]

    client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {prefix}.{'x' * 40}")

    assert ApiKey.objects.get(pk=client_test.api_key.pk).last_used_at is None


def test_revoked_key_does_not_count_as_used(client_test):
    services.api_key_revoke(api_key=client_test.api_key)

    assert_error_body(client_test.get(CONTACTS), 401, "AUTHENTICATION_FAILED")
    assert ApiKey.objects.get(pk=client_test.api_key.pk).last_used_at is None


def test_revoking_twice_is_harmless(client_test):
    services.api_key_revoke(api_key=client_test.api_key)
    services.api_key_revoke(api_key=client_test.api_key)

    assert ApiKey.objects.get(pk=client_test.api_key.pk).revoked is True


def test_revoking_one_key_leaves_the_others_working(make_client):
    revoked = make_client(name="lost till")
    kept = make_client(name="kept till")

    services.api_key_revoke(api_key=revoked.api_key)

    assert revoked.get(CONTACTS).status_code == 401
    assert kept.get(CONTACTS).status_code == 200


def test_scopes_are_stored_sorted_without_duplicates():
    api_key, _ = services.api_key_create(name="x", livemode=False, scopes=["management", "integration", "management"])

    assert ApiKey.objects.get(pk=api_key.pk).scopes == ["integration", "management"]


def test_default_scope_is_integration_only():
    api_key, _ = services.api_key_create(name="x", livemode=False)

    assert api_key.scopes == ["integration"]
    assert api_key.has_scope("integration")
    assert not api_key.has_scope("management")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"name": "x", "scopes": ["admin"]}, "scopes"),
        ({"name": "x", "scopes": ["integration", "superuser"]}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "   "}, "name"),
    ],
)
def test_key_with_an_unknown_scope_no_scope_or_no_name_is_refused(arguments, field):
    with pytest.raises(ValidationError) as raised:
        services.api_key_create(livemode=False, **arguments)

    assert raised.value.parameters[0]["name"] == field
    assert ApiKey.objects.count() == 0


def test_request_principal_is_the_key_not_a_user(client_test):
    """Views see the key on request.auth; a key is never mistaken for a staff user."""
    from rest_framework.test import APIRequestFactory

    from core.api.authentication import ApiKeyAuthentication, ApiKeyPrincipal

    request = APIRequestFactory().get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {client_test.raw_key}")
    principal, auth = ApiKeyAuthentication().authenticate(request)

    assert isinstance(principal, ApiKeyPrincipal)
    assert auth == client_test.api_key
    assert principal.is_authenticated and not principal.is_staff and not principal.is_superuser


# --- the per-process key cache ----------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The key cache's clock (time.monotonic in core.selectors), moved by hand."""
    import core.selectors

    class Clock:
        now = 1000.0

        def monotonic(self) -> float:
            return self.now

    fake = Clock()
    monkeypatch.setattr(core.selectors, "time", fake)
    return fake


def test_a_used_key_is_not_read_from_the_database_again_within_the_cache_window(
    client_test, django_assert_num_queries, clock
):
    client_test.get(CONTACTS)  # reads the key and writes its last-used time

    with django_assert_num_queries(1):  # the contact list only
        assert client_test.get(CONTACTS).status_code == 200


def test_a_key_revoked_in_this_process_is_refused_at_once(client_test, clock):
    assert client_test.get(CONTACTS).status_code == 200

    services.api_key_revoke(api_key=ApiKey.objects.get(pk=client_test.api_key.pk))

    assert_error_body(client_test.get(CONTACTS), 401, "AUTHENTICATION_FAILED")


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_window(client_test, clock):
    from core.selectors import API_KEY_CACHE_SECONDS

    assert client_test.get(CONTACTS).status_code == 200
    ApiKey.objects.filter(pk=client_test.api_key.pk).update(revoked=True)  # as another process would

    clock.now += API_KEY_CACHE_SECONDS - 1
    assert client_test.get(CONTACTS).status_code == 200  # still the cached row: the documented window
    clock.now += 2

    assert_error_body(client_test.get(CONTACTS), 401, "AUTHENTICATION_FAILED")


def test_a_cached_key_still_checks_the_secret_and_the_expiry(client, client_test, clock, time_machine):
    assert client_test.get(CONTACTS).status_code == 200
    prefix = client_test.raw_key.partition(".")[0]

    wrong_secret = client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {prefix}.{'x' * 40}")
    assert_error_body(wrong_secret, 401, "AUTHENTICATION_FAILED")

    api_key = ApiKey.objects.get(pk=client_test.api_key.pk)
    api_key.expiry_date = datetime(2030, 1, 1, tzinfo=UTC)
    api_key.save(update_fields=["expiry_date"])  # an admin edit: forgets the cached row here
    time_machine.move_to(datetime(2030, 1, 2, tzinfo=UTC), tick=False)

    assert_error_body(client_test.get(CONTACTS), 401, "AUTHENTICATION_FAILED")


def test_an_unknown_key_is_not_cached_so_a_key_created_elsewhere_works_at_once(client, clock):
    from core.selectors import api_key_by_prefix

    assert api_key_by_prefix("lk_test_doesnotexist") is None
    api_key, raw_key = services.api_key_create(name="new till", livemode=False)

    assert api_key_by_prefix(api_key.prefix) == api_key
    assert client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {raw_key}").status_code == 200
