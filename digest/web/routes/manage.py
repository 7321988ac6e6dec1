"""The preferences page, reached through the signed link in every digest.

Edit everything chosen at sign-up (with the live preview), see and remove what feedback
taught (words, authors, the personal model), seed the profile from papers already liked (arXiv
ids, or a BibTeX / Zotero export), pause for some days, change the address (the new one must
confirm), download everything stored as JSON, sign out everywhere (raise the token version,
revoking every link to this page sent so far), resubscribe, and delete everything. Each
change is a POST with a CSRF token, answered by a redirect back to the page (so a reload never
repeats it) or, for a bad field, by the page again with the message next to the field and what
was typed kept. Seeding answers with the page itself: it reports what was found.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.app import feedback, subscriptions
from digest.app.feedback import SeedReport
from digest.app.subscriptions import Asked
from digest.domain import seeds
from digest.domain.profiles import Profile
from digest.domain.schedules import when_line
from digest.models import Subscriber
from digest.web import forms, learned
from digest.web.context import Web, web_of
from digest.web.preview import Preview, preview
from digest.web.routes.common import (
    csrf_failed,
    guarded,
    in_thread,
    message,
    redirect,
    refused,
)

NOTICES = {
    "welcome": "You are subscribed. Fine-tune your topics below: the preview shows what "
    "you would have received from the last few days.",
    "saved": "Saved. The preview shows what these settings would have sent you.",
    "paused": "Paused. No digests until the date below; you can resume at any time.",
    "resumed": "Digests are on again.",
    "email_sent": "We have sent a confirmation link to your new address. Until it is "
    "opened, digests keep going to your current address.",
    "email_cancelled": "The address change is cancelled.",
    "email_changed": "Your address is changed. Links to this page in older mails no "
    "longer work; this page has a new one.",
    "resubscribed": "Welcome back: your digests start again.",
    "removed": "Removed. It will not be learned again.",
    "forgotten": "Everything learned from your feedback is forgotten.",
    "model": "Done: your personal model is switched as you asked.",
}


def _state(web: Web, person: Subscriber, token: str) -> dict[str, Any]:
    now = web.clock()
    paused = person.paused_until is not None and person.paused_until > now
    status = person.status
    if status == "active" and paused:
        status = "paused"
    return {
        "token": token,
        "base": f"/manage/{token}",
        "unsubscribe_path": f"/unsubscribe/{web.tokens.make('unsubscribe', person.public_id)}",
        "feed_url": web.links.feed(person.public_id, person.token_version),
        "address": person.email,
        "pending_email": person.pending_email,
        "status": status,
        "paused_until": person.paused_until if paused else None,
        "timezone": person.timezone,
        "schedule_line": when_line(
            person.frequency, person.weekday, person.send_hour, person.timezone
        ),
    }


def _preview(web: Web, person: Subscriber, profile: Profile, limit: int) -> Preview:
    """The reader's next digest with the settings on the page."""
    picks, scanned, returning = web.previews.subscriber(person.email, profile, limit, web.clock())
    return preview(web.settings, picks, scanned, profile, returning=returning)


async def _page(
    request: Request,
    person: Subscriber,
    values: dict[str, Any] | None = None,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
    notice: str | None = None,
    profile: Profile | None = None,
    seed_report: SeedReport | None = None,
) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    values = values if values is not None else forms.subscriber_values(person)
    stored = Profile.from_json(person.profile)
    # A form being corrected has no learned state of its own: show the stored one.
    profile = stored if profile is None else profile.with_extra(learned=stored.extra.get("learned"))
    limit = int(values["max_papers"]) if str(values.get("max_papers", "")).isdigit() else 10
    shown = await in_thread(_preview, web, person, profile, max(1, min(limit, 50)))
    flag = next((name for name in NOTICES if name in request.query_params), None)
    context = {
        **_state(web, person, token),
        "values": values,
        "errors": errors or {},
        "notice": notice or (NOTICES[flag] if flag else None),
        "notice_tone": "warn" if errors or status >= 400 else "ok",
        "preview": shown,
        "preview_errors": {},
        "learned": learned.view(profile, web.clock(), web.settings.feedback.model_min_events),
        "seed_report": seed_report,
    }
    return web.pages.response(request, "manage.html", context, status=status)


async def show(request: Request) -> Response:
    web = web_of(request)
    person = await in_thread(subscriptions.manage, web, request.path_params["token"])
    return await _page(request, person)


async def preview_fragment(request: Request) -> Response:
    """GET /manage/{token}/preview?include=…: the live preview of the reader's next digest."""
    web = web_of(request)
    person = await in_thread(subscriptions.manage, web, request.path_params["token"])
    checked = forms.read_topics(request.query_params)
    raw = request.query_params.get("max_papers", "")
    limit = max(1, min(int(raw), 50)) if raw.isdigit() else person.max_papers
    shown = None
    if checked.ok and checked.changes is not None:
        stored = Profile.from_json(person.profile)
        profile = checked.profile.with_extra(learned=stored.extra.get("learned"))  # type: ignore[union-attr]
        shown = await in_thread(_preview, web, person, profile, limit)
    html = web.pages.render("_preview.html", {"preview": shown, "preview_errors": checked.errors})
    return HTMLResponse(html, headers={"X-Robots-Tag": "noindex"})


async def _to_fix(
    request: Request,
    person: Subscriber,
    checked: forms.Checked,
    notice: str,
    profile: Profile | None = None,
) -> Response:
    """The page again (400) with what was typed kept and each bad field marked."""
    return await _page(
        request,
        person,
        checked.values,
        errors=checked.errors,
        status=400,
        notice=notice,
        profile=profile,
    )


# -- save --------------------------------------------------------------------------------


async def save(request: Request) -> Response:
    def work(web: Web, form: FormData, token: str) -> tuple[Subscriber, forms.Checked]:
        person = subscriptions.manage(web, token)
        checked = forms.read_preferences(form, web.settings)
        if checked.ok:
            assert checked.changes is not None and checked.schedule is not None
            subscriptions.save_preferences(web, token, checked.changes, checked.schedule)
        return person, checked

    async def answer(web: Web, _form: FormData, done: tuple[Subscriber, forms.Checked]) -> Response:
        person, checked = done
        if checked.ok:
            # To the confirmation itself: the reader sees at once that it was saved.
            return redirect(f"/manage/{request.path_params['token']}?saved=1#notice")
        notice = "Nothing was saved yet: please fix the fields marked below."
        return await _to_fix(request, person, checked, notice, checked.profile)

    return await guarded(request, work, answer)


# -- what feedback taught ----------------------------------------------------------------


async def remove_learned(request: Request) -> Response:
    token = request.path_params["token"]

    def work(web: Web, form: FormData, token: str) -> tuple[Subscriber, str | None]:
        person = subscriptions.manage(web, token)
        kind = str(form.get("kind", ""))
        if kind not in feedback.REMOVABLE:
            return person, None
        feedback.take_back(web, token, kind, str(form.get("value", ""))[:200])
        return person, kind

    async def answer(web: Web, _form: FormData, done: tuple[Subscriber, str | None]) -> Response:
        person, kind = done
        if kind is None:
            return await _page(request, person, status=400, notice="That cannot be removed.")
        flag = (
            "forgotten" if kind == "forget" else "model" if kind.startswith("model") else "removed"
        )
        return redirect(f"/manage/{token}?{flag}=1#learned")

    return await guarded(request, work, answer)


# -- seed from papers already liked ------------------------------------------------------


async def seed(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    form = await request.form(max_files=1, max_fields=10, max_part_size=seeds.MAX_SEED_BYTES)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    person = await in_thread(subscriptions.manage, web, token)
    values = forms.subscriber_values(person)
    upload = form.get("seed_file")
    pasted = str(form.get("seed_ids", "") or "")[: seeds.MAX_SEED_BYTES]
    values["seed_ids"] = pasted
    try:
        if upload is not None and not isinstance(upload, str) and upload.filename:
            data = await upload.read(seeds.MAX_SEED_BYTES + 1)
            found = seeds.read_seed(data, upload.filename)
        elif pasted.strip():
            found = seeds.read_seed(pasted)
        else:
            raise seeds.SeedError("choose a file, or paste some arXiv ids")
    except seeds.SeedError as exc:
        error = str(exc)[:1].upper() + str(exc)[1:] + "."
        return await _page(
            request,
            person,
            values,
            errors={"seed": error},
            status=400,
            notice="Nothing was added: " + str(exc) + ".",
        )
    report = await in_thread(lambda: feedback.seed(web, token, found, transport=web.http_transport))
    person = await in_thread(subscriptions.manage, web, token)
    count = len(report.added)
    notice = (
        f"Added {count} paper{'s' if count != 1 else ''} you like; your digest learns from them."
        if count
        else "None of those papers could be found, so nothing was added."
    )
    values = {**forms.subscriber_values(person), "seed_ids": pasted}
    return await _page(
        request, person, values, notice=notice, status=200 if count else 400, seed_report=report
    )


# -- pause -------------------------------------------------------------------------------


async def pause(request: Request) -> Response:
    token = request.path_params["token"]

    def work(web: Web, form: FormData, token: str) -> tuple[Subscriber, str | None, str]:
        person = subscriptions.manage(web, token)
        if form.get("action") == "resume":
            subscriptions.pause(web, token, None)
            return person, None, "resumed"
        days, error = forms.read_pause(form)
        if error:
            return person, error, str(form.get("days", ""))[:10]
        subscriptions.pause(web, token, days)
        return person, None, "paused"

    async def answer(
        web: Web, _form: FormData, done: tuple[Subscriber, str | None, str]
    ) -> Response:
        person, error, flag = done
        if error:
            values = {**forms.subscriber_values(person), "days": flag}
            return await _page(
                request, person, values, errors={"days": error}, status=400, notice=error
            )
        return redirect(f"/manage/{token}?{flag}=1#pause")

    return await guarded(request, work, answer)


# -- a new address -----------------------------------------------------------------------


async def change_address(request: Request) -> Response:
    token = request.path_params["token"]

    def work(
        web: Web, form: FormData, token: str
    ) -> tuple[Subscriber, forms.Checked, Asked | None]:
        person = subscriptions.manage(web, token)
        checked = forms.Checked(forms.subscriber_values(person))
        forms.read_email(form, checked, "new_email")
        if not checked.ok:
            return person, checked, None
        assert checked.email is not None
        return (
            person,
            checked,
            subscriptions.request_address(web, token, checked.email, web.client(request)),
        )

    async def answer(
        web: Web, _form: FormData, done: tuple[Subscriber, forms.Checked, Asked | None]
    ) -> Response:
        person, checked, asked = done
        if asked is not None:
            turned_down = refused(web, request, asked.outcome)
            if turned_down is not None:
                return turned_down
            if asked.outcome == "sent":
                response = redirect(f"/manage/{token}?email_sent=1#address")
                response.background = web.send_later(asked.mail_id)
                return response
            checked.errors["new_email"] = "That is already your address."
        notice = "The address was not changed: see the message under it."
        return await _to_fix(request, person, checked, notice)

    return await guarded(request, work, answer)


def _then_back(
    call: Callable[[Web, str], object], flag: str
) -> Callable[[Request], Awaitable[Response]]:
    """A button that does one thing and comes back to the page with its notice."""

    async def endpoint(request: Request) -> Response:
        back = f"/manage/{request.path_params['token']}?{flag}"
        return await guarded(
            request, lambda web, _form, token: call(web, token), lambda *_: redirect(back)
        )

    return endpoint


cancel_address = _then_back(subscriptions.cancel_address, "email_cancelled=1#address")


# -- my data -----------------------------------------------------------------------------


async def download(request: Request) -> Response:
    web = web_of(request)
    data = await in_thread(subscriptions.export, web, request.path_params["token"])
    day = web.clock().date().isoformat()
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="digest-my-data-{day}.json"'},
    )


# -- sign out everywhere -----------------------------------------------------------------


async def sign_out(request: Request) -> Response:
    def answer(web: Web, _form: FormData, asked: Asked) -> Response:
        if asked.mail_id is not None:
            last = f"We have emailed a new link to {asked.address}."
        else:
            last = "Your next digest will carry a new link to this page."
        response = message(
            web,
            request,
            "Signed out everywhere",
            [
                "Every link to your preferences sent so far has stopped working, including "
                "the one you used to get here.",
                last,
                "Unsubscribe links in older mails still work, so you can always stop the mail.",
            ],
            tone="ok",
        )
        response.background = web.send_later(asked.mail_id)
        return response

    return await guarded(
        request, lambda web, _form, token: subscriptions.sign_out(web, token), answer
    )


# -- resubscribe, delete -----------------------------------------------------------------


resubscribe = _then_back(subscriptions.resubscribe, "resubscribed=1")


async def remove(request: Request) -> Response:
    def work(web: Web, form: FormData, token: str) -> Subscriber | None:
        if form.get("confirm_delete") != "yes":
            return subscriptions.manage(web, token)
        subscriptions.erase(web, token)
        return None

    async def answer(web: Web, _form: FormData, kept: Subscriber | None) -> Response:
        if kept is not None:
            error = "Tick the box to confirm that everything should be deleted."
            return await _page(
                request,
                kept,
                errors={"confirm_delete": error},
                status=400,
                notice="Nothing was deleted: " + error[0].lower() + error[1:],
            )
        return message(
            web,
            request,
            "Everything is deleted",
            [
                "Your address, your topics and the record of the digests we sent you are gone. "
                "We will not write to you again.",
                "If you ever want the digest back, you are welcome to subscribe anew.",
            ],
            tone="ok",
            actions=[("/", "Back to the front page")],
        )

    return await guarded(request, work, answer)


routes = [
    Route("/manage/{token}", show, methods=["GET"]),
    Route("/manage/{token}", save, methods=["POST"]),
    Route("/manage/{token}/preview", preview_fragment, methods=["GET"]),
    Route("/manage/{token}/pause", pause, methods=["POST"]),
    Route("/manage/{token}/learned", remove_learned, methods=["POST"]),
    Route("/manage/{token}/seed", seed, methods=["POST"]),
    Route("/manage/{token}/email", change_address, methods=["POST"]),
    Route("/manage/{token}/email/cancel", cancel_address, methods=["POST"]),
    Route("/manage/{token}/data.json", download, methods=["GET"]),
    Route("/manage/{token}/signout", sign_out, methods=["POST"]),
    Route("/manage/{token}/resubscribe", resubscribe, methods=["POST"]),
    Route("/manage/{token}/delete", remove, methods=["POST"]),
]
