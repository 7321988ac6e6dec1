"""``create_app``: the subscriber web app as one ASGI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from digest.app.access import LinkProblem
from digest.app.candidates import LivePreviews
from digest.app.services import templates_dir
from digest.app.transactional import MailSender
from digest.config import Settings, secret_key
from digest.delivery.mailers import Mailer, make_mailer
from digest.render import default_templates_dir
from digest.store import Store
from digest.web.context import Web, web_of
from digest.web.csrf import Csrf, CsrfCookie
from digest.web.pages import Pages
from digest.web.routes import routes
from digest.web.routes.common import link_problem, message
from digest.web.security import HEADERS, AccessLog, SecurityHeaders, redact_path

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # the largest form is a few kilobytes

ERRORS = {
    400: ("That request could not be read", "Please go back and try again."),
    404: ("Page not found", "Check the address, or start again from the front page."),
    405: ("That is not how this page works", "Please go back and use the page's buttons."),
}


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    mailer_factory: Callable[[], Mailer] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The web app for ``settings``.

    ``store``: an open store to use (the caller closes it); by default one is opened from
    ``settings.database`` (applying migrations) and closed when the app shuts down.
    ``mailer_factory``: makes a mailer for transactional mail; by default the configured one.
    ``clock``: the current time, aware; injected by tests.
    """
    own_store = store is None
    store = store if store is not None else Store.open(settings.database)
    secret = secret_key(settings)
    https = settings.web.base_url.startswith("https://")
    csrf = Csrf(secret, secure=https)
    now = clock or (lambda: datetime.now(UTC))
    mail_sender = MailSender(
        settings, store, mailer_factory or (lambda: make_mailer(settings)), now
    )
    pages = Pages(
        templates_dir(settings),
        brand=settings.mail.from_name,
        csrf_token=csrf.token,
        confirm_days=settings.web.confirm_days,
    )
    web = Web.make(
        settings,
        store,
        now,
        csrf=csrf,
        pages=pages,
        previews=LivePreviews(settings, store),
        mail_sender=mail_sender,
    )
    static = pages.static_dir
    if not static.is_dir():  # a custom templates_dir without its own static files
        static = default_templates_dir() / "web" / "static"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Served for real: retry the confirmations a mail server turned away for now.
        mail_sender.start()
        try:
            yield
        finally:
            mail_sender.close()
            if own_store:
                store.close()

    app = Starlette(
        routes=[
            *routes(),
            # Bounce reports from the mail server (a shared secret; 404 until one is set).
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        middleware=[
            Middleware(AccessLog),
            Middleware(SecurityHeaders, https=https),
            Middleware(CsrfCookie, csrf=csrf),
        ],
        exception_handlers={
            LinkProblem: _link_problem,
            HTTPException: _http_error,
            500: _server_error,
        },
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.web = web
    return app


async def _link_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LinkProblem)
    return link_problem(web_of(request), request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title, text = ERRORS.get(exc.status_code, ("Something is not right", "Please go back."))
    return message(
        web_of(request),
        request,
        title,
        [text],
        status=exc.status_code,
        tone="warn",
        headers=dict(exc.headers or {}),
        actions=[("/", "Front page")],
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # Outside the other middleware: the security headers are added here.
    log.exception("error on %s %s", request.method, redact_path(request.url.path), exc_info=exc)
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Something went wrong</title>"
        "<h1>Something went wrong</h1><p>The error is logged. Please try again in a moment.</p>"
    )
    return HTMLResponse(body, status_code=500, headers={**HEADERS, "cache-control": "no-store"})
