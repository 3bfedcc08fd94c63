"""`python manage.py create_api_key`: prints the new key, alone, on stdout."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from core.models import ApiKey

pytestmark = pytest.mark.django_db


def create_api_key(*arguments):
    stdout, stderr = StringIO(), StringIO()
    call_command("create_api_key", *arguments, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def client_with(raw_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


def test_command_prints_exactly_the_key_on_stdout():
    stdout, _stderr = create_api_key("--name", "X", "--mode", "test", "--scopes", "integration,management")

    lines = stdout.splitlines()
    assert len(lines) == 1
    raw_key = lines[0]
    assert raw_key.startswith("lk_test_")
    assert stdout == raw_key + "\n"
    api_key = ApiKey.objects.get()
    assert api_key.pk == raw_key.partition(".")[0]
    assert (api_key.name, api_key.livemode, api_key.scopes) == ("X", False, ["integration", "management"])


def test_printed_key_authenticates_with_the_scopes_asked_for():
    stdout, _stderr = create_api_key("--name", "X", "--mode", "test", "--scopes", "integration,management")
    client = client_with(stdout.strip())

    assert client.get("/api/v1/contacts").status_code == 200
    assert client.get("/api/v1/merchants").status_code == 200


def test_command_explains_itself_on_stderr_without_the_key():
    stdout, stderr = create_api_key("--name", "Till 4", "--mode", "live")

    assert "Till 4" in stderr
    assert "live" in stderr
    assert stdout.strip() not in stderr
    assert stdout.strip().partition(".")[2] not in stderr


def test_live_mode_prints_a_live_key_with_the_integration_scope_by_default():
    stdout, _stderr = create_api_key("--name", "Till", "--mode", "live")
    raw_key = stdout.strip()
    client = client_with(raw_key)

    assert raw_key.startswith("lk_live_")
    assert ApiKey.objects.get().scopes == ["integration"]
    assert client.get("/api/v1/contacts").status_code == 200
    assert client.get("/api/v1/merchants").status_code == 403


def test_scopes_tolerate_spaces_around_commas():
    create_api_key("--name", "X", "--mode", "test", "--scopes", " management , integration ")

    assert ApiKey.objects.get().scopes == ["integration", "management"]


def test_the_stored_key_is_only_a_hash():
    stdout, _stderr = create_api_key("--name", "X", "--mode", "test")
    secret = stdout.strip().partition(".")[2]

    row = ApiKey.objects.values().get()
    assert all(secret not in str(value) for value in row.values())


@pytest.mark.parametrize(
    "arguments",
    [
        ("--name", "X", "--mode", "test", "--scopes", "integration,admin"),
        ("--name", "X", "--mode", "test", "--scopes", "superuser"),
        ("--name", "X", "--mode", "test", "--scopes", " , "),
    ],
)
def test_bad_scope_is_a_command_error_and_creates_nothing(arguments):
    with pytest.raises(CommandError):
        create_api_key(*arguments)

    assert ApiKey.objects.count() == 0


def test_bad_mode_is_a_command_error():
    with pytest.raises(CommandError):
        create_api_key("--name", "X", "--mode", "production")

    assert ApiKey.objects.count() == 0


def test_blank_name_is_a_command_error():
    with pytest.raises(CommandError):
        create_api_key("--name", "  ", "--mode", "test")

    assert ApiKey.objects.count() == 0


def test_name_and_mode_are_required():
    with pytest.raises(CommandError):
        create_api_key("--mode", "test")
    with pytest.raises(CommandError):
        create_api_key("--name", "X")
