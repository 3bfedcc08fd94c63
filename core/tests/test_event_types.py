"""The event types: one list in code (core.webhooks.EVENT_TYPES) that every emitted type is in,
that endpoints may subscribe to, and that docs/WEBHOOKS.md documents."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from core import services as core_services
from core.exceptions import ValidationError
from core.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from core.services import outbox_emit, outbox_emit_many
from core.tests.assertions import assert_error_body
from core.webhooks import EVENT_TYPES, deliveries_lease, events_fan_out, webhook_endpoint_create

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = "/api/v1/webhook-endpoints"


def _called(call: ast.Call) -> str | None:
    function = call.func
    return function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _defaults_to_none(function: ast.FunctionDef, name: str) -> bool:
    arguments = function.args
    # Positional defaults belong to the last parameters; a keyword-only one without default is None.
    names = [argument.arg for argument in arguments.args]
    defaults = dict(zip(names[len(names) - len(arguments.defaults) :], arguments.defaults, strict=True))
    defaults.update(zip([argument.arg for argument in arguments.kwonlyargs], arguments.kw_defaults, strict=True))
    default = defaults.get(name)
    return isinstance(default, ast.Constant) and default.value is None


# The calls that write an event: one row, or one row inside the caller's own statement.
EMITS = ("outbox_emit", "outbox_insert_sql")


def emitted_in(tree: ast.Module) -> tuple[set[str], list[int]]:
    """The event types one module writes to the outbox, and the lines of emits whose type could
    not be read. Types are literals of `outbox_emit(event_type=…)` (or `outbox_insert_sql`), of
    the `(type, payload)` pairs given to `outbox_emit_many`, or of the calls of a module helper
    that passes its own parameter on as the type (`_event(issued, "offer.locked")` in offers,
    orders); a helper whose type parameter defaults to None writes nothing when given none."""
    found: set[str] = set()
    unreadable: list[int] = []
    helpers: dict[str, tuple[int, str, bool]] = {}  # helper → position, name, optional of its type
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        positional = [argument.arg for argument in function.args.args]
        names = positional + [argument.arg for argument in function.args.kwonlyargs]
        for call in ast.walk(function):
            if not isinstance(call, ast.Call) or _called(call) not in EMITS:
                continue
            value = _keyword(call, "event_type")
            if isinstance(value, ast.Name) and value.id in names:
                index = positional.index(value.id) if value.id in positional else -1
                helpers[function.name] = (index, value.id, _defaults_to_none(function, value.id))
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = _called(call)
        if name in EMITS:
            value = _keyword(call, "event_type")
            if _string(value):
                found.add(_string(value))
            elif not (isinstance(value, ast.Name) and any(value.id == param for _, param, _ in helpers.values())):
                unreadable.append(call.lineno)
        elif name == "outbox_emit_many":
            pairs = [
                node
                for node in ast.walk(_keyword(call, "events") or ast.Constant(None))
                if isinstance(node, ast.Tuple) and node.elts and _string(node.elts[0])
            ]
            found |= {_string(pair.elts[0]) for pair in pairs}
            if not pairs and not isinstance(_keyword(call, "events"), ast.Name):
                unreadable.append(call.lineno)
        elif name in helpers:
            index, param, optional = helpers[name]
            value = call.args[index] if 0 <= index < len(call.args) else _keyword(call, param)
            if _string(value):
                found.add(_string(value))
            elif value is None and optional:  # no type given: no event
                continue
            elif not (isinstance(value, ast.Name) and value.id == param):  # a helper passing it on
                unreadable.append(call.lineno)
    return found, unreadable


def emitted_event_types() -> tuple[dict[str, set[str]], list[str]]:
    """Event type → the source files (tests, migrations and benchmarks aside) that emit it, and
    the emits whose type is not a literal."""
    found: dict[str, set[str]] = {}
    unreadable: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in (".venv", "bench", "clients") or {"tests", "migrations"} & set(relative.parts):
            continue
        text = path.read_text(errors="replace")
        if "outbox_emit" not in text:
            continue
        types, lines = emitted_in(ast.parse(text))
        for event_type in types:
            found.setdefault(event_type, set()).add(str(relative))
        unreadable += [f"{relative}:{line}" for line in lines]
    return found, unreadable


def test_every_event_type_emitted_anywhere_is_listed():
    emitted, unreadable = emitted_event_types()

    # Not vacuous: the scan sees each way the apps emit (keyword, bulk pairs, offers' and
    # orders' helpers).
    assert {"contact.created", "contact.updated", "offer.locked", "order.cancelled", "payout.requested"} <= set(emitted)
    assert "core/services.py" not in str(emitted)  # the outbox itself emits nothing of its own
    assert not unreadable, f"emit with a literal event type so it can be checked: {unreadable}"
    unlisted = {event_type: sorted(files) for event_type, files in emitted.items() if event_type not in EVENT_TYPES}
    assert not unlisted, f"add these to core.webhooks.EVENT_TYPES and docs/WEBHOOKS.md: {unlisted}"


def test_every_listed_event_type_is_documented_with_its_data():
    documentation = (ROOT / "docs" / "WEBHOOKS.md").read_text()
    headings = set()
    for line in documentation.splitlines():
        if line.startswith("### "):
            headings |= {name.strip() for name in line[4:].split(",")}

    assert set(EVENT_TYPES) <= headings, set(EVENT_TYPES) - headings
    assert all(description.strip() for description in EVENT_TYPES.values())


def test_an_endpoint_cannot_subscribe_to_an_unknown_event_type():
    with pytest.raises(ValidationError) as refused:
        webhook_endpoint_create(livemode=False, url="https://example.com/hook", event_types=["contact.creatd"])

    assert refused.value.parameters[0]["name"] == "event_types"
    assert not WebhookEndpoint.objects.exists()


def test_the_api_answers_400_for_an_unknown_event_type_on_creation_and_change(management_client):
    refused = management_client.post(
        ENDPOINTS, {"url": "https://example.com/hook", "event_types": ["offer.issued", "order.shipped"]}, format="json"
    )
    assert_error_body(refused, 400, "VALIDATION_ERROR", ["event_types.1"])
    assert not WebhookEndpoint.objects.exists()

    created = management_client.post(
        ENDPOINTS, {"url": "https://example.com/hook", "event_types": ["offer.issued"]}, format="json"
    ).json()
    changed = management_client.patch(f"{ENDPOINTS}/{created['id']}", {"event_types": ["nope"]}, format="json")
    assert_error_body(changed, 400, "VALIDATION_ERROR", ["event_types.0"])
    assert WebhookEndpoint.objects.get().event_types == ["offer.issued"]


def test_the_admin_subscribes_an_endpoint_by_ticking_event_types(admin_client):
    response = admin_client.post(
        "/admin/core/webhookendpoint/add/",
        {
            "url": "https://crm.example.com/hook",
            "description": "",
            "event_types": ["contact.updated", "contact.created"],
            "is_active": "on",
            "livemode": "",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.event_types, endpoint.livemode) == (["contact.created", "contact.updated"], False)
    assert endpoint.secret.startswith("whsec_")


def test_the_lease_is_read_from_the_setting_at_each_lease(settings):
    webhook_endpoint_create(livemode=False, url="https://example.com/hook")
    outbox_emit(livemode=False, event_type="order.placed", payload={})
    events_fan_out()
    settings.WEBHOOK_LEASE_SECONDS = 2
    now = timezone.now()

    (leased,) = deliveries_lease(now=now)

    assert WebhookDelivery.objects.get(pk=leased.pk).next_attempt_at == now + timedelta(seconds=2)


def test_the_lease_defaults_to_60_seconds():
    from django.conf import settings as django_settings

    assert django_settings.WEBHOOK_LEASE_SECONDS == 60  # the environment sets nothing in the tests


def test_many_events_are_written_with_one_insert_and_ask_for_one_dispatch(
    settings, monkeypatch, django_assert_num_queries, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(core_services, "OUTBOX_LISTENERS", {})  # upper apps' listeners write their own rows
    webhook_endpoint_create(livemode=False, url="https://crm.example.com/hooks")
    core_services._webhook_subscriptions()  # read once, then cached like configuration
    events = [("contact.created", {"id": str(index)}) for index in range(50)]

    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        with django_assert_num_queries(1):
            assert outbox_emit_many(livemode=False, events=events) == 50
        outbox_emit(livemode=False, event_type="contact.updated", payload={})

    assert len(callbacks) == 1
    assert OutboxEvent.objects.filter(event_type="contact.created").count() == 50
    assert len(set(OutboxEvent.objects.values_list("event_id", flat=True))) == 51


def test_writing_no_events_writes_nothing():
    assert outbox_emit_many(livemode=False, events=[]) == 0
    assert not OutboxEvent.objects.exists()
