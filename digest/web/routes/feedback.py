""" "More like this" / "fewer like this": the links under each paper of a digest.

``GET /feedback/{token}`` shows the paper and one button; it changes nothing, because mail
scanners and link previews follow GET links. The button POSTs (with the CSRF token, as every
form here) to the same URL, which records the choice, relearns the profile and answers with
what the profile now holds and an undo button (``POST /feedback/{token}/undo``).

The token names the subscriber's public id, the paper's canonical id and the direction; like
an unsubscribe link it never expires, so it never leads to the preferences page itself: it
offers to mail a fresh link there (``POST /feedback/{token}/manage-link``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.app import feedback
from digest.app.feedback import Judged
from digest.render.text import format_authors, one_line
from digest.web import learned
from digest.web.context import Web, web_of
from digest.web.routes.common import guarded, in_thread, mail_link_route

WORDS = {1: "more like this", -1: "fewer like this"}


@dataclass(frozen=True, slots=True)
class PaperView:
    title: str
    authors: str
    canonical_id: str


def _paper(web: Web, judged: Judged) -> PaperView:
    return PaperView(
        one_line(judged.title, 500) or "(untitled)",
        format_authors(list(judged.authors), web.settings.mail.authors_shown),
        judged.canonical_id,
    )


async def show(request: Request) -> Response:
    """The confirmation page: nothing is recorded until its button is pressed."""
    web = web_of(request)
    token = request.path_params["token"]
    judged = await in_thread(feedback.look, web, token)
    context = {
        "base": f"/feedback/{token}",
        "paper": _paper(web, judged),
        "value": judged.value,
        "words": WORDS[judged.value],
        "already": judged.current == judged.value,
    }
    return web.pages.response(request, "feedback.html", context)


async def _answer(request: Request, undo: bool) -> Response:
    token = request.path_params["token"]

    def answer(web: Web, _form: FormData, judged: Judged) -> Response:
        context = {
            "base": f"/feedback/{token}",
            "paper": _paper(web, judged),
            "value": judged.value,
            "words": WORDS[judged.value],
            "undone": undo,
            "changed": judged.changed,
            "learned": learned.view(
                judged.profile, web.clock(), web.settings.feedback.model_min_events
            ),
        }
        return web.pages.response(request, "feedback_done.html", context)

    return await guarded(
        request, lambda web, _form, token: feedback.judge(web, token, undo), answer
    )


async def record(request: Request) -> Response:
    return await _answer(request, undo=False)


async def undo(request: Request) -> Response:
    return await _answer(request, undo=True)


routes = [
    Route("/feedback/{token}", show, methods=["GET"]),
    Route("/feedback/{token}", record, methods=["POST"]),
    Route("/feedback/{token}/undo", undo, methods=["POST"]),
    Route("/feedback/{token}/manage-link", mail_link_route("feedback"), methods=["POST"]),
]
