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

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.app import subscriptions
from digest.domain.schedules import when_line
from digest.models import Subscriber
from digest.web.context import Web, web_of
from digest.web.routes.common import guarded, in_thread, mail_link_route, message, read_form


async def show(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    person = await in_thread(subscriptions.unsubscribe_target, web, token)
    context = {"address": person.email, "base": f"/unsubscribe/{token}"}
    if person.status == "unsubscribed":
        return web.pages.response(request, "unsubscribed.html", {**context, "already": True})
    return web.pages.response(request, "unsubscribe.html", context)


async def one_click(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    try:
        form = await read_form(request)
        from_our_page = web.csrf.valid(request, form.get("csrf_token"))
    except Exception:  # a mail client's odd body must not stop the unsubscribe
        from_our_page = False
    address = await in_thread(subscriptions.unsubscribe, web, token)
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


async def resubscribe(request: Request) -> Response:
    def answer(web: Web, _form: FormData, person: Subscriber) -> Response:
        when = when_line(person.frequency, person.weekday, person.send_hour, person.timezone)
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

    token = request.path_params["token"]
    return await guarded(
        request,
        lambda web, _form, token: subscriptions.resubscribe(web, token, "unsubscribe"),
        answer,
    )


routes = [
    Route("/unsubscribe/{token}", show, methods=["GET"]),
    Route("/unsubscribe/{token}", one_click, methods=["POST"]),
    Route("/unsubscribe/{token}/resubscribe", resubscribe, methods=["POST"]),
    Route("/unsubscribe/{token}/manage-link", mail_link_route("unsubscribe"), methods=["POST"]),
]
