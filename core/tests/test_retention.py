"""Retention: stored payloads that may hold personal data are purged after
PERSONAL_DATA_RETENTION_DAYS by a beat task, and nothing personal reaches the application logs."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from core import services, tasks
from core.models import IdempotencyRecord, OutboxEvent
from transactions.tests.factories import base_rule, purchase_payload

pytestmark = pytest.mark.django_db

PHONE_AS_TYPED = "070-723 45 67"
PHONE_E164 = "+46707234567"
EMAIL = "Ana.Lind@Example.com"


def _aged(model, days: int, **fields):
    row = model.objects.create(**fields)
    model.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=days))
    return row


def test_personal_data_retention_defaults_to_30_days():
    assert settings.PERSONAL_DATA_RETENTION_DAYS == 30


def test_payloads_older_than_the_retention_are_purged_and_newer_ones_kept(client_test, settings):
    settings.PERSONAL_DATA_RETENTION_DAYS = 10
    settings.IDEMPOTENCY_RETENTION = timedelta(days=365)  # the personal-data horizon wins
    api_key = client_test.api_key
    old_record = _aged(IdempotencyRecord, 11, api_key=api_key, key="old", fingerprint="f")
    new_record = _aged(IdempotencyRecord, 9, api_key=api_key, key="new", fingerprint="f")
    old_event = _aged(OutboxEvent, 11, livemode=False, event_type="x", payload={"email": "a@example.com"})
    new_event = _aged(OutboxEvent, 9, livemode=False, event_type="x", payload={})

    purged = services.personal_data_purge()

    assert purged == {"idempotency_records": 1, "outbox_events": 1}
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {new_record.pk}
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {new_event.pk}
    assert old_record.pk != new_record.pk and old_event.pk != new_event.pk


def test_a_second_purge_finds_nothing_left_to_delete(client_test):
    _aged(OutboxEvent, 31, livemode=False, event_type="x", payload={})

    services.personal_data_purge()

    assert services.personal_data_purge() == {"idempotency_records": 0, "outbox_events": 0}


def test_the_purge_runs_as_a_scheduled_task(client_test):
    _aged(OutboxEvent, 31, livemode=False, event_type="x", payload={})

    assert tasks.personal_data_purge.delay().get() == {"idempotency_records": 0, "outbox_events": 1}
    assert settings.CELERY_BEAT_SCHEDULE["purge-personal-data"]["task"] == "core.personal_data_purge"


def test_the_idempotency_horizon_is_configurable(client_test, settings):
    settings.IDEMPOTENCY_RETENTION = timedelta(hours=2)
    _aged(IdempotencyRecord, 0, api_key=client_test.api_key, key="fresh", fingerprint="f")
    stale = IdempotencyRecord.objects.create(api_key=client_test.api_key, key="stale", fingerprint="f")
    IdempotencyRecord.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=3))

    assert services.idempotency_records_purge() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_a_full_purchase_flow_logs_no_phone_number_or_email(client_test, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    for name in ("celery", "celery.app.trace", "celery.worker", "transactions", "core", "django"):
        caplog.set_level(logging.DEBUG, logger=name)
    base_rule()

    registered = client_test.post(
        "/api/v1/contacts",
        {"first_name": "Ana", "email": EMAIL, "mobile_phone": PHONE_AS_TYPED, "consents": {"email": True}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="register-ana",
    )
    assert registered.status_code == 201, registered.json()
    identified = client_test.get("/api/v1/contacts", {"match_key": PHONE_AS_TYPED, "match_key_type": "mobile_phone"})
    assert identified.status_code == 200
    unknown = client_test.get("/api/v1/contacts", {"match_key": "nobody@example.com", "match_key_type": "email"})
    assert unknown.status_code == 404
    reference = {"match_key": PHONE_AS_TYPED, "match_key_type": "mobile_phone"}
    with django_capture_on_commit_callbacks(execute=True):
        sent = client_test.post(
            "/api/v1/transactions",
            purchase_payload(contact=reference),
            format="json",
            HTTP_IDEMPOTENCY_KEY="purchase-1",
        )
    assert sent.status_code == 202, sent.json()
    processed = client_test.get("/api/v1/transactions/T-1").json()
    assert processed["status"] == "processed", processed
    # The flow did log (the task ran through Celery's tracer): the check below is not vacuous.
    assert caplog.records

    personal = [PHONE_AS_TYPED, PHONE_E164, PHONE_E164.lstrip("+"), "0707234567", EMAIL, EMAIL.lower(), "Ana"]
    for record in caplog.records:
        text = record.getMessage() + " " + repr(record.args) + " " + repr(record.__dict__.get("data", ""))
        leaked = [value for value in personal if value in text]
        assert not leaked, f"{record.name}: {text}"


def test_a_failed_processing_logs_the_error_class_but_not_its_message(caplog, monkeypatch):
    from core.exceptions import ValidationError
    from transactions import tasks as transaction_tasks

    def fail(*, transaction_id):
        raise ValidationError.for_field("contact", f"No contact with mobile_phone '{PHONE_E164}'.")

    reasons = []
    monkeypatch.setattr(transaction_tasks.processing, "transaction_process", fail)
    monkeypatch.setattr(
        transaction_tasks.processing, "transaction_fail", lambda *, transaction_id, reason: reasons.append(reason)
    )
    caplog.set_level(logging.DEBUG)

    transaction_tasks.process_transaction.delay("5d1c0f3e-0000-4000-8000-000000000001")

    assert PHONE_E164 in reasons[0]  # stored on the transaction, where staff can read it
    failures = [record for record in caplog.records if "failed" in record.getMessage()]
    assert failures and "ValidationError" in failures[0].getMessage()
    for record in caplog.records:
        assert PHONE_E164 not in record.getMessage()
        assert not record.exc_info or PHONE_E164 not in str(record.exc_info[1])


def test_the_log_filter_redacts_emails_and_phone_numbers_but_not_ids():
    from core.log_filters import RedactPersonalData

    try:
        raise ValueError(f"Key (livemode, mobile_phone)=(f, {PHONE_E164}) already exists.")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "x",
        logging.ERROR,
        __file__,
        1,
        "contact %s %s in %s",
        (EMAIL, PHONE_AS_TYPED, "0b0ca7e5-0000-4000-8000-000000000000"),
        exc_info,
    )

    RedactPersonalData().filter(record)

    assert record.getMessage() == "contact [redacted] [redacted] in 0b0ca7e5-0000-4000-8000-000000000000"
    assert PHONE_E164 not in record.exc_text
    assert "already exists" in record.exc_text
