"""The bounce web hook: POST a bounce message (RFC 3464 report, raw bytes) to
``/hooks/bounce`` with the shared secret in ``X-Digest-Secret`` (or ``Authorization:
Bearer <secret>``). Answers: 404 while ``delivery.bounce_hook_secret`` is empty (the hook
is off), 403 for a wrong secret, 413 for an oversized body, 422 for a message that is no
report or matches no subscriber, 503 when the database is away (the sender retries), else
200 with the outcome.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.app.operator import ingest_bounce
from digest.config import Settings
from digest.delivery.bounces import MAX_REPORT_BYTES
from digest.errors import StoreError
from digest.web.context import web_of
from digest.web.routes.common import in_thread

SECRET_HEADER = "x-digest-secret"


def secret_ok(settings: Settings, headers: Any) -> bool:
    """Whether the request's headers carry the configured secret (compared in constant time)."""
    expected = settings.delivery.bounce_hook_secret
    if not expected:
        return False
    given = headers.get(SECRET_HEADER) or ""
    bearer = headers.get("authorization") or ""
    if not given and bearer.lower().startswith("bearer "):
        given = bearer[7:].strip()
    return hmac.compare_digest(given.encode(), expected.encode())


async def bounce(request: Request) -> Response:
    web = web_of(request)
    if not web.settings.delivery.bounce_hook_secret:
        return JSONResponse({"error": "not found"}, status_code=404)
    if not secret_ok(web.settings, request.headers):
        return JSONResponse({"error": "wrong or missing secret"}, status_code=403)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_REPORT_BYTES:
            return JSONResponse({"error": "too large"}, status_code=413)
    try:
        result = await in_thread(ingest_bounce, web.settings, web.store, bytes(body))
    except StoreError:
        return JSONResponse({"error": "database unavailable; try again"}, status_code=503)
    return JSONResponse(asdict(result), status_code=200 if result.accepted else 422)


routes = [Route("/hooks/bounce", bounce, methods=["POST"])]
