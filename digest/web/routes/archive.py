"""The digest archive: "view in browser" for a digest, behind its archive token.

The page is the stored delivery rendered again by the digest renderer, which gives the very
mail that was sent (rendering is a pure function of the stored delivery). One change: the
mail's "manage preferences" link is not handed out here, since archive links never expire
and are not revoked by "sign out everywhere"; it points to a page that mails a fresh link to
the subscriber instead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import compose
from digest.models import Delivery, DeliveryItem, Paper, Subscriber
from digest.outgoing import feedback_urls
from digest.render import DigestInput
from digest.store import subscribers
from digest.web import access
from digest.web.access import LinkProblem
from digest.web.context import Web, web_of
from digest.web.routes.common import csrf_failed, in_thread, message, read_form
from digest.web.routes.unsubscribe import answer_manage_link, send_manage_link
from digest.web.security import ARCHIVE_CSP


def archive_input(session: Session, web: Web, delivery: Delivery, token: str) -> DigestInput:
    """The stored delivery as the renderer's input: what the pipeline renders for the mail,
    except for the preferences link (see the module's docstring)."""
    person = session.get(Subscriber, delivery.subscriber_id)
    if person is None:
        raise LinkProblem("unknown", "archive", token)
    rows = session.scalars(
        select(DeliveryItem)
        .where(DeliveryItem.delivery_id == delivery.id)
        .order_by(DeliveryItem.position)
    ).all()
    papers = {
        p.id: p
        for p in session.scalars(select(Paper).where(Paper.id.in_([r.paper_id for r in rows])))
    }
    base = web.settings.web.base_url
    items = [(compose.ranked_item(r), compose.paper_card(papers[r.paper_id])) for r in rows]
    return DigestInput(
        to_address=person.email,
        local_date=delivery.local_date,
        items=items,
        profile_summary=subscribers.profile_of(person).describe(weights=False),
        message_id=compose.message_id(delivery.public_id, web.settings.mail.from_address),
        date_header=delivery.planned_at,
        manage_url=f"{base}/archive/{token}/manage",
        unsubscribe_url=web.links.unsubscribe(person.public_id),
        archive_url=web.links.archive(delivery.public_id),
        feedback_urls=feedback_urls(web.links, person.public_id, items),
    )


def _render(web: Web, token: str) -> str | None:
    with web.store.transaction() as session:
        delivery = access.archive(session, web.tokens, token)
        if delivery.ranked_at is None:
            return None
        data = archive_input(session, web, delivery, token)
    return web.renderer().render(data).html


async def show(request: Request) -> Response:
    web = web_of(request)
    html = await in_thread(_render, web, request.path_params["token"])
    if html is None:
        return message(
            web,
            request,
            "This digest is not ready yet",
            ["Its papers are still being chosen. Please try again in a few minutes."],
            status=404,
        )
    return HTMLResponse(
        html, headers={"Content-Security-Policy": ARCHIVE_CSP, "X-Robots-Tag": "noindex"}
    )


async def manage_page(request: Request) -> Response:
    web = web_of(request)
    token = request.path_params["token"]
    await in_thread(_subscriber, web, token)  # a bad link fails here, before the button
    return message(
        web,
        request,
        "Change your preferences",
        [
            "Links in older digests do not open your preferences page directly, so that a "
            "forwarded mail cannot be used to change them.",
            "Press the button and we will email you a fresh link.",
        ],
        forms=[(f"/archive/{token}/manage", "Email me a link to my preferences")],
    )


def _subscriber(web: Web, token: str) -> Subscriber:
    with web.store.transaction() as session:
        delivery = access.archive(session, web.tokens, token)
        person = session.get(Subscriber, delivery.subscriber_id)
        if person is None:
            raise LinkProblem("unknown", "archive", token)
        return person


async def send_link(request: Request) -> Response:
    web = web_of(request)
    form = await read_form(request)
    if not web.csrf.valid(request, form.get("csrf_token")):
        return csrf_failed(web, request)
    person = await in_thread(_subscriber, web, request.path_params["token"])
    outcome, mail = await in_thread(send_manage_link, web, person, web.client(request))
    return answer_manage_link(web, request, outcome, mail)


routes = [
    Route("/archive/{token}", show, methods=["GET"]),
    Route("/archive/{token}/manage", manage_page, methods=["GET"]),
    Route("/archive/{token}/manage", send_link, methods=["POST"]),
]
