"""Values written the way DRF's fields write them, without a field instance per value."""

from __future__ import annotations

from datetime import datetime, tzinfo


def api_datetime(value: datetime | None, zone: tzinfo) -> str | None:
    """What DRF's DateTimeField writes for an aware datetime: ISO 8601 in `zone` (the current
    time zone, looked up once per response by the caller: Django keeps it in an asgiref Local,
    whose every read costs more than the formatting), UTC as `Z`."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
