"""Workers' entry points. Processing is `acks_late` with reject-on-worker-lost (settings): a
worker killed mid-task leaves the message to be delivered again, and the task is idempotent."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from core.exceptions import DomainError
from transactions.services import intake, processing, products

logger = logging.getLogger(__name__)


@shared_task(
    name="transactions.process",
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=8,
)
def process_transaction(self, transaction_id: str) -> None:
    try:
        processing.transaction_process(transaction_id=transaction_id)
    except (OperationalError, InterfaceError):
        raise  # transient: retried with backoff
    except (DomainError, DatabaseError, ValueError, LookupError) as error:
        # The class only: an error's message may quote the purchase's identifiers (a phone number,
        # an email, a database constraint's detail). The full reason is stored on the transaction.
        logger.error("Processing transaction %s failed (%s)", transaction_id, error.__class__.__name__)
        processing.transaction_fail(transaction_id=transaction_id, reason=f"{error.__class__.__name__}: {error}")


DRAIN_RETRY_SECONDS = 2


@shared_task(
    name="transactions.process_queued",
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=8,
)
def process_queued(self, flag: str | None = None, retry_claim: str | None = None) -> int:
    """Drain the queue of stored purchases (see `processing.queued_drain`). Intake sends this
    task only when none is already waiting (`intake.processing_kick`); the flag is cleared
    before the first read, so a purchase stored from now on either finds it cleared and sends
    another drain, or is seen by this one. `retry_claim`: this is the one look-again task
    (see below); it clears its claim first, so that it may send the next one."""
    if flag:
        intake.drain_flag_clear(flag)
    if retry_claim:
        intake.drain_flag_clear(retry_claim)
    result = processing.queued_drain(max_seconds=settings.TRANSACTION_DRAIN_SECONDS)
    # A follow-up goes to the queue this drain came from (a worker may serve another queue).
    queue = (self.request.delivery_info or {}).get("routing_key") or None
    if result.more:
        # Budget spent: hand over to a new task so other work queued behind this one runs too.
        process_queued.apply_async(queue=queue)
    elif result.held_elsewhere:
        # Look again shortly: if the holder was a worker killed mid-purchase, its purchase is
        # free once its session rolls back, and nobody else may be coming for it. Usually the
        # holder is another worker busy with it: one look-again task waiting is enough.
        claim = intake.drain_retry_claim(queue, DRAIN_RETRY_SECONDS)
        if claim is not False:
            kwargs = {"retry_claim": claim} if claim else {}
            process_queued.apply_async(countdown=DRAIN_RETRY_SECONDS, queue=queue, kwargs=kwargs)
    return result.processed


@shared_task(name="transactions.sweep_queued")
def sweep_queued() -> int:
    return processing.queued_sweep()


@shared_task(name="transactions.product_sync_run")
def product_sync_run(sync_id: str) -> None:
    products.product_sync_run(sync_id=sync_id)
