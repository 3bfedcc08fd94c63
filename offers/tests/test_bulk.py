import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from loyalty.models import ContactTier, Tier
from loyalty.tests.factories import ContactFactory
from offers.models import IssuedOffer, OfferIssueJob
from offers.services.bulk import member_numbers_from_csv, offer_issue_job_create, offer_issue_job_run
from offers.tests.factories import OfferFactory

pytestmark = pytest.mark.django_db


def test_csv_member_numbers_come_from_the_member_number_column_or_the_first():
    assert member_numbers_from_csv(b"name,member_number\nAna,123\nBo,456\n") == ["123", "456"]
    assert member_numbers_from_csv(b"123\n456\n\n") == ["123", "456"]


def test_bulk_issue_to_member_numbers_reports_unknown_ones_and_never_issues_twice(django_capture_on_commit_callbacks):
    offer = OfferFactory()
    contacts = ContactFactory.create_batch(3)
    numbers = [contact.member_number for contact in contacts] + ["000000000000"]
    with django_capture_on_commit_callbacks(execute=True):
        job = offer_issue_job_create(offer=offer, member_numbers=numbers)
    job.refresh_from_db()
    assert (job.status, job.total, job.processed, job.issued) == ("done", 4, 4, 3)
    assert job.errors == [{"member_number": "000000000000", "error": "NOT_FOUND"}]
    OfferIssueJob.objects.filter(pk=job.pk).update(status="running")  # as if a worker died and it ran again
    offer_issue_job_run(job_id=job.pk)
    assert IssuedOffer.objects.filter(offer=offer).count() == 3
    offer.refresh_from_db()
    assert offer.issued_count == 3


def test_bulk_issue_to_a_tier(django_capture_on_commit_callbacks):
    offer = OfferFactory()
    gold = Tier.objects.create(livemode=False, name="Gold", rank=2, threshold=10)
    members = ContactFactory.create_batch(2)
    for contact in members:
        ContactTier.objects.create(contact=contact, tier=gold)
    ContactFactory()  # not in the tier
    with django_capture_on_commit_callbacks(execute=True):
        offer_issue_job_create(offer=offer, tier=gold)
    assert set(IssuedOffer.objects.values_list("contact_id", flat=True)) == {contact.pk for contact in members}


def test_admin_issues_from_an_uploaded_csv(client, django_capture_on_commit_callbacks):
    offer = OfferFactory()
    contact = ContactFactory()
    client.force_login(User.objects.create_superuser("boss", password="x"))
    upload = SimpleUploadedFile("members.csv", f"member_number\n{contact.member_number}\n".encode())
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:offers_offer_issue_to_contacts", args=[offer.pk]), {"csv_file": upload})
    assert response.status_code == 302
    assert IssuedOffer.objects.get().contact == contact
