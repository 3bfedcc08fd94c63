"""`Authorization: Api-Key <key>`: `request.auth` is the ApiKey, `request.user` a key principal."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from core.models import ApiKey
from core.selectors import api_key_by_prefix
from core.services import api_key_touch

KEYWORD = "Api-Key"


class ApiKeyPrincipal:
    """Stands in for `request.user` on API requests: the caller is a key, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.pk = None
        self.id = None

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        key = key.strip()
        if keyword != KEYWORD or not key:
            raise exceptions.AuthenticationFailed(f"Use the header 'Authorization: {KEYWORD} <key>'.")
        prefix = key.partition(".")[0]
        if not (prefix.startswith("lk_live_") or prefix.startswith("lk_test_")):
            raise exceptions.AuthenticationFailed("Malformed API key: keys start with lk_live_ or lk_test_.")
        # The row may be up to API_KEY_CACHE_SECONDS old (revocation reaches every process within
        # that); the secret is checked against its hash on every request.
        api_key = api_key_by_prefix(prefix)
        if api_key is None or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if api_key.revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        api_key_touch(api_key=api_key)
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        # A value here makes DRF answer 401 (not 403) to unauthenticated requests.
        return KEYWORD
