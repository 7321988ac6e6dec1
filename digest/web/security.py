"""Security headers on every response, the client's address, and a token-free access log.

Pages carry a strict Content-Security-Policy: scripts and styles only from our own
``/static/`` files (no inline script, no inline style), nothing framed, forms posting only to
us. The one exception is the digest archive, which shows a stored mail whose HTML has inline
styles: it gets a policy that allows those styles and nothing else (no script at all).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("digest.web")

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

# A stored digest: its HTML was made for mail clients and styles itself inline.
ARCHIVE_CSP = "; ".join(
    [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src https: data:",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Links in pages carry tokens in their path: never send them on to another site.
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class SecurityHeaders:
    """Adds the headers above to every HTTP response that has not set its own."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                if "cache-control" not in headers:
                    # Pages hold personal data and tokens: no shared or back-button caches.
                    headers["cache-control"] = "public, max-age=86400" if static else "no-store"
                if self.https:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def client_address(scope: Scope, behind_proxy: bool) -> str:
    """Who is asking, for rate limits: the peer, or the address our own proxy saw.

    Behind a proxy the right-most X-Forwarded-For entry is the one that proxy added; entries
    to its left come from the client and cannot be trusted. IPv6 clients are grouped by /64,
    since one host usually has a whole /64 to pick addresses from.
    """
    client = scope.get("client")
    host = client[0] if client else ""
    if behind_proxy:
        forwarded = Headers(scope=scope).get("x-forwarded-for", "")
        last = forwarded.split(",")[-1].strip()
        if last:
            host = last
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


QUIET_PATHS = frozenset({"/healthz", "/metrics"})

_TOKENISH = re.compile(r"/[A-Za-z0-9._~-]{20,}")


def redact_path(path: str) -> str:
    """A path with its long opaque segments (signed tokens) cut out, for logs."""
    return _TOKENISH.sub("/…", path)


class AccessLog:
    """One log line per request, without tokens (uvicorn's own access log is turned off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            # Probes and scrapes arrive every few seconds: logged only at debug when fine.
            quiet = scope["path"] in QUIET_PATHS and status < 400
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %d %.0fms",
                scope["method"],
                redact_path(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
