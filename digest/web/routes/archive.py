"""The digest archive: "view in browser" for a digest, behind its archive token.

The page is the stored delivery rendered again by the digest renderer, which gives the very
mail that was sent (rendering is a pure function of the stored delivery). One change: the
mail's "manage preferences" link is not handed out here, since archive links never expire
and are not revoked by "sign out everywhere"; it points to a page that mails a fresh link to
the subscriber instead.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.app import archive, subscriptions
from digest.web.context import web_of
from digest.web.routes.common import in_thread, mail_link_route, message
from digest.web.security import ARCHIVE_CSP


async def show(request: Request) -> Response:
    web = web_of(request)
    html = await in_thread(archive.page, web, request.path_params["token"])
    if html is None:
        return message(
            web,
            request,
            "This digest is not ready yet",
            ["Its papers are still being chosen. Please try again in a few minutes."],
            status=404,
        )
    return HTMLResponse(
        html, headers={"Content-Security-Policy": ARCHIVE_CSP, "X-Robots-Tag": "noindex"}
    )


async def manage_page(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    # A bad link fails here, before the button.
    await in_thread(subscriptions.check_holder, web, "archive", token)
    return message(
        web,
        request,
        "Change your preferences",
        [
            "Links in older digests do not open your preferences page directly, so that a "
            "forwarded mail cannot be used to change them.",
            "Press the button and we will email you a fresh link.",
        ],
        forms=[(f"/archive/{token}/manage", "Email me a link to my preferences")],
    )


routes = [
    Route("/archive/{token}", show, methods=["GET"]),
    Route("/archive/{token}/manage", manage_page, methods=["GET"]),
    Route("/archive/{token}/manage", mail_link_route("archive"), methods=["POST"]),
]
