"""core.postgresql: the health check's SELECT 1 is skipped only for a connection a request
released cleanly moments ago; an idle or failed connection is checked, and a dead one replaced.
Timestamps are read by psycopg's C loader, in UTC, as Django's own loader gives them."""

from __future__ import annotations

import datetime
import time
import zoneinfo

import psycopg
import pytest
from django.db import OperationalError, connection, connections
from psycopg import adapters
from psycopg.pq import Format

from core.models import ApiKey
from core.postgresql.base import DatabaseWrapper, UtcTimestamptzLoader
from core.services import api_key_create

TIMESTAMPTZ = adapters.types["timestamptz"].oid

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


def test_timestamps_are_read_in_utc_by_the_compiled_loader():
    with connection.cursor() as cursor:
        assert cursor.cursor.adapters.get_loader(TIMESTAMPTZ, Format.TEXT) is UtcTimestamptzLoader
        cursor.execute(
            "SELECT '2026-01-01 12:00:00.123456+05:30'::timestamptz, NULL::timestamptz, "
            "'1999-12-31 23:59:59-08'::timestamptz"
        )
        india, missing, pacific = cursor.fetchone()
    assert india == datetime.datetime(2026, 1, 1, 6, 30, 0, 123456, tzinfo=datetime.UTC)
    assert india.tzinfo is datetime.UTC  # what Django's loader gives (replace(tzinfo=UTC))
    assert missing is None
    assert pacific == datetime.datetime(2000, 1, 1, 7, 59, 59, tzinfo=datetime.UTC)
    loader = UtcTimestamptzLoader(TIMESTAMPTZ, connection.connection)
    compiled = type(loader.load.__self__)  # psycopg's own loader, from its C module
    assert compiled is adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
    assert not compiled.__module__.startswith("psycopg.")


def test_a_model_datetime_round_trips_through_the_compiled_loader():
    paris = datetime.datetime(2026, 3, 29, 3, 30, 15, 999999, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    key, _ = api_key_create(name="tz", livemode=False)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=paris)
    stored = ApiKey.objects.get(pk=key.pk).last_used_at
    assert stored == paris
    assert stored.tzinfo is datetime.UTC


def test_a_connection_in_another_time_zone_keeps_djangos_loader():
    wrapper = DatabaseWrapper({**connection.settings_dict, "TIME_ZONE": "Europe/Paris"}, alias="paris")
    loader = wrapper.get_connection_params()["context"].get_loader(TIMESTAMPTZ, Format.TEXT)
    assert loader is not UtcTimestamptzLoader
    assert loader.timezone == zoneinfo.ZoneInfo("Europe/Paris")
