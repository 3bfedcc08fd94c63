"""A real Celery worker on Redis runs our task against the test database."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import IdempotencyRecord
from core.services import api_key_create

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_worker_on_redis_purges_expired_idempotency_records(celery_worker_process):
    api_key, _ = api_key_create(name="e2e", livemode=False)
    old = IdempotencyRecord.objects.create(api_key=api_key, key="old", fingerprint="x")
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    fresh = IdempotencyRecord.objects.create(api_key=api_key, key="fresh", fingerprint="y")

    celery_worker_process.send("core.idempotency_records_purge")

    celery_worker_process.wait_until(lambda: not IdempotencyRecord.objects.filter(pk=old.pk).exists())
    assert IdempotencyRecord.objects.filter(pk=fresh.pk).exists()
    assert "core.idempotency_records_purge" in celery_worker_process.log()
    assert "succeeded" in celery_worker_process.log()
