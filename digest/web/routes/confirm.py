"""Confirming: a subscription (``/confirm/…``) and a new address (``/confirm-email/…``).

Mail scanners open links, so a GET only shows a page with a button; the POST does the work.
An expired confirmation link says so and offers a fresh one, sent to the subscriber's own
address.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.app import subscriptions
from digest.app.subscriptions import Asked
from digest.domain.schedules import when_line
from digest.web.context import Web, web_of
from digest.web.routes.common import (
    check_inbox,
    guarded,
    in_thread,
    message,
    redirect,
    refused,
)


def _show(web: Web, token: str) -> dict[str, object]:
    person = subscriptions.pending_confirmation(web, token)
    active = person.status == "active"
    return {
        "address": person.email,
        "active": active,
        "manage_path": subscriptions.manage_path(web, person) if active else "",
        "when": when_line(person.frequency, person.weekday, person.send_hour, person.timezone),
    }


async def _page(
    request: Request, load: Callable[[Web, str], dict[str, object]], kind: str, path: str
) -> Response:
    """The page a confirmation link opens: what it confirms, and a button (a GET changes
    nothing: mail scanners open links)."""
    web = web_of(request)
    token = request.path_params["token"]
    context = await in_thread(load, web, token)
    context.update(kind=kind, action=f"{path}/{token}")
    return web.pages.response(request, "confirm.html", context)


async def show(request: Request) -> Response:
    return await _page(request, _show, "subscription", "/confirm")


async def activate(request: Request) -> Response:
    return await guarded(
        request,
        lambda web, _form, token: subscriptions.confirm(web, token),
        lambda _web, _form, path: redirect(f"{path}?welcome=1"),
    )


async def resend(request: Request) -> Response:
    """POST /confirm/{token}/resend: a fresh link for an expired one, to the same address."""

    def work(web: Web, _form: FormData, token: str) -> Asked:
        return subscriptions.resend_confirmation(web, token, web.client(request))

    def answer(web: Web, _form: FormData, asked: Asked) -> Response:
        response = refused(web, request, asked.outcome) or check_inbox(web, request, asked.address)
        response.background = web.send_later(asked.mail_id)
        return response

    return await guarded(request, work, answer)


# -- a new address -----------------------------------------------------------------------


def _show_address(web: Web, token: str) -> dict[str, object]:
    change = subscriptions.pending_address(web, token)
    return {
        "address": change.new_address,
        "old_address": change.subscriber.email,
        "active": False,
        "manage_path": "",
        "when": "",
    }


async def show_address(request: Request) -> Response:
    return await _page(request, _show_address, "new-address", "/confirm-email")


async def change_address(request: Request) -> Response:
    def answer(web: Web, _form: FormData, path: str | None) -> Response:
        if path is not None:
            return redirect(f"{path}?email_changed=1")
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

    return await guarded(
        request, lambda web, _form, token: subscriptions.confirm_address(web, token), answer
    )


routes = [
    Route("/confirm/{token}", show, methods=["GET"]),
    Route("/confirm/{token}", activate, methods=["POST"]),
    Route("/confirm/{token}/resend", resend, methods=["POST"]),
    Route("/confirm-email/{token}", show_address, methods=["GET"]),
    Route("/confirm-email/{token}", change_address, methods=["POST"]),
]
