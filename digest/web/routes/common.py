"""Helpers every area's routes share: reading forms, the standard answers, rate limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest.models import Subscriber
from digest.store.ratelimit import ADDRESS_MAIL, CLIENT, Limit
from digest.web.access import LinkProblem
from digest.web.context import Web

__all__ = ["in_thread"]

in_thread = run_in_threadpool

MAX_FIELDS = 400  # the category picker sends one field per ticked box
MAX_PART_BYTES = 64 * 1024


async def read_form(request: Request) -> FormData:
    """The posted form (urlencoded or multipart), files refused and sizes capped."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_PART_BYTES)


def client_limit(web: Web) -> Limit:
    return Limit(CLIENT, web.settings.web.subscribe_per_client_per_hour, timedelta(hours=1))


def address_limit(web: Web) -> Limit:
    return Limit(
        ADDRESS_MAIL, web.settings.web.confirm_mails_per_address_per_day, timedelta(days=1)
    )


def address_value(email: str) -> str:
    return email.strip().casefold()


def manage_path(web: Web, person: Subscriber) -> str:
    return f"/manage/{web.tokens.make('manage', person.public_id, person.token_version)}"


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


def too_many_from_client(web: Web, request: Request) -> Response:
    most = web.settings.web.subscribe_per_client_per_hour
    return message(
        web,
        request,
        "Too many attempts",
        [
            f"We accept at most {most} of these forms per hour from one network, to keep the "
            "site from being used to send mail to people who did not ask for it.",
            "Nothing was sent. Please try again in an hour.",
        ],
        status=429,
        tone="warn",
        headers={"Retry-After": "3600"},
    )


def too_many_for_address(web: Web, request: Request) -> Response:
    most = web.settings.web.confirm_mails_per_address_per_day
    return message(
        web,
        request,
        "We have already written to this address today",
        [
            f"We send at most {most} of these mails to one address per day, so that nobody "
            "can flood someone's inbox through this form.",
            "Nothing was sent this time. Please look for the earlier mails (and in your spam "
            "folder), or try again tomorrow.",
        ],
        status=429,
        tone="warn",
        headers={"Retry-After": "86400"},
    )
