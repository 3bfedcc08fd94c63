"""The shared cache's Redis client, for the few hot paths that talk to Redis directly."""

from __future__ import annotations

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache


def redis_client():
    """The default cache's Redis client (writes), or None when the cache is not Redis.

    Django's Redis cache builds a new client object for every operation, and a client sets up
    some two hundred response callbacks when it is made: a quarter of a millisecond per request
    on the throttle and on intake. This one is made once per cache backend (thread) and reuses
    that backend's connection pool.
    """
    backend = caches[DEFAULT_CACHE_ALIAS]
    if not isinstance(backend, RedisCache):
        return None
    client = getattr(backend, "_shared_client", None)
    if client is None:
        client = backend._shared_client = backend._cache.get_client(write=True)
    return client


def redis_key(key: str) -> str:
    """`key` as the default cache names it (prefix and version), for use with redis_client().
    Not validated as memcached would want (a walk over every character): the callers' keys
    are short ASCII without spaces."""
    return caches[DEFAULT_CACHE_ALIAS].make_key(key)
