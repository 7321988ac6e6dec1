"""The front page: subscribe, the "check your inbox" answer, and the live preview fragment.

The enumeration rule: whatever the state of the address (new, pending, active, unsubscribed),
a valid sign-up gets the same page with the same status and the same bytes, after the same
work (one lookup, one write, one mail rendered and queued). New, pending and unsubscribed
addresses are sent a confirmation link; an active one is sent a link to its preferences
instead, and nothing about it changes until that link is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.app import subscriptions
from digest.domain.profiles import Profile
from digest.web import forms
from digest.web.context import Web, web_of
from digest.web.preview import Preview, preview
from digest.web.routes.common import check_inbox, in_thread, read_form, refused

HONEYPOT = "website"  # hidden from people; bots fill it in


def preview_of(web: Web, profile: Profile | None, limit: int) -> Preview:
    """A new reader's first digest for ``profile``."""
    profile = profile or Profile()
    picks, scanned = web.previews.new_reader(profile, max(1, min(limit, 50)), web.clock())
    return preview(web.settings, picks, scanned, profile, returning=False)


async def front_page(
    request: Request,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    *,
    status: int = 200,
    notice: str | None = None,
    profile: Profile | None = None,
) -> Response:
    web = web_of(request)
    limit = web.settings.subscribers.default_max_papers
    preview = await in_thread(preview_of, web, profile, limit)
    context = {
        "values": values or forms.blank_values(web.settings),
        "submitted": values is not None,  # a form sent back: app.js leaves its fields alone
        "errors": errors or {},
        "preview": preview,
        "preview_errors": {},
        "notice": notice,
        "robots": "index",
    }
    return web.pages.response(request, "subscribe.html", context, status=status)


async def show(request: Request) -> Response:
    return await front_page(request)


@dataclass
class Outcome:
    kind: str  # sent, invalid, client-limit, address-limit, bot
    checked: forms.Checked | None = None
    asked: subscriptions.Asked | None = None


def _subscribe(web: Web, form: Any, client: str) -> Outcome:
    if not subscriptions.client_allowed(web, client):
        return Outcome("client-limit")
    checked = forms.read_subscribe(form, web.settings)
    if form.get(HONEYPOT):
        return Outcome("bot", checked)
    if not checked.ok:
        return Outcome("invalid", checked)
    assert checked.email and checked.changes is not None and checked.schedule
    asked = subscriptions.sign_up(web, checked.email, checked.changes, checked.schedule)
    return Outcome(asked.outcome, checked, asked)


async def submit(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        checked = forms.read_subscribe(form, web.settings)
        notice = (
            "Your form had expired, so nothing was sent. Everything you typed is still here: "
            "please press Subscribe again."
        )
        return await front_page(request, checked.values, {}, status=403, notice=notice)
    outcome = await in_thread(_subscribe, web, form, web.client(request))
    turned_down = refused(web, request, outcome.kind)
    if turned_down is not None:
        return turned_down
    assert outcome.checked is not None
    if outcome.kind == "invalid":
        checked = outcome.checked
        notice = "Please fix the fields marked below; everything else is kept."
        return await front_page(request, checked.values, checked.errors, status=400, notice=notice)
    address = outcome.checked.email or outcome.checked.values.get("email", "")
    response = check_inbox(web, request, address)
    response.background = web.send_later(outcome.asked.mail_id if outcome.asked else None)
    return response


async def preview_fragment(request: Request) -> Response:
    """GET /preview?include=…: the preview panel's HTML for the topics being typed."""
    web = web_of(request)
    checked = forms.read_topics(request.query_params)
    raw_limit = request.query_params.get("max_papers", "")
    limit = int(raw_limit) if raw_limit.isdigit() else web.settings.subscribers.default_max_papers
    preview = await in_thread(preview_of, web, checked.profile, limit) if checked.ok else None
    html = web.pages.render("_preview.html", {"preview": preview, "preview_errors": checked.errors})
    return HTMLResponse(html, headers={"X-Robots-Tag": "noindex"})


routes = [
    Route("/", show, methods=["GET"]),
    Route("/", submit, methods=["POST"]),
    Route("/preview", preview_fragment, methods=["GET"]),
]
