"""core.postgresql: the health check's SELECT 1 is skipped only for a connection a request
released cleanly moments ago; an idle or failed connection is checked, and a dead one replaced."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import OperationalError, connection, connections

from core.postgresql.base import DatabaseWrapper

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checks(monkeypatch):
    """Count the health check's round trips."""
    calls = []
    real = DatabaseWrapper.is_usable

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(DatabaseWrapper, "is_usable", counted)
    return calls


def new_request():
    """What Django does between two requests: health check to be done again."""
    connection.close_if_unusable_or_obsolete()


def kill_backend() -> None:
    pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_engine_is_ours_with_health_checks_on():
    assert isinstance(connections["default"], DatabaseWrapper)
    connection.ensure_connection()
    assert connection.health_check_enabled
    assert connection.settings_dict["HEALTH_CHECK_DELAY"] > 0


def test_a_request_after_another_skips_the_check_and_one_after_a_pause_does_not(client, checks):
    client.get("/healthz")
    assert connection.released_at is not None

    new_request()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert checks == []

    connection.released_at = time.monotonic() - connection.settings_dict["HEALTH_CHECK_DELAY"] - 1
    new_request()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert checks == [1]


def test_a_connection_that_saw_an_error_is_not_marked_released():
    connection.ensure_connection()
    connection.errors_occurred = True
    connection.mark_released()
    assert connection.released_at is None
    connection.errors_occurred = False


def test_a_dead_connection_idle_past_the_delay_is_replaced_before_the_query():
    connection.ensure_connection()
    old_pid = connection.connection.info.backend_pid
    connection.released_at = time.monotonic() - connection.settings_dict["HEALTH_CHECK_DELAY"] - 1
    kill_backend()
    new_request()

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


def test_a_dead_connection_inside_the_window_fails_one_query_and_is_then_replaced():
    connection.ensure_connection()
    old_pid = connection.connection.info.backend_pid
    connection.mark_released()
    kill_backend()
    new_request()

    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    # What Django does when that request ends: the failed connection is checked and closed.
    new_request()
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


def test_a_statement_run_again_and_again_is_prepared_once():
    connection.ensure_connection()
    with connection.cursor() as cursor:
        for n in range(6):
            cursor.execute("SELECT count(*) FROM core_apikey WHERE prefix = %s", [f"p{n}"])
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("core_apikey WHERE prefix = $1" in statement for statement in prepared)
