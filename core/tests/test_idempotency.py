"""`Idempotency-Key` on creating POSTs: replays, mismatches, isolation per API key, the race, the purge."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from rest_framework.test import APIClient

from catalogue.models import Merchant
from core import services, tasks
from core.exceptions import IdempotencyInFlight, IdempotencyMismatch, ValidationError
from core.models import IdempotencyRecord
from core.tests.assertions import assert_error_body
from loyalty.models import Contact

CONTACTS = "/api/v1/contacts"
ANA = {"first_name": "Ana", "last_name": "Lind", "email": "ana@example.com", "mobile_phone": "+46707234567"}


def post_contact(client, body, key):
    return client.post(CONTACTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


# --- over HTTP -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_replay_with_same_key_and_body_returns_the_first_response(client_test):
    first = post_contact(client_test, ANA, "create-ana-1")
    assert first.status_code == 201, first.json()
    assert "Idempotent-Replayed" not in first

    replay = post_contact(client_test, ANA, "create-ana-1")

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert Contact.objects.count() == 1
    assert IdempotencyRecord.objects.get().is_completed


@pytest.mark.django_db
def test_replay_is_answered_after_the_contact_changed_with_the_original_body(client_test):
    first = post_contact(client_test, ANA, "create-ana-2")
    client_test.patch(f"{CONTACTS}/{first.json()['id']}", {"first_name": "Anna"}, format="json")

    replay = post_contact(client_test, ANA, "create-ana-2")

    assert replay.json()["first_name"] == "Ana"
    assert replay.json() == first.json()


@pytest.mark.django_db
def test_same_body_with_keys_in_another_order_is_still_a_replay(client_test):
    first = post_contact(client_test, ANA, "create-ana-3")

    replay = post_contact(client_test, dict(reversed(list(ANA.items()))), "create-ana-3")

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_an_idempotency_mismatch(client_test):
    post_contact(client_test, ANA, "create-ana-4")

    response = post_contact(client_test, {**ANA, "first_name": "Anna"}, "create-ana-4")

    assert_error_body(response, 409, "IDEMPOTENCY_MISMATCH", ["Idempotency-Key", "create-ana-4"])
    assert Contact.objects.count() == 1
    assert Contact.objects.get().first_name == "Ana"


@pytest.mark.django_db
def test_same_key_on_another_endpoint_is_an_idempotency_mismatch(management_client):
    assert post_contact(management_client, ANA, "shared-key").status_code == 201

    response = management_client.post(
        "/api/v1/merchants", {"number": "M1", "name": "Shop"}, format="json", HTTP_IDEMPOTENCY_KEY="shared-key"
    )

    assert_error_body(response, 409, "IDEMPOTENCY_MISMATCH")
    assert Merchant.objects.count() == 0


@pytest.mark.django_db
def test_same_key_used_by_another_api_key_is_independent(make_client):
    first_client = make_client(name="first till")
    second_client = make_client(name="second till")
    body = {"first_name": "Ana"}

    first = post_contact(first_client, body, "order-1")
    second = post_contact(second_client, body, "order-1")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert first.json()["id"] != second.json()["id"]
    assert Contact.objects.count() == 2
    assert IdempotencyRecord.objects.filter(key="order-1").count() == 2


@pytest.mark.django_db
def test_same_key_with_another_body_under_another_api_key_is_not_a_mismatch(make_client):
    post_contact(make_client(name="first till"), {"first_name": "Ana"}, "order-2")

    response = post_contact(make_client(name="second till"), {"first_name": "Bo"}, "order-2")

    assert response.status_code == 201
    assert response.json()["first_name"] == "Bo"


@pytest.mark.django_db
def test_request_that_failed_validation_is_not_stored_and_the_corrected_retry_succeeds(client_test):
    rejected = post_contact(client_test, {**ANA, "mobile_phone": "not a phone"}, "create-ana-5")
    assert_error_body(rejected, 400, "VALIDATION_ERROR")
    assert IdempotencyRecord.objects.count() == 0

    corrected = post_contact(client_test, ANA, "create-ana-5")

    assert corrected.status_code == 201, corrected.json()
    assert "Idempotent-Replayed" not in corrected
    assert Contact.objects.count() == 1


@pytest.mark.django_db
def test_repeating_a_rejected_request_is_evaluated_again_not_replayed(client_test):
    post_contact(client_test, {"first_name": 123}, "bad-1")

    again = post_contact(client_test, {"first_name": 123}, "bad-1")

    assert_error_body(again, 400, "VALIDATION_ERROR")
    assert "Idempotent-Replayed" not in again


@pytest.mark.django_db
def test_request_that_met_a_conflict_is_not_stored(client_test):
    post_contact(client_test, ANA, "first-ana")

    duplicate = post_contact(client_test, {**ANA, "first_name": "Other"}, "second-ana")

    assert_error_body(duplicate, 409, "DUPLICATE_IDENTIFIER")
    assert not IdempotencyRecord.objects.filter(key="second-ana").exists()


@pytest.mark.django_db
def test_request_without_a_key_is_not_idempotent(client_test):
    assert client_test.post(CONTACTS, {"first_name": "Ana"}, format="json").status_code == 201
    assert client_test.post(CONTACTS, {"first_name": "Ana"}, format="json").status_code == 201

    assert Contact.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_empty_or_overlong_idempotency_key_is_a_validation_error(client_test, key):
    response = post_contact(client_test, ANA, key)

    assert_error_body(response, 400, "VALIDATION_ERROR", ["Idempotency-Key"])
    assert Contact.objects.count() == 0


@pytest.mark.django_db
def test_idempotency_key_of_255_characters_is_accepted(client_test):
    assert post_contact(client_test, ANA, "k" * 255).status_code == 201


@pytest.mark.django_db
def test_idempotency_key_is_not_shared_between_modes(client_test, client_live):
    test_response = post_contact(client_test, ANA, "same-key")

    live_response = post_contact(client_live, ANA, "same-key")

    assert live_response.status_code == 201
    assert "Idempotent-Replayed" not in live_response
    assert live_response.json()["livemode"] is True
    assert live_response.json()["id"] != test_response.json()["id"]


# --- the race, on PostgreSQL with real threads ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_exactly_one_contact(client_test):
    thread_count = 10
    barrier = threading.Barrier(thread_count)
    responses = [None] * thread_count
    errors = []

    def send(index):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {client_test.raw_key}")
            barrier.wait(timeout=10)
            responses[index] = post_contact(client, ANA, "racing-key")
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert all(response is not None for response in responses)
    assert Contact.objects.count() == 1
    contact_id = str(Contact.objects.get().pk)
    created = [response for response in responses if response.status_code == 201]
    in_flight = [response for response in responses if response.status_code == 409]
    assert len(created) + len(in_flight) == thread_count, [response.status_code for response in responses]
    assert len([response for response in created if "Idempotent-Replayed" not in response]) == 1
    first_body = next(response.json() for response in created if "Idempotent-Replayed" not in response)
    for response in created:
        assert response.json() == first_body
        assert response.json()["id"] == contact_id
    for response in in_flight:
        assert_error_body(response, 409, "IDEMPOTENCY_IN_FLIGHT")
    assert IdempotencyRecord.objects.get(key="racing-key").is_completed


# --- the services ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_claim_of_a_new_key_is_not_a_replay(client_test):
    record, is_replay = services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)

    assert is_replay is False
    assert record.response_status is None
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()


@pytest.mark.django_db
def test_claim_of_a_completed_key_with_the_same_fingerprint_is_a_replay(client_test):
    record, _ = services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)
    services.idempotency_complete(record=record, status=201, body={"id": "x"})

    again, is_replay = services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)

    assert is_replay is True
    assert (again.pk, again.response_status, again.response_body) == (record.pk, 201, {"id": "x"})


@pytest.mark.django_db
def test_claim_with_another_fingerprint_raises_mismatch(client_test):
    services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="a" * 64)

    with pytest.raises(IdempotencyMismatch):
        services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="b" * 64)


@pytest.mark.django_db
def test_claim_while_the_first_is_in_flight_raises_in_flight(client_test):
    services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)

    with pytest.raises(IdempotencyInFlight):
        services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)


@pytest.mark.django_db
def test_abandoned_in_flight_claim_is_taken_over_after_the_timeout(client_test, settings, time_machine):
    time_machine.move_to(datetime(2030, 1, 1, 12, 0, tzinfo=UTC), tick=False)
    first, _ = services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)

    time_machine.move_to(datetime(2030, 1, 1, 12, 0, tzinfo=UTC) + settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT / 2)
    with pytest.raises(IdempotencyInFlight):
        services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)

    time_machine.move_to(
        datetime(2030, 1, 1, 12, 0, tzinfo=UTC) + settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT + timedelta(seconds=1)
    )
    taken, is_replay = services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)
    assert (taken.pk, is_replay) == (first.pk, False)

    # The take-over restarts the clock, so a third request meanwhile is told to wait.
    with pytest.raises(IdempotencyInFlight):
        services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)


@pytest.mark.django_db
def test_release_forgets_only_unfinished_claims(client_test):
    unfinished, _ = services.idempotency_claim(api_key=client_test.api_key, key="k1", fingerprint="f" * 64)
    finished, _ = services.idempotency_claim(api_key=client_test.api_key, key="k2", fingerprint="f" * 64)
    services.idempotency_complete(record=finished, status=201, body={})

    services.idempotency_release(record=unfinished)
    services.idempotency_release(record=finished)

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k2"]


@pytest.mark.django_db
def test_claim_rejects_an_overlong_key(client_test):
    with pytest.raises(ValidationError):
        services.idempotency_claim(api_key=client_test.api_key, key="k" * 256, fingerprint="f" * 64)


# --- the purge ---------------------------------------------------------------------------------

START = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)


def make_record(api_key, key, created_at):
    return IdempotencyRecord.objects.create(
        api_key=api_key, key=key, fingerprint="f" * 64, response_status=201, response_body={}, created_at=created_at
    )


@pytest.mark.django_db
def test_purge_deletes_records_older_than_24_hours_and_keeps_newer_ones(client_test, time_machine):
    time_machine.move_to(START, tick=False)
    make_record(client_test.api_key, "old", START - timedelta(hours=24, seconds=1))
    make_record(client_test.api_key, "much-older", START - timedelta(days=30))
    make_record(client_test.api_key, "recent", START - timedelta(hours=23, minutes=59))
    make_record(client_test.api_key, "fresh", START)

    deleted = services.idempotency_records_purge()

    assert deleted == 2
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh", "recent"]


@pytest.mark.django_db
def test_purge_works_through_many_records_in_batches(client_test, time_machine):
    time_machine.move_to(START, tick=False)
    for index in range(7):
        make_record(client_test.api_key, f"old-{index}", START - timedelta(days=2))
    make_record(client_test.api_key, "fresh", START)

    assert services.idempotency_records_purge(batch_size=3) == 7
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


@pytest.mark.django_db
def test_purge_task_purges_as_time_passes(client_test, time_machine):
    time_machine.move_to(START, tick=False)
    post_contact(client_test, ANA, "create-ana-6")
    time_machine.move_to(START + timedelta(hours=12), tick=False)
    post_contact(client_test, {"first_name": "Bo"}, "create-bo")

    time_machine.move_to(START + timedelta(hours=24, minutes=1), tick=False)
    assert tasks.idempotency_records_purge.delay().get() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["create-bo"]

    # Once the record is gone the key is free again: the same request now creates anew (and
    # here meets the contact it created a day earlier).
    response = post_contact(client_test, ANA, "create-ana-6")
    assert_error_body(response, 409, "DUPLICATE_IDENTIFIER")


def test_purge_task_is_registered_under_its_name_and_scheduled(settings):
    from config.celery import app

    assert "core.idempotency_records_purge" in app.tasks
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "core.idempotency_records_purge" in scheduled
