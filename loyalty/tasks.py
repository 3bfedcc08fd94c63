"""Periodic wallet work, run by beat. Each task is idempotent and safe to run concurrently
with itself and with spending (every lot write takes its account's row lock)."""

from celery import shared_task

from loyalty.services import changes, ledger, tiers


@shared_task(name="loyalty.lots_expire_due")
def lots_expire_due() -> int:
    return ledger.lots_expire_due()


@shared_task(name="loyalty.pending_lots_release")
def pending_lots_release() -> int:
    return ledger.pending_lots_release()


@shared_task(name="loyalty.tiers_review")
def tiers_review() -> int:
    return tiers.tiers_review()


@shared_task(name="loyalty.contact_changes_purge")
def contact_changes_purge() -> int:
    return changes.contact_changes_purge()
