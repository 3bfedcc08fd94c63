"""/healthz: database and broker reachability, for load balancers and orchestrators."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import override_settings

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def broker_url():
    """Point both Django settings and the already-configured Celery app at a broker, then restore."""
    original = celery_app.conf.broker_url
    overrides = []

    def use(url):
        override = override_settings(CELERY_BROKER_URL=url, CELERY_TASK_ALWAYS_EAGER=False)
        override.enable()
        overrides.append(override)
        celery_app.conf.broker_url = url

    yield use
    celery_app.conf.broker_url = original
    for override in reversed(overrides):
        override.disable()


def test_health_is_ok_with_the_database_up_and_tasks_in_process(client, settings):
    assert settings.CELERY_TASK_ALWAYS_EAGER

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "in-process"}


def test_health_needs_no_api_key_and_ignores_a_bad_one(client):
    response = client.get("/healthz", HTTP_AUTHORIZATION="Api-Key lk_test_nonsense.nonsense")

    assert response.status_code == 200


def test_health_is_503_when_the_broker_is_unreachable(client, broker_url):
    broker_url(UNREACHABLE_BROKER)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["database"] == "ok"
    assert body["broker"].startswith("down")
    assert "127.0.0.1:1" not in response.content.decode()


def test_health_is_ok_when_the_broker_answers(client, broker_url, settings):
    if not settings.REDIS_URL:
        pytest.skip("needs a Redis to talk to (REDIS_URL)")
    broker_url(settings.REDIS_URL)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_is_503_when_the_database_is_unreachable(client, monkeypatch):
    class UnreachableDatabase:
        def cursor(self):
            raise OperationalError("could not connect to server")

    monkeypatch.setattr("core.api.views.connection", UnreachableDatabase())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": "down: OperationalError", "broker": "in-process"}
