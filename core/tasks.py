from celery import shared_task

from core import services


@shared_task(name="core.idempotency_records_purge")
def idempotency_records_purge() -> int:
    return services.idempotency_records_purge()
