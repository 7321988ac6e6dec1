"""``/metrics``: Prometheus metrics, read from the database at each scrape (see
:mod:`digest.app.health`).

Who may read them: with ``metrics.token`` set, any client sending ``Authorization: Bearer
<token>``; without one, only clients on loopback or private networks (Prometheus beside the
app, in the same compose project or LAN), and not through a reverse proxy unless
``web.behind_proxy`` says there is one (then the client the proxy names counts). Others get
404, as if there were no such page. With ``metrics.enabled = false`` it is always 404.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.app import health
from digest.web.context import Web, web_of
from digest.web.routes.common import in_thread

FORWARDED = ("x-forwarded-for", "forwarded", "x-real-ip")


def _private(client: str) -> bool:
    try:
        network = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return False
    address = network.network_address
    return address.is_loopback or address.is_private or address.is_link_local


def allowed(web: Web, request: Request) -> bool:
    token = web.settings.metrics.token
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        )
    if not web.settings.web.behind_proxy and any(h in request.headers for h in FORWARDED):
        # Relayed by a proxy we were not told about: the real client is unknown, and the
        # proxy's own (private) address must not open the metrics to the internet.
        return False
    return _private(web.client(request))


async def metrics_endpoint(request: Request) -> Response:
    web = web_of(request)
    if not web.settings.metrics.enabled or not allowed(web, request):
        return PlainTextResponse("Not Found", status_code=404)
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = health.metrics_registry(web.settings, web.store, web.clock)
        request.app.state.metrics_registry = registry
    body, content_type = await in_thread(
        health.render_metrics, registry, request.headers.get("accept", "")
    )
    return Response(body, headers={"content-type": content_type})


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
