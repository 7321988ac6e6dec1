"""``/healthz``: whether the app can use its database, as JSON, for load balancers."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import digest
from digest.app.health import healthy
from digest.web.context import web_of
from digest.web.routes.common import in_thread

log = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    web = web_of(request)
    if not await in_thread(healthy, web.store):
        return JSONResponse(
            {"status": "error", "database": "unreachable", "version": digest.__version__},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "ok", "version": digest.__version__})


routes = [Route("/healthz", healthz, methods=["GET"])]
