"""Confirming: a subscription (``/confirm/…``) and a new address (``/confirm-email/…``).

Mail scanners open links, so a GET only shows a page with a button; the POST does the work.
An expired confirmation link says so and offers a fresh one, sent to the subscriber's own
address.
"""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    link_problem,
    manage_path,
    message,
    read_form,
    redirect,
    too_many_for_address,
    too_many_from_client,
)
from digest.web.routes.subscribe import check_inbox


def _show(web: Web, token: str) -> dict[str, object]:
    with web.store.transaction() as session:
        person = access.confirm(session, web.tokens, token, web.confirm_max_age)
        return {
            "address": person.email,
            "active": person.status == "active",
            "manage_path": manage_path(web, person) if person.status == "active" else "",
            "when": _schedule_line(person),
        }


def _schedule_line(person: subscribers.Subscriber) -> str:
    hour = f"{person.send_hour:02d}:00"
    if person.frequency == "weekly" and person.weekday is not None:
        day = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[
            person.weekday
        ]
        return f"every {day} at {hour} ({person.timezone})"
    return f"every day at {hour} ({person.timezone})"


async def show(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    try:
        context = await in_thread(_show, web, token)
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    context.update(kind="subscription", action=f"/confirm/{token}")
    return web.pages.response(request, "confirm.html", context)


def _activate(web: Web, token: str, now: datetime) -> str:
    with web.store.transaction() as session:
        person = access.confirm(session, web.tokens, token, web.confirm_max_age)
        if person.status != "active":
            subscribers.activate(person, now)
        return manage_path(web, person)


async def activate(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    try:
        path = await in_thread(_activate, web, request.path_params["token"], web.clock())
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    return redirect(f"{path}?welcome=1")


def _resend(web: Web, token: str, client: str) -> tuple[str, str, int | None]:
    """(outcome, address, queued mail id): outcome is sent, client-limit or address-limit."""
    now = web.clock()
    with web.store.transaction() as session:
        if not web.limiter.take(session, client_limit(web), client, now):
            return "client-limit", "", None
    with web.store.transaction() as session:
        person = access.expired_confirm(session, web.tokens, token)
        key = address_value(person.email)
        if not web.limiter.allows(session, address_limit(web), key, now):
            return "address-limit", "", None
        if person.status == "active":
            url = web.links.manage(person.public_id, person.token_version)
            mail, kind = web.mails.manage_link(person.email, url, "already"), "manage_link"
        else:
            url = web.links.confirm(person.public_id, person.token_version)
            mail, kind = web.mails.confirm_subscription(person.email, url), "confirm"
        web.limiter.record(session, address_limit(web).bucket, key, now)
        return "sent", person.email, web.queue_mail(session, mail, kind, person.email, person.id)


async def resend(request: Request) -> Response:
    """POST /confirm/{token}/resend: a fresh link for an expired one, to the same address."""
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    outcome, address, mail = await in_thread(
        _resend, web, request.path_params["token"], web.client(request)
    )
    if outcome == "client-limit":
        return too_many_from_client(web, request)
    if outcome == "address-limit":
        return too_many_for_address(web, request)
    response = check_inbox(web, request, address)
    response.background = web.send_later(mail) if mail else None
    return response


# -- a new address -----------------------------------------------------------------------


def _show_address(web: Web, token: str) -> dict[str, object]:
    with web.store.transaction() as session:
        change = web.address_tokens.read(session, token, web.confirm_max_age)
        return {
            "address": change.new_address,
            "old_address": change.subscriber.email,
            "active": False,
            "manage_path": "",
            "when": "",
        }


async def show_address(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    try:
        context = await in_thread(_show_address, web, token)
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    context.update(kind="new-address", action=f"/confirm-email/{token}")
    return web.pages.response(request, "confirm.html", context)


def _change_address(web: Web, token: str, now: datetime) -> str | None:
    """The new manage path, or None when the new address has a subscription of its own."""
    with web.store.transaction() as session:
        change = web.address_tokens.read(session, token, web.confirm_max_age)
        person = change.subscriber
        address, key = subscribers.normalise_email(change.new_address)
        other = subscribers.find(session, address)
        if other is not None and other.id != person.id:
            return None
        person.email = address
        person.email_key = key
        person.pending_email = None
        person.token_version += 1  # links sent to the old address stop working
        person.updated_at = now
        session.flush()
        return manage_path(web, person)


async def change_address(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    try:
        path = await in_thread(_change_address, web, request.path_params["token"], web.clock())
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    if path is None:
        return message(
            web,
            request,
            "That address already has a subscription",
            [
                "The address you confirmed receives its own digest from us, so we cannot move "
                "this subscription onto it. Nothing was changed.",
                "Unsubscribe one of the two first (every digest has a link), then try again.",
            ],
            status=409,
            tone="warn",
        )
    return redirect(f"{path}?email_changed=1")


routes = [
    Route("/confirm/{token}", show, methods=["GET"]),
    Route("/confirm/{token}", activate, methods=["POST"]),
    Route("/confirm/{token}/resend", resend, methods=["POST"]),
    Route("/confirm-email/{token}", show_address, methods=["GET"]),
    Route("/confirm-email/{token}", change_address, methods=["POST"]),
]
