"""``/healthz``: whether the app can use its database, as JSON, for load balancers."""

from __future__ import annotations

import logging

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import digest
from digest.web.context import Web, web_of
from digest.web.routes.common import in_thread

log = logging.getLogger(__name__)


def _check(web: Web) -> None:
    with web.store.transaction() as session:
        session.execute(text("SELECT 1"))


async def healthz(request: Request) -> JSONResponse:
    web = web_of(request)
    try:
        await in_thread(_check, web)
    except Exception as exc:
        log.error("health check: database unusable: %s", exc)
        return JSONResponse(
            {"status": "error", "database": "unreachable", "version": digest.__version__},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "ok", "version": digest.__version__})


routes = [Route("/healthz", healthz, methods=["GET"])]
