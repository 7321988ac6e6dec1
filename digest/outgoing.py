"""What a claimed delivery's message is made of.

:class:`Digests` loads what a claimed batch's digests need (subscribers, chosen items,
paper cards) with a few queries per batch and builds each ``DigestInput``; the sending
thread that claimed the batch renders it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest import compose
from digest.config import Settings
from digest.domain.items import PaperCard
from digest.domain.profiles import Profile
from digest.domain.tokens import SignedLinks
from digest.models import Delivery, DeliveryItem, Paper, Subscriber
from digest.render import DigestInput, Renderer

log = logging.getLogger(__name__)


def make_renderer(settings: Settings) -> Renderer:
    folder = settings.paths.templates_dir
    return Renderer(settings.mail, Path(folder) if folder else None)


class Digests:
    """What claimed deliveries' messages are made of, loaded a claimed batch at a time: one
    query for the subscribers, one for the chosen items, one for the papers this sender has
    not seen yet (paper cards are kept for the run: the same papers go to everyone today).
    Each sending thread has its own batch; the cards are shared."""

    MAX_CARDS = 50_000

    def __init__(self, settings: Settings, links: SignedLinks) -> None:
        self.settings = settings
        self.links = links
        self.cards: dict[int, PaperCard] = {}
        self._lock = threading.Lock()
        self._batch = threading.local()

    def load(self, session: Session, deliveries: Sequence[Delivery]) -> None:
        ids = [d.id for d in deliveries]
        people = {
            row.id: row
            for row in session.execute(
                select(
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.public_id,
                    Subscriber.token_version,
                    Subscriber.profile,
                ).where(Subscriber.id.in_({d.subscriber_id for d in deliveries}))
            )
        }
        items: dict[int, list[Any]] = {i: [] for i in ids}
        for row in session.execute(
            select(
                DeliveryItem.delivery_id,
                DeliveryItem.paper_id,
                DeliveryItem.score,
                DeliveryItem.relevance,
                DeliveryItem.reasons,
                DeliveryItem.section,
                DeliveryItem.highlight,
            )
            .where(DeliveryItem.delivery_id.in_(ids))
            .order_by(DeliveryItem.delivery_id, DeliveryItem.position)
        ):
            items[row.delivery_id].append(row)
        wanted = {row.paper_id for rows in items.values() for row in rows}
        with self._lock:
            if len(self.cards) > self.MAX_CARDS:
                self.cards.clear()
            cards = {i: self.cards[i] for i in wanted if i in self.cards}
        missing = wanted - cards.keys()
        if missing:
            for paper in session.scalars(select(Paper).where(Paper.id.in_(missing))):
                cards[paper.id] = compose.paper_card(paper)
            with self._lock:
                self.cards.update((i, cards[i]) for i in missing if i in cards)
        self._batch.people, self._batch.items, self._batch.cards = people, items, cards

    def input(self, session: Session, delivery: Delivery) -> DigestInput:
        batch = self._batch
        if delivery.id not in getattr(batch, "items", {}) or delivery.subscriber_id not in (
            batch.people
        ):
            self.load(session, [delivery])
        subscriber = batch.people[delivery.subscriber_id]
        items = [
            (compose.ranked_item(row), batch.cards[row.paper_id])
            for row in batch.items[delivery.id]
        ]
        profile = Profile.from_json(subscriber.profile)
        template = self.settings.delivery.return_path
        return DigestInput(
            to_address=subscriber.email,
            local_date=delivery.local_date,
            items=items,
            profile_summary=profile.describe(weights=False),
            message_id=compose.message_id(delivery.public_id, self.settings.mail.from_address),
            date_header=delivery.planned_at,
            manage_url=self.links.manage(subscriber.public_id, subscriber.token_version),
            unsubscribe_url=self.links.unsubscribe(subscriber.public_id),
            archive_url=self.links.archive(delivery.public_id),
            return_path=template.replace("{id}", delivery.public_id) if template else None,
            feedback_urls=feedback_urls(self.links, subscriber.public_id, items),
        )


def feedback_urls(
    links: SignedLinks, public_id: str, items: Sequence[tuple[object, PaperCard]]
) -> list[tuple[str, str]]:
    """ "More like this" and "fewer like this" under each paper of a subscriber's digest."""
    return [
        (
            links.feedback(public_id, card.canonical_id, 1),
            links.feedback(public_id, card.canonical_id, -1),
        )
        for _item, card in items
    ]
