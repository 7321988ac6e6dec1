"""Helpers every area's routes share: reading forms, the CSRF and link preamble, the
standard answers. Routes call ``digest.app`` for everything else, and never each other."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from digest.app.access import LinkProblem
from digest.app.subscriptions import Asked, mail_manage_link
from digest.web.context import Web, web_of

T = TypeVar("T")

__all__ = ["in_thread"]

in_thread = run_in_threadpool

MAX_FIELDS = 400  # the category picker sends one field per ticked box
MAX_PART_BYTES = 64 * 1024


async def read_form(request: Request) -> FormData:
    """The posted form (urlencoded or multipart), files refused and sizes capped."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_PART_BYTES)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def message(
    web: Web,
    request: Request,
    title: str,
    paragraphs: list[str],
    *,
    status: int = 200,
    tone: str = "info",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    context = {
        "title": title,
        "paragraphs": paragraphs,
        "tone": tone,
        "actions": extra.pop("actions", []),
        "forms": extra.pop("forms", []),
        **extra,
    }
    return web.pages.response(request, "message.html", context, status=status, headers=headers)


def link_problem(web: Web, request: Request, problem: LinkProblem) -> Response:
    context = {"problem": problem, "resend": problem.purpose == "confirm" and problem.token}
    return web.pages.response(request, "link_problem.html", context, status=problem.status)


def csrf_failed(web: Web, request: Request) -> Response:
    return message(
        web,
        request,
        "Please try that again",
        [
            "This form had expired, or your browser did not send back the cookie that shows "
            "the form came from this site. Nothing was changed.",
            "Go back, reload the page and submit it again. If it keeps happening, allow "
            "cookies for this site: we use one, only to protect your forms.",
        ],
        status=403,
        tone="warn",
    )


def check_inbox(web: Web, request: Request, address: str, status: int = 200) -> HTMLResponse:
    return web.pages.response(request, "check_inbox.html", {"address": address}, status=status)


def refused(web: Web, request: Request, outcome: str) -> Response | None:
    """The answer to a request a rate limit turned down ("client-limit", "address-limit"),
    or None when it went through (any other outcome)."""
    limits = web.settings.web
    if outcome == "client-limit":
        title = "Too many attempts"
        lines = [
            f"We accept at most {limits.subscribe_per_client_per_hour} of these forms per hour "
            "from one network, to keep the site from being used to send mail to people who "
            "did not ask for it.",
            "Nothing was sent. Please try again in an hour.",
        ]
        retry_after = 3600
    elif outcome == "address-limit":
        title = "We have already written to this address today"
        lines = [
            f"We send at most {limits.confirm_mails_per_address_per_day} of these mails to one "
            "address per day, so that nobody can flood someone's inbox through this form.",
            "Nothing was sent this time. Please look for the earlier mails (and in your spam "
            "folder), or try again tomorrow.",
        ]
        retry_after = 86400
    else:
        return None
    headers = {"Retry-After": str(retry_after)}
    return message(web, request, title, lines, status=429, tone="warn", headers=headers)


def link_mailed(web: Web, request: Request, asked: Asked) -> Response:
    """The answer to "email me a link to my preferences", from any page that offers it."""
    response = refused(web, request, asked.outcome) or message(
        web,
        request,
        "Check your inbox",
        [
            "We have emailed you a link to your preferences. It opens a page where you can "
            "change your topics, the time of your digest, or pause it for a while.",
        ],
        tone="ok",
    )
    response.background = web.send_later(asked.mail_id)
    return response


async def guarded(
    request: Request,
    work: Callable[[Web, FormData, str], T],
    answer: Callable[[Web, FormData, T], Awaitable[Response] | Response],
) -> Response:
    """The preamble of every form POST on a page behind a link: the CSRF token is checked,
    ``work(web, form, token)`` runs in a thread, and ``answer`` makes the page; a stale form
    gets its own answer (a bad link raises LinkProblem, which the app answers everywhere)."""
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    result = await in_thread(work, web, form, request.path_params["token"])
    made = answer(web, form, result)
    return await made if inspect.isawaitable(made) else made  # type: ignore[return-value]


def mail_link_route(purpose: str) -> Callable[[Request], Awaitable[Response]]:
    """POST …/manage-link behind an unsubscribe, feedback or archive link."""

    async def endpoint(request: Request) -> Response:
        def work(web: Web, _form: FormData, token: str) -> Asked:
            return mail_manage_link(web, purpose, token, web.client(request))

        return await guarded(
            request, work, lambda web, _form, asked: link_mailed(web, request, asked)
        )

    return endpoint
