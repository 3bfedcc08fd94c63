"""The OpenAPI schema at /api/schema/ and the interactive docs, served without any CDN."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = pytest.mark.django_db

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
ASSET_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s"'<>()]+""", re.IGNORECASE)
LOCAL_HOSTS = {"testserver", "localhost", "127.0.0.1"}


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    return yaml.safe_load(response.content)


def api_operations(schema):
    for path, operations in schema["paths"].items():
        if path.startswith("/api/"):
            for method, operation in operations.items():
                if method in HTTP_METHODS:
                    yield path, method, operation


def test_schema_is_openapi_3_and_served_without_a_key(schema):
    assert str(schema["openapi"]).startswith("3.")
    assert schema["info"]["title"]


def test_schema_is_also_served_as_json(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert response.json()["components"]["securitySchemes"]["ApiKey"]["type"] == "apiKey"


def test_schema_declares_the_api_key_security_scheme(schema):
    api_key = schema["components"]["securitySchemes"]["ApiKey"]

    assert (api_key["type"], api_key["in"], api_key["name"]) == ("apiKey", "header", "Authorization")
    assert "Api-Key" in api_key["description"]


def test_schema_has_the_error_component_with_the_contract_fields(schema):
    error = schema["components"]["schemas"]["Error"]

    assert set(error["properties"]) == {"status", "error", "message", "parameters"}
    assert set(error["required"]) == {"status", "error", "message", "parameters"}
    assert error["properties"]["status"]["type"] == "integer"
    assert error["properties"]["parameters"]["type"] == "array"


def test_schema_lists_the_contract_contact_endpoints(schema):
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/contacts"])
    assert {"get", "patch"} <= set(schema["paths"]["/api/v1/contacts/{id}"])


def test_every_api_operation_requires_the_api_key(schema):
    operations = list(api_operations(schema))
    assert operations

    for path, method, operation in operations:
        assert operation.get("security") == [{"ApiKey": []}], (method, path)


def test_every_api_operation_documents_the_error_body(schema):
    for path, method, operation in api_operations(schema):
        for status in ("400", "401", "403", "429"):
            response = operation["responses"].get(status)
            assert response is not None, (method, path, status)
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_creating_posts_document_conflicts_and_the_idempotency_key_header(schema):
    post = schema["paths"]["/api/v1/contacts"]["post"]

    assert "201" in post["responses"]
    assert "409" in post["responses"]
    headers = [parameter for parameter in post.get("parameters", []) if parameter["in"] == "header"]
    assert [parameter["name"] for parameter in headers] == ["Idempotency-Key"]


def test_health_check_is_documented_without_the_api_error_contract(schema):
    health = schema["paths"]["/healthz"]["get"]

    assert set(health["responses"]) == {"200", "503"}


def external_hosts(html):
    hosts = set()
    for url in ABSOLUTE_URL.findall(html):
        host = urlparse(url if "://" in url else "http:" + url).hostname
        if host and host not in LOCAL_HOSTS:
            hosts.add(host)
    return hosts


def test_swagger_docs_reference_no_external_host(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "/api/schema/" in html
    assert external_hosts(html) == set()


def test_swagger_docs_assets_are_served_by_the_application(client):
    html = client.get("/api/docs/").content.decode()
    assets = [reference for reference in ASSET_REFERENCE.findall(html) if reference.startswith("/static/")]

    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content]), asset


def test_external_host_detector_catches_a_cdn_reference():
    assert external_hosts('<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist/x.js"></script>') == {
        "cdn.jsdelivr.net"
    }
    assert external_hosts('<link href="//unpkg.com/redoc">') == {"unpkg.com"}
    assert external_hosts('<script src="/static/x.js"></script>') == set()
