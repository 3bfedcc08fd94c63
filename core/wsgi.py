"""The WSGI application: API requests and pages go through two Django handlers that differ
only in their middleware.

An API request is authenticated by its key and answered in JSON: sessions, CSRF, the user
middleware, messages and the clickjacking header serve the admin, not it (nor the schema and
its Swagger page, also under /api/, which read no session and take no form). Their
chain cost about 6% of a lock or redeem call's CPU (instructions counted under callgrind). So a
request under /api/ runs only the middleware it needs (security headers, the API error
contract) in the order settings.MIDDLEWARE gives them; everything else runs the full chain.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

API_PREFIX = "/api/"
API_MIDDLEWARE = frozenset({"django.middleware.security.SecurityMiddleware", "core.middleware.ApiErrorMiddleware"})


class ApiHandler(WSGIHandler):
    """Django's handler with the API's share of settings.MIDDLEWARE."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware reads settings.MIDDLEWARE: it sees the API's share while
        # this handler is built (once per process, before it serves anything).
        everything = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in everything if path in API_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = everything


class Application:
    def __init__(self) -> None:
        django.setup(set_prefix=False)
        self.pages = WSGIHandler()
        self.api = ApiHandler()

    def __call__(self, environ, start_response):
        handler = self.api if environ.get("PATH_INFO", "").startswith(API_PREFIX) else self.pages
        return handler(environ, start_response)
