"""Celery workers keep their database connection from task to task, as web workers do from
request to request, and still replace one that broke."""

from __future__ import annotations

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection

from config.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@app.task(name="tests.noop")
def noop() -> None:
    pass


def run_around_a_task(task) -> None:
    """What a worker does around a task: Celery's own Django fixup and the project's handlers."""
    fixup = DjangoWorkerFixup(app)
    fixup.on_task_prerun(sender=task)
    task_prerun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={})
    task_postrun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")
    fixup.on_task_postrun(sender=task)


def test_a_worker_keeps_its_database_connection_from_task_to_task():
    connection.ensure_connection()
    session = connection.connection
    run_around_a_task(noop)
    run_around_a_task(noop)
    assert connection.connection is session
    assert connection.released_at is not None  # released cleanly: the next health check waits


def test_a_broken_connection_is_replaced_before_the_next_task():
    connection.ensure_connection()
    connection.connection.close()  # the server went away
    connection.errors_occurred = True  # as Django marks it when a query fails
    run_around_a_task(noop)
    assert connection.connection is None  # closed: the next query opens a new one
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_an_old_connection_is_replaced_as_after_a_request():
    connection.ensure_connection()
    connection.close_at = 0  # older than CONN_MAX_AGE
    run_around_a_task(noop)
    assert connection.connection is None
