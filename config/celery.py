"""The Celery application. Tasks are discovered in every installed app's `tasks.py`."""

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

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
