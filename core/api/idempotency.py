"""`Idempotency-Key` for creating POSTs: decorate the view method with `@idempotent`.

The claim is committed before the handler runs (so a concurrent twin sees it), and the stored
response is written inside the same database transaction as the handler's own writes: either
both happen or neither, so a crash can never leave a change without its replayable answer.
"""

from __future__ import annotations

import functools
import hashlib
import json

from django.db import transaction
from rest_framework.response import Response
from rest_framework.utils import encoders

from core import services

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"


def request_fingerprint(request) -> str:
    try:
        body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        body = request.body.decode("utf-8", "replace")
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b" ")
    digest.update(request.path.encode())
    digest.update(b"\n")
    digest.update(body.encode())
    return digest.hexdigest()


def idempotent(view_method):
    @functools.wraps(view_method)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(view, request, *args, **kwargs)
        record, is_replay = services.idempotency_claim(
            api_key=request.auth, key=key.strip(), fingerprint=request_fingerprint(request)
        )
        if is_replay:
            return Response(record.response_body, status=record.response_status, headers={REPLAY_HEADER: "true"})
        try:
            with transaction.atomic():
                response = view_method(view, request, *args, **kwargs)
                if response.status_code < 500:
                    # Stored as the client saw it (DRF's encoding of dates and decimals), so a
                    # replay is the same document, not a re-encoding with other precision.
                    body = json.loads(json.dumps(response.data, cls=encoders.JSONEncoder))
                    services.idempotency_complete(record=record, status=response.status_code, body=body)
        except BaseException:
            services.idempotency_release(record=record)
            raise
        if response.status_code >= 500:
            services.idempotency_release(record=record)
        return response

    return wrapper
