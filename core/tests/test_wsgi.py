"""config.wsgi.application as the server calls it: API requests run only the API's middleware,
pages (the admin) the full chain, CSRF included."""

from __future__ import annotations

import gc
import io
import json
import sys

import pytest
from django.conf import settings
from django.core import signals
from django.db import close_old_connections

from config.wsgi import application
from core.services import api_key_create
from core.wsgi import API_MIDDLEWARE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """As Django's test client does: the handler must not close the test's connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def call(method: str, path: str, body: bytes = b"", **headers) -> tuple[int, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        **headers,
    }
    started = []
    response = application(
        environ, lambda status, response_headers, exc_info=None: started.append((status, response_headers))
    )
    try:
        content = b"".join(response)
    finally:
        response.close()
    status, response_headers = started[0]
    return int(status.split()[0]), dict(response_headers), content


def test_an_api_request_runs_only_the_api_middleware(settings):
    _, key = api_key_create(name="wsgi", livemode=False)
    status, headers, content = call(
        "POST",
        "/api/v1/contacts",
        json.dumps({"email": "wsgi@example.com"}).encode(),
        HTTP_AUTHORIZATION=f"Api-Key {key}",
    )
    assert status == 201, content
    assert json.loads(content)["email"] == "wsgi@example.com"
    assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still runs
    assert "X-Frame-Options" not in headers  # the pages' middleware does not
    assert "Set-Cookie" not in headers
    assert "Vary" not in headers or "Cookie" not in headers["Vary"]
    names = [path.rsplit(".", 1)[1] for path in settings.MIDDLEWARE if path in API_MIDDLEWARE]
    assert names == ["SecurityMiddleware", "ApiErrorMiddleware"]


def test_an_unknown_api_path_keeps_the_error_contract():
    status, headers, content = call("GET", "/api/v1/no-such-thing")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["error"] == "NOT_FOUND"


def test_a_bad_key_is_refused_in_the_contract_shape():
    status, _, content = call("POST", "/api/v1/offers/lookup", b"{}", HTTP_AUTHORIZATION="Api-Key nope")
    assert status == 401
    assert json.loads(content)["error"] == "AUTHENTICATION_FAILED"


def test_the_schema_and_its_swagger_page_are_served_under_the_api_prefix():
    status, headers, content = call("GET", "/api/schema/")
    assert status == 200
    assert b"/api/v1/offers/lookup" in content
    status, headers, content = call("GET", "/api/docs/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"swagger" in content.lower()


def test_admin_pages_keep_sessions_csrf_and_the_frame_header():
    status, headers, _ = call("GET", "/admin/login/")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert "csrftoken=" in headers["Set-Cookie"]
    status, _, _ = call(
        "POST",
        "/admin/login/",
        b"username=someone&password=secret",
        CONTENT_TYPE="application/x-www-form-urlencoded",
    )
    assert status == 403  # no CSRF token: refused, as before


def test_building_the_api_handler_leaves_the_settings_as_they_were():
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    assert "django.contrib.sessions.middleware.SessionMiddleware" in settings.MIDDLEWARE


def garbage_left_by(*args, **headers) -> tuple[int, int]:
    """(status, objects the cyclic collector finds afterwards) for one call through the
    application, with the collector off meanwhile so that nothing is collected early."""
    gc.collect()
    gc.disable()
    try:
        status, _, _ = call(*args, **headers)
        return status, gc.collect()
    finally:
        gc.enable()


@pytest.mark.parametrize("path", ["/api/v1/offers/lookup", "/api/v1/transactions"])
def test_a_closed_api_response_leaves_nothing_for_the_cyclic_collector(path):
    """DRF's request, view and response refer to one another; once the server closes the
    response those references are cut, so a checkout call's objects are freed at once instead of
    waiting (with the parsed body and the answer) for a pause of the collector. (An endpoint
    that writes its answer with a DRF serializer still leaves that serializer's own ring.)"""
    _, key = api_key_create(name="wsgi", livemode=False)
    contact = call("POST", "/api/v1/contacts", b'{"first_name": "Ada"}', HTTP_AUTHORIZATION=f"Api-Key {key}")
    contact_id = json.loads(contact[2])["id"]
    items = [{"sku": "S1", "quantity": 1, "unit_price": "2.50", "amount": "2.50"}]
    basket = {"currency": "EUR", "items": items}

    def body(n):
        if path.endswith("lookup"):
            return {"contact": {"id": contact_id}, "basket": basket}
        return {"id": f"T-{n}", "contact": {"id": contact_id}, "occurred_at": "2026-01-01T10:00:00Z", **basket}

    call("POST", path, json.dumps(body(1)).encode(), HTTP_AUTHORIZATION=f"Api-Key {key}")  # caches warm
    status, found = garbage_left_by("POST", path, json.dumps(body(2)).encode(), HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert status in (200, 202)
    assert found == 0


def test_the_references_are_cut_only_when_the_response_is_closed():
    """Until the server closes it, the response keeps what it was rendered with."""
    _, key = api_key_create(name="wsgi", livemode=False)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/contacts",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "HTTP_AUTHORIZATION": f"Api-Key {key}",
    }
    response = application(environ, lambda *args: None)
    assert response.renderer_context["view"].request is not None
    view = response.renderer_context["view"]
    response.close()
    assert response.renderer_context is None
    assert "request" not in vars(view) and "response" not in vars(view)
