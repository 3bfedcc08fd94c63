from celery import shared_task

from core import services, webhooks


@shared_task(name="core.idempotency_records_purge")
def idempotency_records_purge() -> int:
    return services.idempotency_records_purge()


@shared_task(name="core.webhooks_dispatch")
def webhooks_dispatch() -> int:
    made = webhooks.webhooks_dispatch(max_deliveries=webhooks.DISPATCH_BATCH)
    if made >= webhooks.DISPATCH_BATCH:
        # A backlog: hand the rest to the next free worker at once rather than waiting for beat
        # (deliveries are leased, so several dispatchers never send one delivery twice).
        webhooks_dispatch.delay()
    return made


@shared_task(name="core.personal_data_purge")
def personal_data_purge() -> dict[str, int]:
    return services.personal_data_purge()
