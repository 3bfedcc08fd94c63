"""The Celery application. Tasks are discovered in every installed app's `tasks.py`."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("loyalty")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@worker_process_init.connect
def _tune_worker(**kwargs) -> None:
    """The worker (solo pool) or each pool process: see config.runtime."""
    from config.runtime import garbage_collector_tune

    garbage_collector_tune()


def _connections_tidied(sender, *, released: bool) -> None:
    """Around a task, as around a request: a connection that is broken or older than
    CONN_MAX_AGE is closed (the next query opens a new one), any other is kept; after the task,
    one that finished cleanly is marked released (core.postgresql skips the next health check
    for a moment). Not for a task run in-process: it is inside its caller's transaction."""
    if getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
    if released:
        from core.postgresql.base import connections_mark_released

        connections_mark_released()


@task_prerun.connect
def _connections_checked(sender=None, **kwargs) -> None:
    _connections_tidied(sender, released=False)


@task_postrun.connect
def _connections_released(sender=None, **kwargs) -> None:
    _connections_tidied(sender, released=True)
