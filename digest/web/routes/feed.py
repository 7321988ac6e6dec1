"""``GET /feed/<token>.atom``: a reader's private Atom feed (see :mod:`digest.app.feed`).

Answers feed readers, not people: errors are one line of plain text (404 for a link that is
not ours, 410 Gone for a revoked link, a deleted or unsubscribed reader), never a page. Polls
are cheap to answer again: a strong ETag over the document's bytes and its Last-Modified;
a matching ``If-None-Match`` (or, without one, an ``If-Modified-Since`` not older than the
feed) gets 304 with no body.
"""

from __future__ import annotations

import hashlib
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.app import feed
from digest.render.atom import CONTENT_TYPE
from digest.web.context import web_of
from digest.web.routes.common import in_thread

# Private: the URL is the reader's secret, so no shared cache may keep a copy.
CACHE = "private, max-age=900"


def _matches(header: str, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110, 13.1.2): W/ is ignored."""
    wanted = [part.strip().removeprefix("W/") for part in header.split(",")]
    return "*" in wanted or etag in wanted


def _not_modified_since(header: str, updated_seconds: int) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    return since.tzinfo is not None and updated_seconds <= int(since.timestamp())


async def show(request: Request) -> Response:
    web = web_of(request)
    try:
        found = await in_thread(feed.document, web, request.path_params["token"])
    except feed.NoFeed as gone:
        return PlainTextResponse(
            gone.text + "\n", status_code=gone.status, headers={"X-Robots-Tag": "noindex"}
        )
    etag = '"' + hashlib.sha256(found.body).hexdigest()[:40] + '"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(found.updated, usegmt=True),
        "Cache-Control": CACHE,
        "X-Robots-Tag": "noindex",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        fresh = _matches(if_none_match, etag)
    else:
        since = request.headers.get("if-modified-since")
        fresh = since is not None and _not_modified_since(since, int(found.updated.timestamp()))
    if fresh:
        return Response(status_code=304, headers=headers)
    return Response(found.body, headers={**headers, "Content-Type": CONTENT_TYPE})


routes = [Route("/feed/{token}.atom", show, methods=["GET"])]
