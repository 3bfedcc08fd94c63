"""Message variants: JSON templates an external system's messages are built from.

A template is any JSON value. A string that is exactly one placeholder (`"{{ contact.id }}"`)
becomes the named fact with its own type (a number stays a number, a missing fact is null);
placeholders inside a longer string are replaced by their text. Facts are a nested dict the
caller builds (contact, offer, issued_offer, campaign, transaction, event, ...). Pure.
"""

from __future__ import annotations

import re
from typing import Any

from core.exceptions import ValidationError

# The facts events fill templates with, as the admin's preview shows them (offers.services.issued
# builds contact/offer/issued_offer; campaigns add campaign, transaction and event).
SAMPLE_FACTS: dict[str, Any] = {
    "contact": {
        "id": "6f1c2d3e-0000-4000-8000-000000000001",
        "member_number": "700000000018",
        "email": "ana.lind@example.com",
        "mobile_phone": "+46707234567",
        "first_name": "Ana",
        "last_name": "Lind",
    },
    "offer": {
        "id": "6f1c2d3e-0000-4000-8000-000000000002",
        "name": "10 % off coffee",
        "description": "Any coffee, any size.",
        "image_url": "https://example.com/coffee.png",
        "terms": "One per visit.",
        "benefit_type": "percent_off",
        "benefit_value": "10",
        "currency": None,
        "valid_from": "2026-01-01T00:00:00+00:00",
        "valid_until": "2026-12-31T23:59:59+00:00",
    },
    "issued_offer": {
        "id": "6f1c2d3e-0000-4000-8000-000000000003",
        "external_reference": "VENDOR-42",
        "issued_at": "2026-06-01T09:30:00+00:00",
        "expires_at": "2026-06-30T23:59:59+00:00",
    },
    "campaign": {"id": "6f1c2d3e-0000-4000-8000-000000000004", "name": "Welcome"},
}

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
WHOLE_PLACEHOLDER = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}\s*$")
MAX_TEMPLATE_FIELDS = 200


def _fact(facts: dict[str, Any], path: str) -> Any:
    value: Any = facts
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value


def message_render(template: Any, facts: dict[str, Any]) -> Any:
    """The template with its placeholders filled in from `facts`."""
    if isinstance(template, dict):
        return {key: message_render(value, facts) for key, value in template.items()}
    if isinstance(template, list):
        return [message_render(value, facts) for value in template]
    if isinstance(template, str):
        whole = WHOLE_PLACEHOLDER.match(template)
        if whole:
            return _fact(facts, whole.group(1))

        def text(match: re.Match) -> str:
            value = _fact(facts, match.group(1))
            return "" if value is None else str(value)

        return PLACEHOLDER.sub(text, template)
    return template


def message_template_check(template: Any, field: str = "template") -> None:
    """A template must be a JSON object of bounded size whose placeholders are well formed
    (`{{` without a valid fact path is a typo the marketer wants to hear about)."""
    if not isinstance(template, dict) or not template:
        raise ValidationError.for_field(field, "The template must be a non-empty JSON object.")
    count = 0

    def walk(value: Any, path: str) -> None:
        nonlocal count
        count += 1
        if count > MAX_TEMPLATE_FIELDS:
            raise ValidationError.for_field(field, f"The template may have at most {MAX_TEMPLATE_FIELDS} values.")
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}")
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, f"{path}.{index}")
        elif isinstance(value, str) and value.count("{{") != len(PLACEHOLDER.findall(value)):
            raise ValidationError.for_field(path, 'A placeholder is malformed: write "{{ contact.member_number }}".')

    walk(template, field)
