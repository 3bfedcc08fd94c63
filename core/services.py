"""Writes of the platform kernel: API keys, idempotency records, the outbox, retention, message
variants."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone

from core.exceptions import Conflict, IdempotencyInFlight, IdempotencyMismatch, ValidationError
from core.messages import message_template_check
from core.models import ApiKey, IdempotencyRecord, MessageVariant, OutboxEvent, WebhookEndpoint
from core.selectors import api_key_cache_forget, config_cached

VALID_SCOPES = {choice.value for choice in ApiKey.Scope}


def api_key_create(
    *,
    name: str,
    livemode: bool,
    scopes: Iterable[str] = ("integration",),
    created_by=None,
    expiry_date: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plain text, which is never stored (show it once).

    Raises ValidationError for an empty name or an unknown scope.
    """
    scopes = sorted(set(scopes))
    unknown = [scope for scope in scopes if scope not in VALID_SCOPES]
    if unknown:
        raise ValidationError.for_field("scopes", f"Unknown scope(s): {', '.join(unknown)}.")
    if not scopes:
        raise ValidationError.for_field("scopes", "A key needs at least one scope.")
    if not name.strip():
        raise ValidationError.for_field("name", "A key needs a name.")
    return ApiKey.objects.create_key(
        name=name.strip()[:50], livemode=livemode, scopes=scopes, created_by=created_by, expiry_date=expiry_date
    )


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke a key for good (idempotent). Refused at once by this process; other processes
    keep a key row at most core.selectors.API_KEY_CACHE_SECONDS, so everywhere within that."""
    ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
    api_key.revoked = True
    api_key_cache_forget(prefix=api_key.prefix)


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Record use, writing at most once per `API_KEY_LAST_USED_RESOLUTION` per key."""
    now = now or timezone.now()
    threshold = now - settings.API_KEY_LAST_USED_RESOLUTION
    if api_key.last_used_at is not None and api_key.last_used_at > threshold:
        return
    # The conditional update keeps concurrent requests from all writing the same row.
    ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold), pk=api_key.pk).update(
        last_used_at=now
    )
    api_key.last_used_at = now


def idempotency_claim(*, api_key: ApiKey, key: str, fingerprint: str) -> tuple[IdempotencyRecord, bool]:
    """Claim `key` for this request; returns (record, is_replay).

    is_replay is True when an earlier request with the same fingerprint completed: the caller
    answers with the stored response. Raises IdempotencyMismatch (same key, other request) and
    IdempotencyInFlight (the first request is still running). Safe under concurrency: the
    unique constraint decides which request owns the key.
    """
    if not key or len(key) > 255:
        raise ValidationError.for_field("Idempotency-Key", "Idempotency-Key must be 1 to 255 characters.")
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(api_key=api_key, key=key, fingerprint=fingerprint)
        return record, False
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.get(api_key=api_key, key=key)
    if record.fingerprint != fingerprint:
        raise IdempotencyMismatch(parameters=[IdempotencyMismatch.parameter("Idempotency-Key", value=key)])
    if record.is_completed:
        return record, True
    # Still in flight. A claim older than the timeout belongs to a process that died: take it
    # over with a guarded update so only one retry can.
    stale_before = timezone.now() - settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk, response_status__isnull=True, created_at__lt=stale_before
    ).update(created_at=timezone.now())
    if taken:
        return record, False
    raise IdempotencyInFlight(parameters=[IdempotencyInFlight.parameter("Idempotency-Key", value=key)])


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    """Store the response to replay; call inside the transaction that made the change."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=status, response_body=body, completed_at=timezone.now()
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget an unfinished claim so the client may retry (the request failed, nothing was written)."""
    IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True).delete()


def idempotency_records_purge(*, now: datetime | None = None, batch_size: int = 5000) -> int:
    """Delete records older than IDEMPOTENCY_RETENTION, in batches; returns how many went."""
    cutoff = (now or timezone.now()) - settings.IDEMPOTENCY_RETENTION
    deleted_total = 0
    while True:
        ids = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted_total
        deleted, _ = IdempotencyRecord.objects.filter(pk__in=ids).delete()
        deleted_total += deleted


def _delete_in_batches(queryset, batch_size: int) -> int:
    deleted_total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted_total
        deleted, _ = queryset.model.objects.filter(pk__in=ids).delete()
        deleted_total += deleted


def personal_data_purge(*, now: datetime | None = None, batch_size: int = 5000) -> dict[str, int]:
    """Delete stored payloads that may hold personal data once older than
    PERSONAL_DATA_RETENTION_DAYS: idempotency records (their replayed bodies) and outbox events
    (their payloads; delivery happens long before). Returns how many of each went; safe to rerun."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.PERSONAL_DATA_RETENTION_DAYS)
    return {
        "idempotency_records": _delete_in_batches(IdempotencyRecord.objects.filter(created_at__lt=cutoff), batch_size),
        "outbox_events": _delete_in_batches(OutboxEvent.objects.filter(created_at__lt=cutoff), batch_size),
    }


# --- message variants -------------------------------------------------------------------------

MESSAGE_VARIANT_FIELDS = ("name", "description", "template")


def _message_variant_save(variant: MessageVariant) -> MessageVariant:
    variant.name = (variant.name or "").strip()
    if not variant.name:
        raise ValidationError.for_field("name", "A message variant needs a name.")
    message_template_check(variant.template)
    try:
        with transaction.atomic():
            variant.save()
    except IntegrityError:
        # The unique constraint decides a race between two writers of one name.
        raise Conflict(
            "A message variant with this name already exists in this mode.",
            parameters=[Conflict.parameter("name", value=variant.name)],
        ) from None
    return variant


def message_variant_create(*, livemode: bool, name: str, template: Any, description: str = "") -> MessageVariant:
    """A new variant. Raises ValidationError (no name, a malformed template) and Conflict (the
    name is taken in this mode)."""
    return _message_variant_save(
        MessageVariant(livemode=livemode, name=name, description=description, template=template)
    )


def message_variant_update(*, variant: MessageVariant, **changes: Any) -> MessageVariant:
    """Change name, description or template (the mode is fixed: offers and campaigns of that mode
    name it). Raises like `message_variant_create`; nothing is saved when it raises."""
    for name in MESSAGE_VARIANT_FIELDS:
        if name in changes:
            setattr(variant, name, changes[name])
    return _message_variant_save(variant)


def message_variant_delete(*, variant: MessageVariant) -> None:
    """Delete a variant nothing uses. Raises Conflict while an offer or a campaign names it (their
    messages would silently stop)."""
    try:
        with transaction.atomic():
            variant.delete()
    except ProtectedError as error:
        users = sorted({f"{row._meta.verbose_name} {row.pk}" for row in error.protected_objects})
        raise Conflict(
            f"The message variant is in use by {len(users)} object(s); remove it from them first.",
            parameters=[Conflict.parameter("id", value=str(variant.pk), used_by=users[:10])],
        ) from None


STAFF_GROUPS = ("Marketers", "Order agents", "Integration admins")


def staff_group_permissions_grant(*, apps, grants: dict[str, dict[str, tuple[str, ...]]]) -> None:
    """For data migrations: give each staff group the listed actions on the listed models.

    `grants` maps a group name to {"app_label.model": ("view", "change", "custom_codename", ...)}. Permissions are
    created first: on a fresh database they do not exist until post_migrate otherwise.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for group_name, models_actions in grants.items():
        group, _ = group_model.objects.get_or_create(name=group_name)
        for model_label, actions in models_actions.items():
            app_label, model_name = model_label.split(".")
            # Default actions name the model's permission; anything else is a custom codename.
            codenames = [
                f"{action}_{model_name}" if action in ("add", "change", "delete", "view") else action
                for action in actions
            ]
            permissions = list(
                permission_model.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            )
            if len(permissions) != len(codenames):
                raise RuntimeError(f"Missing permissions for {model_label}: {codenames}")
            group.permissions.add(*permissions)


# In-process listeners of domain events (upper apps, e.g. campaigns reacting to a registration
# or a tier change): called inside the transaction that writes the event, so whatever they
# record commits or rolls back with the change.
OUTBOX_LISTENERS: dict[str, list[Callable[[bool, dict[str, Any]], None]]] = {}


def outbox_listener(*event_types: str):
    """Register `function(livemode, payload)` for these event types."""

    def register(function):
        for event_type in event_types:
            OUTBOX_LISTENERS.setdefault(event_type, []).append(function)
        return function

    return register


def outbox_emit(*, livemode: bool, event_type: str, payload: dict[str, Any]) -> None:
    """Record a domain event. Call inside the transaction that makes the change it reports.
    With a broker, delivery starts right after commit (beat also sweeps every few seconds)."""
    OutboxEvent.objects.create(livemode=livemode, event_type=event_type, payload=payload)
    outbox_emitted(livemode=livemode, event_type=event_type, payload=payload)


_OUTBOX_INSERT_FIELDS = [
    OutboxEvent._meta.get_field(name) for name in ("event_id", "livemode", "event_type", "payload", "created_at")
]


def outbox_insert_sql(*, livemode: bool, event_type: str, payload: dict[str, Any], source: str) -> tuple[str, list]:
    """The row `outbox_emit` writes, as `INSERT … SELECT … FROM <source>` (SQL and parameters),
    for a service that writes its change and the event in one statement on PostgreSQL: `source`
    is a CTE of that statement returning one row when the change happened (no row, no event).
    Call `outbox_emitted` with the same arguments afterwards, in the same transaction."""
    event_id, _, _, _, created_at = (field.get_default() for field in _OUTBOX_INSERT_FIELDS)
    values = (event_id, livemode, event_type, payload, created_at)
    params = [
        field.get_db_prep_save(value, connection) for field, value in zip(_OUTBOX_INSERT_FIELDS, values, strict=True)
    ]
    columns = ", ".join(field.column for field in _OUTBOX_INSERT_FIELDS)
    placeholders = ", ".join(["%s"] * len(params))
    return f"INSERT INTO {OutboxEvent._meta.db_table} ({columns}) SELECT {placeholders} FROM {source}", params


def outbox_emitted(*, livemode: bool, event_type: str, payload: dict[str, Any]) -> None:
    """What follows the recording of an event (by outbox_emit, or a statement with
    outbox_insert_sql): its in-process listeners, and delivery after commit."""
    for listener in OUTBOX_LISTENERS.get(event_type, ()):
        listener(livemode, payload)
    _dispatch_after_commit(livemode, (event_type,))


def outbox_emit_many(*, livemode: bool, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Record many domain events `(event_type, payload)` with one INSERT: `outbox_emit` for bulk
    writes, with the same contract (call inside the transaction of the change; listeners are
    called for each event). Returns how many were recorded."""
    rows = [OutboxEvent(livemode=livemode, event_type=event_type, payload=payload) for event_type, payload in events]
    if not rows:
        return 0
    OutboxEvent.objects.bulk_create(rows)
    for row in rows:
        for listener in OUTBOX_LISTENERS.get(row.event_type, ()):
            listener(livemode, row.payload)
    _dispatch_after_commit(livemode, {row.event_type for row in rows})
    return len(rows)


def _webhook_subscriptions() -> list[tuple[bool, frozenset[str]]]:
    """(mode, event types — empty: all) of every active endpoint, cached per process like
    configuration (core.selectors.config_cached; a save in this process clears it)."""
    return config_cached(
        ("webhook-subscriptions",),
        lambda: [
            (livemode, frozenset(event_types or ()))
            for livemode, event_types in WebhookEndpoint.objects.filter(is_active=True).values_list(
                "livemode", "event_types"
            )
        ],
    )


def _is_subscribed(livemode: bool, event_types: Iterable[str]) -> bool:
    subscriptions = _webhook_subscriptions()
    return any(
        mode == livemode and (not wanted or any(event_type in wanted for event_type in event_types))
        for mode, wanted in subscriptions
    )


def _dispatch_after_commit(livemode: bool, event_types: Iterable[str]) -> None:
    # One dispatch per commit, however many events the transaction wrote (a purchase writes
    # several); outside a transaction on_commit runs at once. Only when an active endpoint
    # wants one of the events: a purchase would otherwise cost workers a second task (fan-out
    # that finds no endpoint). Beat's dispatch every 10 s marks the others dispatched, and
    # delivers to an endpoint created in another process in the seconds its cache is stale.
    if settings.CELERY_TASK_ALWAYS_EAGER or not _is_subscribed(livemode, event_types):
        return
    pending = transaction.get_connection().run_on_commit
    if not any(item[1] is _dispatch_soon for item in pending):
        transaction.on_commit(_dispatch_soon)


def _dispatch_soon() -> None:
    from core.tasks import webhooks_dispatch

    try:
        webhooks_dispatch.delay()
    except Exception:  # noqa: BLE001 - the beat task will dispatch; never fail the committed change
        pass
