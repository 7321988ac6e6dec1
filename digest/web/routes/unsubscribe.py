"""Unsubscribe: RFC 8058 one-click, a page with a button, and what to do instead.

``POST /unsubscribe/{token}`` unsubscribes at once, whatever the body, with or without
cookies, and answers 200 with no redirect: that is the one-click POST a mail client sends
(``List-Unsubscribe=One-Click``). When the POST comes from our own page's button (its CSRF
token is valid) the answer is the full page that offers to resubscribe or to adjust topics
instead; otherwise it is a short page that sets no cookie.

The unsubscribe link never expires and is not revoked by "sign out everywhere", so the link in
an old mail always works. For the same reason it never hands out a link to the preferences
page: "adjust my topics" mails a fresh one to the subscriber's own address.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.models import Subscriber
from digest.store import subscribers
from digest.web import access
from digest.web.access import LinkProblem
from digest.web.context import Web, web_of
from digest.web.routes.common import (
    address_limit,
    address_value,
    client_limit,
    csrf_failed,
    in_thread,
    message,
    read_form,
    too_many_for_address,
    too_many_from_client,
)


def _find(web: Web, token: str) -> tuple[str, str]:
    with web.store.transaction() as session:
        person = access.unsubscribe(session, web.tokens, token)
        return person.email, person.status


async def show(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    address, status = await in_thread(_find, web, token)
    context = {"address": address, "base": f"/unsubscribe/{token}"}
    if status == "unsubscribed":
        return web.pages.response(request, "unsubscribed.html", {**context, "already": True})
    return web.pages.response(request, "unsubscribe.html", context)


def _unsubscribe(web: Web, token: str) -> str | None:
    with web.store.transaction() as session:
        try:
            person = access.unsubscribe(session, web.tokens, token)
        except LinkProblem as problem:
            if problem.reason == "unknown":
                return None  # deleted: there is nothing left to stop
            raise
        subscribers.unsubscribe(person, web.clock())
        return person.email


async def one_click(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    try:
        form = await read_form(request)
        from_our_page = web.csrf.valid(request, form.get("csrf_token"))
    except Exception:  # a mail client's odd body must not stop the unsubscribe
        from_our_page = False
    address = await in_thread(_unsubscribe, web, token)
    if from_our_page and address is not None:
        context = {"address": address, "base": f"/unsubscribe/{token}", "already": False}
        return web.pages.response(request, "unsubscribed.html", context)
    return message(
        web,
        request,
        "You are unsubscribed",
        ["We will not send you any more digests."],
        tone="ok",
    )


def _resubscribe(web: Web, token: str) -> Subscriber:
    with web.store.transaction() as session:
        person = access.unsubscribe(session, web.tokens, token)
        if person.status != "active":
            subscribers.activate(person, web.clock())
        return person


async def resubscribe(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    person = await in_thread(_resubscribe, web, token)
    when = (
        f"every day at {person.send_hour:02d}:00 ({person.timezone})"
        if person.frequency == "daily"
        else f"every week at {person.send_hour:02d}:00 ({person.timezone})"
    )
    return message(
        web,
        request,
        "Welcome back",
        [
            f"Your digests to {person.email} start again, {when}, with the topics you had.",
            "Want to change those topics? We can email you a link to your preferences.",
        ],
        tone="ok",
        forms=[(f"/unsubscribe/{token}/manage-link", "Email me a link to my preferences")],
    )


def send_manage_link(web: Web, person: Subscriber, client: str) -> tuple[str, int | None]:
    """Mail ``person`` a fresh link to their preferences, within the rate limits."""
    now = web.clock()
    with web.store.transaction() as session:
        if not web.limiter.take(session, client_limit(web), client, now):
            return "client-limit", None
        key = address_value(person.email)
        if not web.limiter.allows(session, address_limit(web), key, now):
            return "address-limit", None
        url = web.links.manage(person.public_id, person.token_version)
        mail = web.mails.manage_link(person.email, url, "requested")
        web.limiter.record(session, address_limit(web).bucket, key, now)
        return "sent", web.queue_mail(session, mail, "manage_link", person.email, person.id)


def answer_manage_link(web: Web, request: Request, outcome: str, mail: int | None) -> Response:
    if outcome == "client-limit":
        return too_many_from_client(web, request)
    if outcome == "address-limit":
        return too_many_for_address(web, request)
    response = message(
        web,
        request,
        "Check your inbox",
        [
            "We have emailed you a link to your preferences. It opens a page where you can "
            "change your topics, the time of your digest, or pause it for a while.",
        ],
        tone="ok",
    )
    if mail:
        response.background = web.send_later(mail)
    return response


def _person(web: Web, token: str) -> Subscriber:
    with web.store.transaction() as session:
        return access.unsubscribe(session, web.tokens, token)


async def manage_link(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    person = await in_thread(_person, web, request.path_params["token"])
    outcome, mail = await in_thread(send_manage_link, web, person, web.client(request))
    return answer_manage_link(web, request, outcome, mail)


routes = [
    Route("/unsubscribe/{token}", show, methods=["GET"]),
    Route("/unsubscribe/{token}", one_click, methods=["POST"]),
    Route("/unsubscribe/{token}/resubscribe", resubscribe, methods=["POST"]),
    Route("/unsubscribe/{token}/manage-link", manage_link, methods=["POST"]),
]
