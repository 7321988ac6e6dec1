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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import seeds
from digest.domain.profiles import Profile
from digest.models import Bounce, Delivery, DeliveryItem, Feedback, Paper, SentPaper, Subscriber
from digest.store import feedback, subscribers
from digest.store.subscribers import WEEKDAYS
from digest.web import access, forms, learned
from digest.web.access import LinkProblem
from digest.web.context import Web, web_of
from digest.web.routes.common import (
    address_limit,
    address_value,
    client_limit,
    csrf_failed,
    in_thread,
    link_problem,
    message,
    read_form,
    redirect,
    too_many_for_address,
    too_many_from_client,
)
from digest.web.routes.subscribe import preview_of

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


def _load(web: Web, token: str) -> tuple[Subscriber, dict[str, Any]]:
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        return person, forms.subscriber_values(person)


def _state(web: Web, person: Subscriber, token: str) -> dict[str, Any]:
    now = web.clock()
    paused = person.paused_until is not None and person.paused_until > now
    status = person.status
    if status == "active" and paused:
        status = "paused"
    weekday = (
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[
            person.weekday
        ]
        if person.weekday is not None
        else ""
    )
    return {
        "token": token,
        "base": f"/manage/{token}",
        "unsubscribe_path": f"/unsubscribe/{web.tokens.make('unsubscribe', person.public_id)}",
        "address": person.email,
        "pending_email": person.pending_email,
        "status": status,
        "paused_until": person.paused_until if paused else None,
        "timezone": person.timezone,
        "schedule_line": (f"every {weekday}" if person.frequency == "weekly" else "every day")
        + f" at {person.send_hour:02d}:00 ({person.timezone})",
    }


async def _page(
    request: Request,
    person: Subscriber,
    values: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
    notice: str | None = None,
    profile: Profile | None = None,
    seed_report: SeedReport | None = None,
) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    stored = subscribers.profile_of(person)
    # A form being corrected has no learned state of its own: show the stored one.
    profile = stored if profile is None else profile.with_extra(learned=stored.extra.get("learned"))
    limit = int(values["max_papers"]) if str(values.get("max_papers", "")).isdigit() else 10
    preview = await in_thread(preview_of, web, profile, limit)
    flag = next((name for name in NOTICES if name in request.query_params), None)
    context = {
        **_state(web, person, token),
        "values": values,
        "errors": errors or {},
        "notice": notice or (NOTICES[flag] if flag else None),
        "notice_tone": "warn" if errors or status >= 400 else "ok",
        "preview": preview,
        "preview_errors": {},
        "learned": learned.view(profile, web.clock(), web.settings.feedback.model_min_events),
        "seed_report": seed_report,
    }
    return web.pages.response(request, "manage.html", context, status=status)


async def show(request: Request) -> Response:
    web = web_of(request)
    try:
        person, values = await in_thread(_load, web, request.path_params["token"])
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    return await _page(request, person, values)


async def _guarded(request: Request) -> tuple[Web, Any, Subscriber, dict[str, Any]] | Response:
    """The form, the subscriber and their current values; or the answer when the CSRF token
    or the link fails."""
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    try:
        person, values = await in_thread(_load, web, request.path_params["token"])
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    return web, form, person, values


# -- save --------------------------------------------------------------------------------


def _save(web: Web, token: str, checked: forms.Checked) -> None:
    assert checked.profile is not None and checked.schedule is not None
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        subscribers.upsert(
            session,
            person.email,
            checked.profile,
            checked.schedule,
            confirmed=False,
            now=web.clock(),
        )


async def save(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web, form, person, _ = guarded
    checked = forms.read_preferences(form, web.settings)
    if not checked.ok:
        return await _page(
            request,
            person,
            checked.values,
            errors=checked.errors,
            status=400,
            notice="Nothing was saved yet: please fix the fields marked below.",
            profile=checked.profile,
        )
    try:
        await in_thread(_save, web, request.path_params["token"], checked)
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    return redirect(f"/manage/{request.path_params['token']}?saved=1#topics")


# -- what feedback taught ----------------------------------------------------------------


def _remove(web: Web, token: str, kind: str, value: str) -> None:
    now = web.clock()
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        if kind == "forget":
            feedback.forget_all(session, person, now)
        else:
            feedback.remove(session, person, kind, value, web.settings.feedback, now)


async def remove_learned(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web, form, person, values = guarded
    token = request.path_params["token"]
    kind = str(form.get("kind", ""))
    value = str(form.get("value", ""))[:200]
    if kind not in (*feedback.REMOVABLE, "model-on", "forget"):
        return await _page(
            request, person, values, status=400, notice="That cannot be removed.", errors={}
        )
    await in_thread(_remove, web, token, kind, value)
    flag = "forgotten" if kind == "forget" else "model" if kind.startswith("model") else "removed"
    return redirect(f"/manage/{token}?{flag}=1#learned")


# -- seed from papers already liked ------------------------------------------------------


@dataclass(frozen=True)
class SeedReport:
    added: tuple[str, ...]  # titles of the papers now marked "more like this"
    fetched: int
    unknown: tuple[str, ...]  # ids arXiv does not know (or could not be asked about)
    skipped: tuple[str, ...]  # entries or words without an arXiv id
    problem: str | None


def _seed(web: Web, token: str, found: seeds.SeedList) -> SeedReport:
    now = web.clock()
    papers = seeds.find_papers(
        web.settings, web.store, found.ids, now, transport=web.http_transport
    )
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        by_id = {
            p.id: p
            for p in session.scalars(
                select(Paper).where(Paper.id.in_([p.id for p in papers.papers]))
            )
        }
        rows = [by_id[p.id] for p in papers.papers if p.id in by_id]
        if rows:
            feedback.like_many(session, person, rows, web.settings.feedback, now)
    return SeedReport(
        added=tuple(p.title for p in papers.papers),
        fetched=papers.fetched,
        unknown=tuple(papers.unknown),
        skipped=tuple(found.skipped),
        problem=papers.problem,
    )


async def seed(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    form = await request.form(max_files=1, max_fields=10, max_part_size=seeds.MAX_SEED_BYTES)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    try:
        person, values = await in_thread(_load, web, token)
    except LinkProblem as problem:
        return link_problem(web, request, problem)
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
    report = await in_thread(_seed, web, token, found)
    person, values = await in_thread(_load, web, token)
    count = len(report.added)
    notice = (
        f"Added {count} paper{'s' if count != 1 else ''} you like; your digest learns from them."
        if count
        else "None of those papers could be found, so nothing was added."
    )
    return await _page(
        request,
        person,
        values,
        notice=notice,
        status=200 if count else 400,
        seed_report=report,
    )


# -- pause -------------------------------------------------------------------------------


def _set_pause(web: Web, token: str, days: int | None) -> None:
    now = web.clock()
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        person.paused_until = now + timedelta(days=days) if days else None
        person.updated_at = now


async def pause(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web, form, person, values = guarded
    token = request.path_params["token"]
    if form.get("action") == "resume":
        await in_thread(_set_pause, web, token, None)
        return redirect(f"/manage/{token}?resumed=1#pause")
    days, error = forms.read_pause(form)
    if error:
        values["days"] = str(form.get("days", ""))[:10]
        return await _page(
            request, person, values, errors={"days": error}, status=400, notice=error
        )
    await in_thread(_set_pause, web, token, days)
    return redirect(f"/manage/{token}?paused=1#pause")


# -- a new address -----------------------------------------------------------------------


def _request_address(web: Web, token: str, new_address: str, client: str) -> tuple[str, int | None]:
    now = web.clock()
    with web.store.transaction() as session:
        if not web.limiter.take(session, client_limit(web), client, now):
            return "client-limit", None
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        if address_value(new_address) == person.email_key:
            return "same", None
        key = address_value(new_address)
        if not web.limiter.allows(session, address_limit(web), key, now):
            return "address-limit", None
        person.pending_email = new_address
        person.updated_at = now
        token = web.address_tokens.make(person, new_address)
        url = f"{web.settings.web.base_url}/confirm-email/{token}"
        mail = web.mails.confirm_new_address(new_address, url)
        web.limiter.record(session, address_limit(web).bucket, key, now)
        return "sent", web.queue_mail(session, mail, "confirm_address", new_address, person.id)


async def change_address(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web, form, person, values = guarded
    token = request.path_params["token"]
    checked = forms.Checked(values)
    forms.read_email(form, checked, "new_email")
    if checked.ok:
        outcome, mail = await in_thread(
            _request_address, web, token, checked.email, web.client(request)
        )
        if outcome == "client-limit":
            return too_many_from_client(web, request)
        if outcome == "address-limit":
            return too_many_for_address(web, request)
        if outcome == "sent":
            response = redirect(f"/manage/{token}?email_sent=1#address")
            response.background = web.send_later(mail) if mail else None
            return response
        checked.errors["new_email"] = "That is already your address."
    return await _page(
        request,
        person,
        checked.values,
        errors=checked.errors,
        status=400,
        notice="The address was not changed: see the message under it.",
    )


def _cancel_address(web: Web, token: str) -> None:
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        person.pending_email = None
        person.updated_at = web.clock()


async def cancel_address(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web = guarded[0]
    token = request.path_params["token"]
    await in_thread(_cancel_address, web, token)
    return redirect(f"/manage/{token}?email_cancelled=1#address")


# -- my data -----------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def export(session: Session, person: Subscriber, now: datetime) -> dict[str, Any]:
    """Everything stored about one subscriber, as plain JSON."""
    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == person.id).order_by(Delivery.local_date)
    ).all()
    items: dict[int, list[dict[str, Any]]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = session.execute(
            select(DeliveryItem, Paper)
            .join(Paper, Paper.id == DeliveryItem.paper_id)
            .where(DeliveryItem.delivery_id.in_([d.id for d in deliveries]))
            .order_by(DeliveryItem.delivery_id, DeliveryItem.position)
        )
        for item, paper in rows:
            items[item.delivery_id].append(
                {
                    "position": item.position,
                    "section": item.section,
                    "arxiv_id": paper.arxiv_id,
                    "title": paper.title,
                    "score": round(item.score, 4),
                    "reasons": item.reasons,
                }
            )
    bounces = session.scalars(
        select(Bounce).where(Bounce.subscriber_id == person.id).order_by(Bounce.received_at)
    ).all()
    choices = session.execute(
        select(Feedback, Paper)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(Feedback.subscriber_id == person.id)
        .order_by(Feedback.created_at, Feedback.id)
    ).all()
    return {
        "about": "Everything this digest service stores about you. Rate-limit records hold "
        "only keyed hashes and cannot be tied back to you.",
        "exported_at": now.isoformat(),
        "subscriber": {
            "email": person.email,
            "pending_email": person.pending_email,
            "status": person.status,
            "timezone": person.timezone,
            "send_hour": person.send_hour,
            "frequency": person.frequency,
            "weekday": WEEKDAYS[person.weekday] if person.weekday is not None else None,
            "max_papers": person.max_papers,
            "send_when_empty": person.send_when_empty,
            "paused_until": _iso(person.paused_until),
            "created_at": _iso(person.created_at),
            "confirmed_at": _iso(person.confirmed_at),
            "unsubscribed_at": _iso(person.unsubscribed_at),
            "updated_at": _iso(person.updated_at),
            "bounce_count": person.bounce_count,
            "last_bounce_at": _iso(person.last_bounce_at),
        },
        "profile": person.profile,
        "digests": [
            {
                "date": d.local_date.isoformat(),
                "status": d.status,
                "sent_at": _iso(d.sent_at),
                "papers": items[d.id],
            }
            for d in deliveries
        ],
        "feedback": [
            {
                "at": _iso(choice.created_at),
                "choice": "more like this" if choice.value > 0 else "fewer like this",
                "arxiv_id": paper.arxiv_id,
                "title": paper.title,
            }
            for choice, paper in choices
        ],
        "bounces": [
            {
                "received_at": _iso(b.received_at),
                "kind": b.kind,
                "status": b.status,
                "diagnostic": b.diagnostic,
            }
            for b in bounces
        ],
    }


def _export(web: Web, token: str) -> dict[str, Any]:
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        return export(session, person, web.clock())


async def download(request: Request) -> Response:
    web = web_of(request)
    try:
        data = await in_thread(_export, web, request.path_params["token"])
    except LinkProblem as problem:
        return link_problem(web, request, problem)
    day = web.clock().date().isoformat()
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="digest-my-data-{day}.json"'},
    )


# -- sign out everywhere -----------------------------------------------------------------


def _sign_out(web: Web, token: str) -> tuple[str, int | None]:
    now = web.clock()
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        person.token_version += 1
        person.updated_at = now
        session.flush()
        key = address_value(person.email)
        if not web.limiter.allows(session, address_limit(web), key, now):
            return person.email, None
        url = web.links.manage(person.public_id, person.token_version)
        mail = web.mails.manage_link(person.email, url, "signed_out")
        web.limiter.record(session, address_limit(web).bucket, key, now)
        return person.email, web.queue_mail(session, mail, "manage_link", person.email, person.id)


async def sign_out(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web = guarded[0]
    address, mail = await in_thread(_sign_out, web, request.path_params["token"])
    if mail:
        last = f"We have emailed a new link to {address}."
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
    if mail:
        response.background = web.send_later(mail)
    return response


# -- resubscribe, delete -----------------------------------------------------------------


def _resubscribe(web: Web, token: str) -> None:
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        if person.status != "active":
            subscribers.activate(person, web.clock())


async def resubscribe(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web = guarded[0]
    token = request.path_params["token"]
    await in_thread(_resubscribe, web, token)
    return redirect(f"/manage/{token}?resubscribed=1")


def delete_subscriber(session: Session, person: Subscriber) -> None:
    """Remove the subscriber and everything tied to them (not relying on ON DELETE)."""
    mine = select(Delivery.id).where(Delivery.subscriber_id == person.id)
    session.execute(delete(DeliveryItem).where(DeliveryItem.delivery_id.in_(mine)))
    session.execute(delete(SentPaper).where(SentPaper.subscriber_id == person.id))
    session.execute(delete(Feedback).where(Feedback.subscriber_id == person.id))
    session.execute(delete(Bounce).where(Bounce.subscriber_id == person.id))
    session.execute(delete(Delivery).where(Delivery.subscriber_id == person.id))
    session.execute(delete(Subscriber).where(Subscriber.id == person.id))


def _delete(web: Web, token: str) -> None:
    with web.store.transaction() as session:
        person = access.manage(session, web.tokens, token)
        delete_subscriber(session, person)


async def remove(request: Request) -> Response:
    guarded = await _guarded(request)
    if isinstance(guarded, Response):
        return guarded
    web, form, person, values = guarded
    if form.get("confirm_delete") != "yes":
        error = "Tick the box to confirm that everything should be deleted."
        return await _page(
            request,
            person,
            values,
            errors={"confirm_delete": error},
            status=400,
            notice="Nothing was deleted: " + error[0].lower() + error[1:],
        )
    await in_thread(_delete, web, request.path_params["token"])
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


routes = [
    Route("/manage/{token}", show, methods=["GET"]),
    Route("/manage/{token}", save, methods=["POST"]),
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
