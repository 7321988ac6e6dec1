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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.models import Paper, Subscriber
from digest.render import format_authors, one_line
from digest.store import feedback, subscribers
from digest.web import access, learned
from digest.web.context import Web, web_of
from digest.web.routes.common import csrf_failed, in_thread, read_form
from digest.web.routes.unsubscribe import answer_manage_link, send_manage_link

WORDS = {1: "more like this", -1: "fewer like this"}


@dataclass(frozen=True, slots=True)
class PaperView:
    title: str
    authors: str
    canonical_id: str


def _paper(paper: Paper, shown: int) -> PaperView:
    return PaperView(
        one_line(paper.title, 500) or "(untitled)",
        format_authors(paper.authors, shown),
        paper.canonical_id,
    )


def _look(web: Web, token: str) -> tuple[PaperView, int, int | None]:
    with web.store.transaction() as session:
        person, paper, value = access.feedback(session, web.tokens, token)
        current = feedback.choice(session, person, paper)
        return _paper(paper, web.settings.mail.authors_shown), value, current


async def show(request: Request) -> Response:
    """The confirmation page: nothing is recorded until its button is pressed."""
    web = web_of(request)
    token = request.path_params["token"]
    paper, value, current = await in_thread(_look, web, token)
    context = {
        "base": f"/feedback/{token}",
        "paper": paper,
        "value": value,
        "words": WORDS[value],
        "already": current == value,
    }
    return web.pages.response(request, "feedback.html", context)


def _apply(web: Web, token: str, undo: bool) -> tuple[PaperView, int, learned.LearnedView, bool]:
    now = web.clock()
    with web.store.transaction() as session:
        person, paper, value = access.feedback(session, web.tokens, token)
        if undo:
            changed = feedback.undo(session, person, paper)
        else:
            feedback.record(session, person, paper, value, now)
            changed = True
        if changed:
            feedback.relearn(session, person, web.settings.feedback, now)
        shown = learned.view(
            subscribers.profile_of(person), now, web.settings.feedback.model_min_events
        )
        return _paper(paper, web.settings.mail.authors_shown), value, shown, changed


async def _answer(request: Request, undo: bool) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    token = request.path_params["token"]
    paper, value, shown, changed = await in_thread(_apply, web, token, undo)
    context = {
        "base": f"/feedback/{token}",
        "paper": paper,
        "value": value,
        "words": WORDS[value],
        "undone": undo,
        "changed": changed,
        "learned": shown,
    }
    return web.pages.response(request, "feedback_done.html", context)


async def record(request: Request) -> Response:
    return await _answer(request, undo=False)


async def undo(request: Request) -> Response:
    return await _answer(request, undo=True)


def _person(web: Web, token: str) -> Subscriber:
    with web.store.transaction() as session:
        return access.feedback(session, web.tokens, token)[0]


async def manage_link(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    person = await in_thread(_person, web, request.path_params["token"])
    outcome, mail = await in_thread(send_manage_link, web, person, web.client(request))
    return answer_manage_link(web, request, outcome, mail)


routes = [
    Route("/feedback/{token}", show, methods=["GET"]),
    Route("/feedback/{token}", record, methods=["POST"]),
    Route("/feedback/{token}/undo", undo, methods=["POST"]),
    Route("/feedback/{token}/manage-link", manage_link, methods=["POST"]),
]
