"""A JSON renderer that also takes a body its view already wrote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.api.renderers import FastJSONRenderer


class RenderedJSON:
    """A response body written by the view with JSONRenderer's very output, and the data it
    stands for (built only if a client asks for another layout, e.g. `indent=4`)."""

    def __init__(self, content: bytes, data: Callable[[], Any]) -> None:
        self.content = content
        self.data = data


class RenderedJSONRenderer(FastJSONRenderer):
    """The API's renderer, except that a RenderedJSON body is sent as it is."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, RenderedJSON):
            if self.get_indent(accepted_media_type, renderer_context or {}) is None:
                return data.content
            data = data.data()
        return super().render(data, accepted_media_type, renderer_context)
