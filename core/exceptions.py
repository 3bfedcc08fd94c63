"""Domain errors: a stable machine `code`, a human `message` and the offending `parameters`.

They know nothing of HTTP. Each belongs to a `kind` (invalid, not_found, conflict, forbidden,
limit); the API layer maps kinds to status codes in one place (`core.api.exception_handler`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "CONFLICT"
    kind: ClassVar[str] = "conflict"
    default_message: ClassVar[str] = "The request conflicts with the current state."

    def __init__(
        self,
        message: str | None = None,
        *,
        parameters: list[dict[str, Any]] | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.parameters = parameters or []
        if code is not None:
            self.code = code
        super().__init__(self.message)

    @staticmethod
    def parameter(name: str, message: str = "", **extra: Any) -> dict[str, Any]:
        """One entry of `parameters`: the field or id at fault, why, and any useful figures."""
        entry: dict[str, Any] = {"name": name}
        if message:
            entry["message"] = message
        entry.update(extra)
        return entry


class ValidationError(DomainError):
    code = "VALIDATION_ERROR"
    kind = "invalid"
    default_message = "The request is not valid."

    @classmethod
    def for_field(cls, name: str, message: str, **extra: Any) -> ValidationError:
        return cls(message, parameters=[cls.parameter(name, message, **extra)])


class LimitExceeded(DomainError):
    code = "LIMIT_EXCEEDED"
    kind = "invalid"
    default_message = "A limit was exceeded."


class NotFound(DomainError):
    code = "NOT_FOUND"
    kind = "not_found"
    default_message = "No such object."


class Conflict(DomainError):
    code = "CONFLICT"
    kind = "conflict"


class AmbiguousMatch(Conflict):
    code = "AMBIGUOUS_MATCH_KEY"
    default_message = "The match key identifies more than one contact."


class IdempotencyMismatch(Conflict):
    code = "IDEMPOTENCY_MISMATCH"
    default_message = "This Idempotency-Key was already used with a different request."


class IdempotencyInFlight(Conflict):
    code = "IDEMPOTENCY_IN_FLIGHT"
    default_message = "A request with this Idempotency-Key is still being processed; retry later."


class InsufficientBalance(Conflict):
    code = "INSUFFICIENT_BALANCE"
    default_message = "The balance is not sufficient."


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"
    kind = "forbidden"
    default_message = "Not allowed."
