"""What a claimed delivery's message is made of, and making it: here, or in other processes.

:class:`Digests` loads what a claimed batch's digests need (subscribers, chosen items,
paper cards) with a few queries per batch and builds each ``DigestInput``;
:class:`RenderPool` makes messages (load and render) in other processes so that one sending
process can use more than one core (``delivery.render_processes``). This module imports
nothing of ranking, so the pool's processes stay small.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest import compose
from digest.config import Settings
from digest.items import PaperCard
from digest.models import Delivery, DeliveryItem, Paper, Subscriber
from digest.profiles import Profile
from digest.render import DigestInput, Renderer
from digest.store import Store, make_engine
from digest.tokens import Links, Tokens, secret_key

log = logging.getLogger(__name__)


def make_renderer(settings: Settings) -> Renderer:
    folder = settings.paths.templates_dir
    return Renderer(settings.mail, Path(folder) if folder else None)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What rendering needs of a claimed delivery, without its session."""

    id: int
    public_id: str
    subscriber_id: int
    local_date: date
    planned_at: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> Claimed:
        return cls(
            delivery.id,
            delivery.public_id,
            delivery.subscriber_id,
            delivery.local_date,
            delivery.planned_at,
        )


def render_here(store: Store, digests: Digests, renderer: Renderer, claimed: Claimed) -> bytes:
    with store.transaction() as session:
        data = digests.input(session, claimed)  # type: ignore[arg-type]
    return renderer.render(data).raw


class Digests:
    """What claimed deliveries' messages are made of, loaded a claimed batch at a time: one
    query for the subscribers, one for the chosen items, one for the papers this sender has
    not seen yet (paper cards are kept for the run: the same papers go to everyone today).
    Each sending thread has its own batch; the cards are shared."""

    MAX_CARDS = 50_000

    def __init__(self, settings: Settings, links: Links) -> None:
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
    links: Links, public_id: str, items: Sequence[tuple[object, PaperCard]]
) -> list[tuple[str, str]]:
    """ "More like this" and "fewer like this" under each paper of a subscriber's digest."""
    return [
        (
            links.feedback(public_id, card.canonical_id, 1),
            links.feedback(public_id, card.canonical_id, -1),
        )
        for _item, card in items
    ]


class RenderPool:
    """Makes digests in ``processes`` other processes, so that one sending process can use
    more than one core: its threads keep claims, SMTP and the outcomes, the pool loads each
    claimed digest's subscriber, papers and items (reading only) and renders it. Claimed
    deliveries go over in small chunks, wire bytes come back.

    A message the pool cannot make fails as an in-process render would (the same error); if
    the pool itself breaks (a process killed), the message is made in-process and the pool
    is started afresh. Its processes end with this one, also when it is killed (each
    watches its parent).
    """

    CHUNK = 8

    def __init__(self, settings: Settings) -> None:
        # Not "fork": the sending threads may hold locks (logging, the database pool). Not
        # "forkserver" either: its server outlives a worker killed with SIGKILL.
        context = multiprocessing.get_context("spawn")
        self.processes = settings.delivery.render_processes
        self._start = partial(
            ProcessPoolExecutor,
            self.processes,
            mp_context=context,
            initializer=_render_process_start,
            initargs=(settings, os.getpid()),
        )
        self._executor = self._start()
        self._lock = threading.Lock()

    def submit(
        self, claimed: Sequence[Claimed], here: Callable[[Claimed], bytes]
    ) -> dict[int, Callable[[], bytes]]:
        """Start making ``claimed``'s messages; a function per delivery id that waits for its
        bytes (``here`` makes one in this process when the pool cannot)."""
        builds: dict[int, Callable[[], bytes]] = {}
        for start in range(0, len(claimed), self.CHUNK):
            chunk = claimed[start : start + self.CHUNK]
            future: Future[list[object]] | None
            try:
                future = self._executor.submit(_render_chunk, chunk)
            except (BrokenProcessPool, RuntimeError):
                self._restart()
                future = None
            for index, one in enumerate(chunk):
                builds[one.id] = partial(self._result, future, index, one, here)
        return builds

    def _result(
        self,
        future: Future[list[object]] | None,
        index: int,
        claimed: Claimed,
        here: Callable[[Claimed], bytes],
    ) -> bytes:
        if future is not None:
            try:
                result = future.result()[index]
            except BrokenProcessPool:
                log.warning("a render process was lost; rendering here, starting another")
                self._restart()
            else:
                if isinstance(result, BaseException):
                    raise result
                assert isinstance(result, bytes)
                return result
        return here(claimed)

    def _restart(self) -> None:
        with self._lock:
            old = self._executor
            if not getattr(old, "_broken", False):
                return
            self._executor = self._start()
        old.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_POOLS: dict[str, RenderPool] = {}
_POOLS_LOCK = threading.Lock()


def render_pool(settings: Settings) -> RenderPool:
    """The process's pool for these settings, started on first use and kept for the
    process's life (a worker's ticks share it)."""
    key = settings.model_dump_json()
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = RenderPool(settings)
        return pool


_MAKER: tuple[Store, Digests, Renderer] | None = None


def _render_process_start(settings: Settings, parent: int) -> None:
    global _MAKER
    # Ctrl-C reaches the whole process group; the worker decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = Store(make_engine(settings.database.url, settings.database.busy_timeout_ms))
    links = Links(settings, Tokens(secret_key(settings)))
    _MAKER = (store, Digests(settings, links), make_renderer(settings))
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this process once the worker that started it is gone (killed, say)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _render_chunk(claimed: Sequence[Claimed]) -> list[object]:
    """In a render process: each claimed digest's bytes, or the exception making it raised
    (a database error is raised for the whole chunk)."""
    assert _MAKER is not None
    store, digests, renderer = _MAKER
    results: list[object] = []
    with store.transaction() as session:
        digests.load(session, claimed)  # type: ignore[arg-type]
        inputs: list[object] = []
        for one in claimed:
            try:
                inputs.append(digests.input(session, one))  # type: ignore[arg-type]
            except SQLAlchemyError:
                raise
            except Exception as exc:
                inputs.append(exc)
    for data in inputs:
        try:
            if isinstance(data, Exception):
                raise data
            assert isinstance(data, DigestInput)
            results.append(renderer.render(data).raw)
        except Exception as exc:
            try:
                pickle.dumps(exc)
            except Exception:
                exc = RuntimeError(repr(exc))
            results.append(exc)
    return results
