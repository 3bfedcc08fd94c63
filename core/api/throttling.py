"""Throttles keyed on the API key. This module must not import DRF views (settings load it)."""

from rest_framework.throttling import SimpleRateThrottle

from core.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
