"""Assertions shared by the kernel's tests: the contract's error body."""

from __future__ import annotations

ERROR_KEYS = {"status", "error", "message", "parameters"}


def assert_error_body(response, status: int, code: str) -> dict:
    """The response is `status` with exactly the contract's error body carrying `code`; returns the body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["status"] == status
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    assert isinstance(body["parameters"], list), body
    return body


def parameter_names(body: dict) -> list[str]:
    return [parameter["name"] for parameter in body["parameters"]]
