"""Assertions shared by the kernel's tests: the contract's error body."""

from __future__ import annotations

ERROR_KEYS = {"status", "error", "message", "parameters"}

_NOT_GIVEN = object()


def assert_error_body(response, status: int, code: str, parameters=_NOT_GIVEN) -> dict:
    """The response is `status` with exactly the contract's error body carrying `code`; returns the body.

    `parameters`, when given, is the exact list of strings the body's `parameters` must be: each
    offending field (dotted path when nested) or id, followed by its offending value where there
    is one and by any figures as name/value pairs, e.g. `["id", "<uuid>"]`.
    """
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["status"] == status
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    assert isinstance(body["parameters"], list), body
    assert all(isinstance(parameter, str) for parameter in body["parameters"]), body
    if parameters is not _NOT_GIVEN:
        assert body["parameters"] == list(parameters), body
    return body
