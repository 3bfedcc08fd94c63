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
