from celery import shared_task

from offers.services import bulk, issued


@shared_task(name="offers.locks_release")
def locks_release() -> int:
    return issued.issued_offer_locks_release()


@shared_task(name="offers.issued_offers_expire")
def issued_offers_expire() -> int:
    return issued.issued_offers_expire_due()


@shared_task(name="offers.issue_job_run")
def issue_job_run(job_id: int) -> None:
    bulk.offer_issue_job_run(job_id=job_id)
