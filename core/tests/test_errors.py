"""Every 4xx/5xx under /api/ answers `{"status", "error", "message", "parameters"}`."""

from __future__ import annotations

import json
import uuid

import pytest
from django.http import HttpResponse

from catalogue.models import Merchant
from core.api.throttling import ApiKeyRateThrottle
from core.middleware import ApiErrorMiddleware
from core.models import IdempotencyRecord
from core.tests.assertions import assert_error_body
from loyalty.models import Contact
from loyalty.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts"


# --- 400: the request is not valid ----------------------------------------------------------


def test_invalid_phone_is_a_validation_error_naming_mobile_phone(client_test):
    response = client_test.post(CONTACTS, {"mobile_phone": "not a phone"}, format="json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR", ["mobile_phone"])
    assert "not a phone" in body["message"]
    assert Contact.objects.count() == 0


def test_malformed_json_is_a_validation_error_naming_the_body(client_test):
    response = client_test.post(CONTACTS, data='{"first_name": "Ana",', content_type="application/json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR", ["body"])
    assert body["message"].startswith("Malformed request body: ")
    assert Contact.objects.count() == 0


def test_json_that_is_not_an_object_is_a_validation_error(client_test):
    response = client_test.post(CONTACTS, data="[1, 2, 3]", content_type="application/json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR", ["body"])
    assert body["message"] == "body: Expected a JSON object."


def test_number_where_a_string_is_expected_is_rejected_not_coerced(client_test):
    response = client_test.post(CONTACTS, {"first_name": 123}, format="json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR", ["first_name"])
    assert body["message"] == "first_name: Must be a string."
    assert Contact.objects.count() == 0


def test_unknown_field_is_rejected_and_named(client_test):
    response = client_test.post(CONTACTS, {"first_name": "Ana", "favourite_colour": "blue"}, format="json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR", ["favourite_colour"])
    assert body["message"] == "favourite_colour: Unknown field."
    assert Contact.objects.count() == 0


def test_nested_field_error_is_named_by_its_dotted_path(client_test):
    response = client_test.post(
        CONTACTS, {"external_ids": [{"source": "pos", "id": "A1"}, {"source": "pos"}]}, format="json"
    )

    body = assert_error_body(response, 400, "VALIDATION_ERROR", ["external_ids.1.id"])
    assert body["message"] == "external_ids.1.id: This field is required."


def test_several_invalid_fields_are_all_named(client_test):
    response = client_test.post(CONTACTS, {"first_name": 1, "last_name": 2, "birth_date": "yesterday"}, format="json")

    body = assert_error_body(response, 400, "VALIDATION_ERROR")
    assert sorted(body["parameters"]) == ["birth_date", "first_name", "last_name"]
    messages = dict(entry.split(": ", 1) for entry in body["message"].split("; "))
    assert messages.keys() == {"birth_date", "first_name", "last_name"}
    assert messages["first_name"] == messages["last_name"] == "Must be a string."
    assert messages["birth_date"].startswith("Date has wrong format.")


def test_form_encoded_body_is_an_unsupported_media_type(client_test):
    response = client_test.post(CONTACTS, data="first_name=Ana", content_type="application/x-www-form-urlencoded")

    assert_error_body(response, 415, "UNSUPPORTED_MEDIA_TYPE")


# --- 401: missing or bad key ----------------------------------------------------------------


def test_missing_key_is_rejected_with_401_and_a_www_authenticate_challenge(client):
    response = client.get(CONTACTS)

    body = assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"] == "Api-Key"
    assert "Api-Key" in body["message"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer lk_test_abcdefghijkl.secret",
        "Api-Key",
        "Api-Key ",
        "api-key lk_test_abcdefghijkl.secret",
        "Api-Key not-a-loyalty-key",
        "Api-Key sk_live_abcdefghijkl.secret",
    ],
)
def test_malformed_authorization_header_is_rejected_with_401(client, authorization):
    response = client.get(CONTACTS, HTTP_AUTHORIZATION=authorization)

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"] == "Api-Key"


def test_key_with_a_wrong_secret_is_rejected_with_401(client, client_test):
    prefix = client_test.raw_key.partition(".")[0]

    response = client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {prefix}.{'x' * 40}")

    body = assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"] == "Api-Key"
    assert prefix not in response.content.decode()
    assert body["message"] == "Invalid API key."


def test_key_with_an_unknown_prefix_is_rejected_with_401(client):
    response = client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key lk_live_{'a' * 12}.{'b' * 40}")

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")


def test_test_key_secret_under_the_live_prefix_is_rejected_with_401(client, client_test):
    forged = client_test.raw_key.replace("lk_test_", "lk_live_", 1)

    response = client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {forged}")

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")


def test_revoked_key_is_rejected_with_401(client_test):
    from core.services import api_key_revoke

    assert client_test.get(CONTACTS).status_code == 200
    api_key_revoke(api_key=client_test.api_key)

    response = client_test.get(CONTACTS)

    body = assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert "revoked" in body["message"]
    assert response["WWW-Authenticate"] == "Api-Key"


def test_expired_key_is_rejected_with_401(client):
    from datetime import timedelta

    from django.utils import timezone

    from core.services import api_key_create

    _api_key, raw_key = api_key_create(
        name="expired", livemode=False, expiry_date=timezone.now() - timedelta(minutes=1)
    )

    response = client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {raw_key}")

    body = assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert "expired" in body["message"]


def test_key_that_has_not_yet_expired_is_accepted(client):
    from datetime import timedelta

    from django.utils import timezone

    from core.services import api_key_create

    _api_key, raw_key = api_key_create(name="valid", livemode=False, expiry_date=timezone.now() + timedelta(days=1))

    assert client.get(CONTACTS, HTTP_AUTHORIZATION=f"Api-Key {raw_key}").status_code == 200


def test_bad_key_on_a_write_changes_nothing(client):
    response = client.post(
        CONTACTS, {"first_name": "Ana"}, format="json", HTTP_AUTHORIZATION=f"Api-Key lk_test_{'a' * 12}.{'b' * 40}"
    )

    assert_error_body(response, 401, "AUTHENTICATION_FAILED")
    assert Contact.objects.count() == 0


# --- 403: the key lacks the scope ----------------------------------------------------------


def test_integration_key_on_a_management_endpoint_is_denied_with_403(client_test):
    response = client_test.get("/api/v1/merchants")

    body = assert_error_body(response, 403, "PERMISSION_DENIED")
    assert "management" in body["message"]


def test_integration_key_cannot_create_through_a_management_endpoint(client_test):
    response = client_test.post("/api/v1/merchants", {"number": "M1", "name": "Shop"}, format="json")

    assert_error_body(response, 403, "PERMISSION_DENIED")
    assert Merchant.objects.count() == 0


def test_management_only_key_on_an_integration_endpoint_is_denied_with_403(make_client):
    management_only = make_client(scopes=("management",))

    body = assert_error_body(management_only.get(CONTACTS), 403, "PERMISSION_DENIED")
    assert "integration" in body["message"]
    assert management_only.get("/api/v1/merchants").status_code == 200


def test_key_with_both_scopes_reaches_both_surfaces(management_client):
    assert management_client.get("/api/v1/merchants").status_code == 200
    assert management_client.get(CONTACTS).status_code == 200


# --- 404 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/no-such-endpoint", "/api/v1/contacts/", "/api/nothing-here"])
def test_unknown_route_under_api_is_a_json_not_found(client_test, path):
    response = client_test.get(path)

    body = assert_error_body(response, 404, "NOT_FOUND")
    assert "<html" not in response.content.decode().lower()
    assert body["parameters"] == []


def test_unknown_route_under_api_is_a_json_not_found_even_without_a_key(client):
    assert_error_body(client.post("/api/v1/no-such-endpoint", {}), 404, "NOT_FOUND")


def test_unknown_route_outside_api_keeps_the_html_not_found_page(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_unknown_contact_id_is_not_found_naming_the_id(client_test):
    unknown_id = str(uuid.uuid4())

    body = assert_error_body(client_test.get(f"{CONTACTS}/{unknown_id}"), 404, "NOT_FOUND")

    assert body["parameters"] == ["id", unknown_id]


def test_id_that_is_not_a_uuid_is_not_found_rather_than_a_server_error(client_test):
    body = assert_error_body(client_test.get(f"{CONTACTS}/not-a-uuid"), 404, "NOT_FOUND")

    assert body["parameters"] == ["id", "not-a-uuid"]


@pytest.mark.parametrize("merchant_id", [lambda: str(uuid.uuid4()), lambda: "12345"])
def test_unknown_merchant_id_is_not_found(management_client, merchant_id):
    value = merchant_id()

    body = assert_error_body(management_client.get(f"/api/v1/merchants/{value}"), 404, "NOT_FOUND")

    assert body["parameters"] == ["id", value]


# --- 405 -----------------------------------------------------------------------------------


def test_wrong_method_is_method_not_allowed_with_an_allow_header(client_test):
    response = client_test.put(CONTACTS, {"first_name": "Ana"}, format="json")

    assert_error_body(response, 405, "METHOD_NOT_ALLOWED")
    allowed = {method.strip() for method in response["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed
    assert Contact.objects.count() == 0


def test_wrong_method_on_a_detail_route_is_method_not_allowed(client_test):
    contact = ContactFactory(livemode=False)

    assert_error_body(client_test.post(f"{CONTACTS}/{contact.pk}", {}, format="json"), 405, "METHOD_NOT_ALLOWED")


# --- 409 -----------------------------------------------------------------------------------


def test_domain_conflict_is_a_409_naming_the_field(client_test):
    ContactFactory(livemode=False, email="ana@example.com")

    response = client_test.post(CONTACTS, {"email": "ANA@example.com"}, format="json")

    assert_error_body(response, 409, "DUPLICATE_IDENTIFIER", ["email", "ANA@example.com"])


# --- 429 -----------------------------------------------------------------------------------


@pytest.fixture
def two_requests_a_minute(monkeypatch):
    # DRF copies DEFAULT_THROTTLE_RATES onto the class at import, so settings overrides do not reach it.
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/min"})


def test_throttled_key_gets_429_with_retry_after(client_test, two_requests_a_minute):
    assert client_test.get(CONTACTS).status_code == 200
    assert client_test.get(CONTACTS).status_code == 200

    response = client_test.get(CONTACTS)

    body = assert_error_body(response, 429, "RATE_LIMITED")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["parameters"] == ["retry_after", str(retry_after)]


def test_throttling_counts_per_key_not_globally(make_client, two_requests_a_minute):
    busy = make_client(name="busy")
    quiet = make_client(name="quiet")
    for _ in range(2):
        busy.get(CONTACTS)

    assert busy.get(CONTACTS).status_code == 429
    assert quiet.get(CONTACTS).status_code == 200


def test_throttled_key_is_let_through_again_after_the_window(client_test, two_requests_a_minute, time_machine):
    time_machine.move_to("2030-01-01T12:00:00Z", tick=False)
    client_test.get(CONTACTS)
    client_test.get(CONTACTS)
    assert client_test.get(CONTACTS).status_code == 429

    time_machine.move_to("2030-01-01T12:01:01Z", tick=False)

    assert client_test.get(CONTACTS).status_code == 200


def test_the_throttle_counter_is_one_redis_key_that_expires_with_its_window(client_test, monkeypatch):
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("the Redis path needs REDIS_URL")
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "100/min"})
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: 1_900_000_000.0)  # a window's start
    key = backend.make_and_validate_key(f"throttle:api_key:{client_test.api_key.pk}:{1_900_000_000 // 60}")
    redis = backend._cache.get_client(key)

    for _ in range(3):
        assert client_test.get(CONTACTS).status_code == 200

    assert int(redis.get(key)) == 3
    assert 1 <= redis.ttl(key) <= 61  # set by the window's first request, not pushed back by later ones


def test_health_check_is_not_throttled(client, two_requests_a_minute):
    statuses = {client.get("/healthz").status_code for _ in range(4)}

    assert statuses == {200}


# --- 500 -----------------------------------------------------------------------------------


@pytest.fixture
def contact_create_crashes(monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("secret-internal-detail: connection string postgres://admin:hunter2@db")

    monkeypatch.setattr("loyalty.services.contact_create", crash)


def test_unhandled_exception_in_a_view_is_a_500_in_the_error_shape(client_test, contact_create_crashes):
    response = client_test.post(CONTACTS, {"first_name": "Ana"}, format="json")

    assert_error_body(response, 500, "INTERNAL_ERROR")
    content = response.content.decode()
    assert "secret-internal-detail" not in content
    assert "hunter2" not in content
    assert "Traceback" not in content
    assert "RuntimeError" not in content


def test_unhandled_exception_is_logged(client_test, contact_create_crashes, caplog):
    client_test.post(CONTACTS, {"first_name": "Ana"}, format="json")

    assert any(record.exc_info and isinstance(record.exc_info[1], RuntimeError) for record in caplog.records)


def test_server_error_releases_the_idempotency_key_for_a_retry(client_test, monkeypatch):
    import loyalty.services

    real_contact_create = loyalty.services.contact_create

    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("loyalty.services.contact_create", crash)
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-after-crash"}
    assert client_test.post(CONTACTS, {"first_name": "Ana"}, format="json", **headers).status_code == 500
    assert IdempotencyRecord.objects.count() == 0

    monkeypatch.setattr("loyalty.services.contact_create", real_contact_create)
    response = client_test.post(CONTACTS, {"first_name": "Ana"}, format="json", **headers)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert Contact.objects.count() == 1


# --- the middleware, for what never reaches a DRF view ---------------------------------------


def test_middleware_turns_a_non_json_api_error_page_into_the_error_shape(rf):
    middleware = ApiErrorMiddleware(lambda request: HttpResponse("<h1>Bad gateway</h1>", status=502))

    response = middleware(rf.get("/api/v1/contacts"))

    assert response.status_code == 502
    assert json.loads(response.content) == {
        "status": 502,
        "error": "INTERNAL_ERROR",
        "message": "Bad Gateway",
        "parameters": [],
    }


def test_middleware_leaves_pages_outside_api_alone(rf):
    page = HttpResponse("<h1>Server error</h1>", status=500)
    middleware = ApiErrorMiddleware(lambda request: page)

    assert middleware(rf.get("/admin/")) is page


def test_middleware_answers_an_exception_outside_a_view_with_a_json_500(rf):
    middleware = ApiErrorMiddleware(lambda request: HttpResponse())

    response = middleware.process_exception(rf.get("/api/v1/contacts"), RuntimeError("secret"))

    assert response.status_code == 500
    body = json.loads(response.content)
    assert set(body) == {"status", "error", "message", "parameters"}
    assert body["error"] == "INTERNAL_ERROR"
    assert "secret" not in response.content.decode()
    assert middleware.process_exception(rf.get("/admin/"), RuntimeError("secret")) is None
