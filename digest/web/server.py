"""Serving the web app with uvicorn: ``digest web`` and the web half of ``digest serve``."""

from __future__ import annotations

import logging

import uvicorn

from digest.config import Settings
from digest.store import Store
from digest.web.app import create_app

log = logging.getLogger(__name__)


def make_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    store: Store | None = None,
) -> uvicorn.Server:
    """A uvicorn server for the app, not yet started (``.run()`` blocks; tests run it in a
    thread and stop it with ``should_exit = True``)."""
    config = uvicorn.Config(
        create_app(settings, store),
        host=host or settings.web.host,
        port=port or settings.web.port,
        # Our own access log leaves tokens out of the paths; uvicorn's would log them.
        access_log=False,
        # The app reads X-Forwarded-For itself when web.behind_proxy is set.
        proxy_headers=False,
        server_header=False,
        log_config=None,
        lifespan="on",
    )
    return uvicorn.Server(config)


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the web app until interrupted (Ctrl-C or SIGTERM)."""
    server = make_server(settings, host, port)
    log.info(
        "web app on http://%s:%d (public address %s)",
        server.config.host,
        server.config.port,
        settings.web.base_url,
    )
    server.run()
