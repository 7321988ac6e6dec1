"""The routes, one module per area; ``routes()`` lists them all for the app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from digest.web.routes import (
    archive,
    bounce,
    confirm,
    feed,
    feedback,
    health,
    manage,
    metrics,
    subscribe,
    unsubscribe,
)


def routes() -> list[BaseRoute]:
    return [
        *subscribe.routes,
        *confirm.routes,
        *manage.routes,
        *unsubscribe.routes,
        *archive.routes,
        *feedback.routes,
        *feed.routes,
        *health.routes,
        *metrics.routes,
        *bounce.routes,
    ]
