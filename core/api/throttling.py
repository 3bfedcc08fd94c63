"""Throttles keyed on the API key. This module must not import DRF views (settings load it)."""

from rest_framework.throttling import SimpleRateThrottle

from core.cache import redis_client, redis_key
from core.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    """A fixed-window counter per API key: one atomic `incr` per request.

    DRF's own SimpleRateThrottle keeps every request's timestamp in one cache entry and rewrites
    the whole list on each request: at thousands of requests a minute that list is read and
    written in full every time. A window may let through up to twice the rate across its edge.
    On Redis the counter costs one round trip (INCR and EXPIRE … NX pipelined): Django's cache
    API would take three (SET NX, then EXISTS and INCR inside `incr`).
    """

    scope = "api_key"

    def allow_request(self, request, view) -> bool:
        if self.rate is None or not isinstance(request.auth, ApiKey):
            return True
        now = self.timer()
        window = int(now // self.duration)
        key = f"throttle:{self.scope}:{request.auth.pk}:{window}"
        self.wait_seconds = (window + 1) * self.duration - now
        return self._count(key, timeout=self.duration + 1) <= self.num_requests

    def _count(self, key: str, *, timeout: int) -> int:
        client = redis_client()
        if client is not None:
            key = redis_key(key)
            pipeline = client.pipeline(transaction=False)
            pipeline.incr(key)
            pipeline.expire(key, timeout, nx=True)  # the window's first request sets its end
            count, _ = pipeline.execute()
            return count
        self.cache.add(key, 0, timeout=timeout)  # no-op when the window's counter exists
        try:
            return self.cache.incr(key)
        except ValueError:  # the counter was evicted between add and incr
            self.cache.set(key, 1, timeout=timeout)
            return 1

    def wait(self) -> float:
        return max(self.wait_seconds, 1)
