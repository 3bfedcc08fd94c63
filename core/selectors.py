"""Reads shared by every app: a small per-process cache for configuration.

Program settings, tiers and earning rules are read by every purchase and change a few times a
year. Each process keeps what it read for a few seconds; a change saved in this process clears
the cache at once (the owning app connects its models' save/delete signals to
`config_cache_clear`), other processes see it within CONFIG_CACHE_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

CONFIG_CACHE_SECONDS = 10.0
_entries: dict[Any, tuple[float, Any]] = {}


def config_cached(key: Any, load: Callable[[], Any]) -> Any:
    now = time.monotonic()
    entry = _entries.get(key)
    if entry is not None and entry[0] > now:
        return entry[1]
    value = load()
    _entries[key] = (now + CONFIG_CACHE_SECONDS, value)
    return value


def config_cache_clear(*args: Any, **kwargs: Any) -> None:
    """Forget everything (usable directly as a signal receiver)."""
    _entries.clear()


# API keys are read by every request. Each process keeps a key row it has read for
# API_KEY_CACHE_SECONDS: revoking a key forgets it in the revoking process at once, and every
# other process reads it again within that window — the longest a revoked key can still be
# used. Only keys that exist are kept (a key created elsewhere works at once).
API_KEY_CACHE_SECONDS = 30.0
_api_keys: dict[str, tuple[float, Any]] = {}


def api_key_by_prefix(prefix: str):
    """The ApiKey row with that prefix (None when there is none), at most API_KEY_CACHE_SECONDS
    old. Callers still verify the presented secret against its hash, and revocation and expiry."""
    from core.models import ApiKey

    now = time.monotonic()
    entry = _api_keys.get(prefix)
    if entry is not None and entry[0] > now:
        return entry[1]
    api_key = ApiKey.objects.filter(prefix=prefix).first()
    if api_key is None:
        _api_keys.pop(prefix, None)
    else:
        if len(_api_keys) > 10_000:  # a bound, not a policy: keys are few
            _api_keys.clear()
        _api_keys[prefix] = (now + API_KEY_CACHE_SECONDS, api_key)
    return api_key


def api_key_cache_forget(*args: Any, prefix: str | None = None, instance: Any = None, **kwargs: Any) -> None:
    """Drop one key (by `prefix`, or the saved/deleted `instance` when used as a signal
    receiver), or every key when neither is given."""
    prefix = prefix or getattr(instance, "prefix", None)
    if prefix is None:
        _api_keys.clear()
    else:
        _api_keys.pop(prefix, None)
