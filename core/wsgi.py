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

import functools

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

API_PREFIX = "/api/"
API_MIDDLEWARE = frozenset({"django.middleware.security.SecurityMiddleware", "core.middleware.ApiErrorMiddleware"})


def release_request(response) -> None:
    """Cut the references DRF's request, view and response keep to one another, once the server
    has closed the response.

    DRF's request holds a parser context naming itself and the view; the view holds the request
    and the response, whose renderer context names both again. Such a ring outlives the request
    until the cyclic garbage collector finds it, with everything it reaches: the request body as
    parsed, the response data, Django's request. At 100–200 such objects a request, the young
    generation filled every few dozen requests and each collection paused a worker for 15–40 ms
    (20–80 ms for a full one). Cut, reference counting frees them all when the server drops the
    response.
    """
    context = getattr(response, "renderer_context", None)
    if not context:
        return
    response.renderer_context = None
    request = context.get("request")
    if request is not None:
        request.parser_context = None
    view = context.get("view")
    if view is not None:
        for name in ("request", "response", "args", "kwargs", "headers"):
            view.__dict__.pop(name, None)


class ApiHandler(WSGIHandler):
    """Django's handler with the API's share of settings.MIDDLEWARE; see release_request for
    what happens when a response is closed."""

    def get_response(self, request):
        response = super().get_response(request)
        # Closers run (then are dropped) when the server closes the response.
        response._resource_closers.append(functools.partial(release_request, response))
        return response

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
