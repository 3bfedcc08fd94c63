"""Bulk issuance from the admin: to a list of member numbers, a tier, or an uploaded CSV, run
by a worker with progress on the job row. Re-running a job (a worker died) issues nothing
twice: contacts who already hold an offer from this job are skipped."""

from __future__ import annotations

import csv
import io

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.exceptions import DomainError, ValidationError
from loyalty.models import Contact, ContactTier
from offers.models import IssuedOffer, Offer, OfferIssueJob
from offers.services.issued import issued_offer_issue

BATCH_SIZE = 200
MAX_MEMBER_NUMBERS = 100_000


def member_numbers_from_csv(content: bytes) -> list[str]:
    """Member numbers from an uploaded CSV: a `member_number` column, or the first column."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError.for_field("csv_file", "The file is not UTF-8 text.") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("member_number") if "member_number" in header else 0
    body = rows[1:] if "member_number" in header else rows
    return [row[column].strip() for row in body if len(row) > column and row[column].strip()]


def offer_issue_job_create(
    *, offer: Offer, member_numbers: list[str] | None = None, tier=None, created_by=None
) -> OfferIssueJob:
    """Queue a bulk issuance; the worker starts after commit. Raises ValidationError."""
    member_numbers = sorted(set(member_numbers or []))
    if not member_numbers and tier is None:
        raise ValidationError.for_field("member_numbers", "Give member numbers, a CSV file or a tier.")
    if len(member_numbers) > MAX_MEMBER_NUMBERS:
        raise ValidationError.for_field("member_numbers", f"At most {MAX_MEMBER_NUMBERS:,} member numbers per job.")
    job = OfferIssueJob.objects.create(
        livemode=offer.livemode, offer=offer, member_numbers=member_numbers, tier=tier, created_by=created_by
    )
    from offers.tasks import issue_job_run

    transaction.on_commit(lambda: issue_job_run.delay(job.pk))
    return job


def _targets(job: OfferIssueJob):
    if job.tier_id:
        return Contact.objects.filter(
            pk__in=ContactTier.objects.filter(tier_id=job.tier_id).values("contact_id"),
            livemode=job.livemode,
            status=Contact.Status.ACTIVE,
        )
    return Contact.objects.filter(livemode=job.livemode, member_number__in=job.member_numbers)


def offer_issue_job_run(*, job_id: int) -> OfferIssueJob:
    """Issue the job's offer to every target contact, batch by batch, recording progress and
    per-contact errors. Safe to run again."""
    job = OfferIssueJob.objects.select_related("offer").get(pk=job_id)
    if job.status == OfferIssueJob.Status.DONE:
        return job
    source = f"job:{job.pk}"
    contacts = _targets(job).order_by("pk")
    total = contacts.count() if job.tier_id else len(job.member_numbers)
    OfferIssueJob.objects.filter(pk=job.pk).update(status=OfferIssueJob.Status.RUNNING, total=total, processed=0)
    errors = []
    if not job.tier_id:
        found = set(contacts.values_list("member_number", flat=True))
        errors += [
            {"member_number": number, "error": "NOT_FOUND"} for number in job.member_numbers if number not in found
        ]
        OfferIssueJob.objects.filter(pk=job.pk).update(processed=F("processed") + len(errors))
    already = set(IssuedOffer.objects.filter(offer=job.offer, source=source).values_list("contact_id", flat=True))
    batch: list[Contact] = []
    for contact in contacts.iterator(chunk_size=BATCH_SIZE):
        batch.append(contact)
        if len(batch) == BATCH_SIZE:
            errors += _issue_batch(job, batch, already, source)
            batch = []
    if batch:
        errors += _issue_batch(job, batch, already, source)
    OfferIssueJob.objects.filter(pk=job.pk).update(
        status=OfferIssueJob.Status.DONE, errors=errors[:1000], finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _issue_batch(job, batch, already, source) -> list[dict]:
    errors, issued = [], 0
    for contact in batch:
        if contact.pk in already:
            continue
        try:
            issued_offer_issue(offer=job.offer, contact=contact, source=source, actor=source)
            issued += 1
        except DomainError as error:
            errors.append({"member_number": contact.member_number, "error": error.code, "message": error.message})
    OfferIssueJob.objects.filter(pk=job.pk).update(processed=F("processed") + len(batch), issued=F("issued") + issued)
    return errors
