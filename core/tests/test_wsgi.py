"""config.wsgi.application as the server calls it: API requests run only the API's middleware,
pages (the admin) the full chain, CSRF included."""

from __future__ import annotations

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
