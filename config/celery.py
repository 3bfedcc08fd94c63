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


@task_prerun.connect
def _connections_checked(sender=None, **kwargs) -> None:
    """Before a task, as before a request: a connection that is broken or older than
    CONN_MAX_AGE is closed (the task then opens a new one), any other is kept."""
    if not getattr(sender.request, "is_eager", False):  # in-process: inside the caller's transaction
        from django.db import close_old_connections

        close_old_connections()


@task_postrun.connect
def _connections_released(sender=None, **kwargs) -> None:
    """After a task, as after a request: what is broken or too old is closed, and a connection
    that finished cleanly is marked released (core.postgresql skips the next health check for
    a moment, as after a request)."""
    if not getattr(sender.request, "is_eager", False):
        from django.db import close_old_connections

        from core.postgresql.base import connections_mark_released

        close_old_connections()
        connections_mark_released()
