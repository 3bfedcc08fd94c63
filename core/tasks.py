from celery import shared_task

from core import services, webhooks


@shared_task(name="core.idempotency_records_purge")
def idempotency_records_purge() -> int:
    return services.idempotency_records_purge()


@shared_task(name="core.webhooks_dispatch")
def webhooks_dispatch() -> int:
    return webhooks.webhooks_dispatch()


@shared_task(name="core.personal_data_purge")
def personal_data_purge() -> dict[str, int]:
    return services.personal_data_purge()
