"""Shared fixtures: API clients holding keys of either mode, and the PostgreSQL guard."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from core.services import api_key_create


@pytest.fixture(scope="session", autouse=True)
def _database_is_postgresql(django_db_setup, django_db_blocker):
    """The suite's promise is PostgreSQL: refuse to run quietly on anything else when required."""
    from django.db import connection

    if os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1" and connection.vendor != "postgresql":
        pytest.exit(f"LOYALTY_REQUIRE_POSTGRES=1 but the database is {connection.vendor}", returncode=3)


class KeyClient(APIClient):
    """An APIClient that authenticates every request with one API key."""

    def __init__(self, api_key, raw_key, **kwargs):
        super().__init__(**kwargs)
        self.api_key = api_key
        self.raw_key = raw_key
        self.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")


@pytest.fixture
def make_client(db):
    def make(*, livemode: bool = False, scopes=("integration",), name: str = "test client") -> KeyClient:
        api_key, raw_key = api_key_create(name=name, livemode=livemode, scopes=scopes)
        return KeyClient(api_key, raw_key)

    return make


@pytest.fixture
def client_test(make_client) -> KeyClient:
    """A test-mode integration key."""
    return make_client(livemode=False, name="test integration")


@pytest.fixture
def client_live(make_client) -> KeyClient:
    """A live-mode integration key."""
    return make_client(livemode=True, name="live integration")


@pytest.fixture
def management_client(make_client) -> KeyClient:
    """A test-mode key with both scopes."""
    return make_client(livemode=False, scopes=("integration", "management"), name="test management")


@pytest.fixture(autouse=True)
def _fresh_config_cache():
    """Configuration is cached per process (core.selectors); a test's rolled-back changes must not
    outlive it (a rollback sends no save signal)."""
    from core.selectors import api_key_cache_forget, config_cache_clear

    config_cache_clear()
    api_key_cache_forget()
    yield
    config_cache_clear()
    api_key_cache_forget()
