"""The pipeline, stage by stage: fetch -> ingest (-> plan -> rank -> render -> send).

Each stage saves its output before the next starts, so a rerun resumes where a crash
stopped it. Errors name the stage and the source or subscriber they concern.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest import compose, embeddings
from digest.config import Settings
from digest.delivery.mailers import Mailer
from digest.delivery.workers import Outgoing, Sender, SendSummary
from digest.domain.items import PaperCard, RankedItem
from digest.domain.profiles import Profile
from digest.domain.tokens import SignedLinks
from digest.errors import SourceError
from digest.ingest import merge_batch, upsert
from digest.models import Delivery, DeliveryItem, FetchRun, Paper, SentPaper, Subscriber
from digest.outgoing import Digests
from digest.outgoing import make_renderer as make_renderer  # where callers look for it
from digest.ranking import Ranker, RankRequest
from digest.render import Renderer
from digest.sources.base import build_source
from digest.sources.http import Fetcher
from digest.store import Store, feedback, outbox, subscribers

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FetchSummary:
    source: str
    status: str  # ok, not_modified, failed
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    error: str | None = None
    seconds: float = 0.0


def fetch(
    settings: Settings,
    store: Store,
    names: Sequence[str] | None = None,
    day: date | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    on_source: Callable[[str], None] | None = None,
) -> list[FetchSummary]:
    """Fetch each source and store what it brought; one failing source never stops the rest."""
    summaries = []
    for name in names or settings.sources.enabled:
        if on_source:
            on_source(name)
        summaries.append(_fetch_one(settings, store, name, day, transport))
    return summaries


def _fetch_one(
    settings: Settings,
    store: Store,
    name: str,
    day: date | None,
    transport: httpx.BaseTransport | None,
) -> FetchSummary:
    started = datetime.now(UTC)
    clock = time.monotonic()
    source = build_source(name, settings)
    try:
        with Fetcher(settings.http, transport=transport, validators=store.validators()) as fetcher:
            records = source.fetch(fetcher, day)
            learned = fetcher.learned
            not_modified = fetcher.not_modified
    except SourceError as exc:
        return _failed(store, name, started, clock, exc.reason)
    except Exception as exc:  # a bug in one source must not stop the others
        log.exception("%s: unexpected error while fetching", name)
        return _failed(store, name, started, clock, f"internal error: {exc!r}")

    papers, skipped = merge_batch(records)
    for attempt in (1, 2):
        try:
            with store.transaction() as session:
                by_id, by_title = store.papers_by_keys(
                    session, (p.key for p in papers), (p.title_key for p in papers)
                )
                stats = upsert(session, papers, by_id, by_title, now=started)
                store.save_validators(session, learned, started)
                status = "not_modified" if not_modified and not records else "ok"
                session.add(
                    FetchRun(
                        source=name,
                        started_at=started,
                        finished_at=datetime.now(UTC),
                        status=status,
                        fetched=len(records),
                        new=stats.new,
                        updated=stats.updated,
                    )
                )
            break
        except IntegrityError:
            # Another process stored one of these papers between our read and our write;
            # reading again sees its row and updates it instead.
            if attempt == 2:
                raise
    if stats.new:
        # Embedded once, when stored (with the semantic extra; a no-op without it). A failing
        # model is logged and the papers are embedded on a later call: the fetch stands.
        embeddings.embed_new(settings, store)
    return FetchSummary(
        name,
        status,
        fetched=len(records),
        new=stats.new,
        updated=stats.updated,
        unchanged=stats.unchanged,
        skipped=skipped,
        seconds=time.monotonic() - clock,
    )


def _failed(store: Store, name: str, started: datetime, clock: float, reason: str) -> FetchSummary:
    log.error("%s: fetch failed: %s", name, reason)
    store.record_fetch(
        FetchRun(
            source=name,
            started_at=started,
            finished_at=datetime.now(UTC),
            status="failed",
            error=reason,
        )
    )
    return FetchSummary(name, "failed", error=reason, seconds=time.monotonic() - clock)


# -- plan and rank ----------------------------------------------------------------------


@dataclass(slots=True)
class PlanSummary:
    planned: int = 0
    ranked: int = 0
    skipped: int = 0  # nothing matched and the subscriber wants no empty mail
    items: int = 0
    plan_seconds: float = 0.0
    rank_seconds: float = 0.0


PLAN_CHUNK = 5000


def plan_and_rank(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    for_date: date | None = None,
    only: Sequence[int] | None = None,
    batch: int = 2000,
) -> PlanSummary:
    """Plan a delivery for everyone due, then fix each planned delivery's papers.

    Planning and ranking commit separately: a crash between them leaves planned deliveries
    without papers, which the next call ranks. ``for_date`` plans that local date for every
    active subscriber whatever the hour (an operator's catch-up); ``only`` limits to some
    subscriber ids.
    """
    summary = PlanSummary()
    window = timedelta(hours=settings.ranking.first_window_hours)
    clock = time.perf_counter()
    with store.transaction() as session:
        due = outbox.due(session, now, only, for_date=for_date)
    # Planned in chunks, each its own short transaction (several planners at once on SQLite
    # take turns): memory and lock time stay flat however many are due. A subscriber another
    # process planned meanwhile is skipped by the unique key.
    for start in range(0, len(due), PLAN_CHUNK):
        with store.transaction() as session:
            outbox.begin_write(session)
            summary.planned += len(
                outbox.plan(session, due[start : start + PLAN_CHUNK], now, window)
            )
    del due
    summary.plan_seconds = time.perf_counter() - clock
    if summary.planned:
        log.info(
            "plan: %d digests planned in %.2f s",
            summary.planned,
            summary.plan_seconds,
            extra=_stage("plan", summary.planned, summary.plan_seconds),
        )

    ranker: Ranker | None = None
    ranker_since: datetime | None = None
    clock = time.perf_counter()
    # Papers stored before the semantic extra was installed get their vectors now, outside
    # the ranking transactions (on SQLite those hold the write lock).
    embeddings.embed_new(settings, store)
    while True:
        with _gc_paused(), store.transaction() as session:
            outbox.begin_write(session)
            deliveries = outbox.unranked(session, batch)
            if not deliveries:
                break
            since = min(d.since for d in deliveries)
            if ranker is None or ranker_since is None or since < ranker_since:
                # Per-paper work (tokens, stems, matrices) once for all batches of this run.
                ranker, ranker_since = _ranker(session, settings, store, since, now), since
            _rank_batch(session, ranker, deliveries, now, summary)
    summary.rank_seconds = time.perf_counter() - clock
    if summary.ranked:
        log.info(
            "rank: %d digests ranked (%d papers chosen) in %.2f s",
            summary.ranked,
            summary.items,
            summary.rank_seconds,
            extra=_stage("rank", summary.ranked, summary.rank_seconds),
        )
    return summary


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is ranked and stored: it allocates some
    hundred thousand objects that stay alive until the commit, and the collector would scan
    the growing heap again and again for nothing (it made ranking 10,000 digests take 1.6x as
    long). Nothing here forms cycles that must go sooner."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stage(name: str, count: int, seconds: float) -> dict[str, object]:
    """Log record fields a collector can add up (the benchmark does)."""
    return {"stage": name, "stage_numbers": {"count": count, "seconds": seconds}}


def _ranker(
    session: Session, settings: Settings, store: Store, since: datetime, now: datetime
) -> Ranker:
    papers = session.scalars(select(Paper).where(Paper.first_seen_at >= since).order_by(Paper.id))
    cards = [compose.paper_card(p) for p in papers]
    # Meaning too, when ranking.semantic is on and the extra is installed; None otherwise.
    semantic = embeddings.semantic_for(settings, store, cards, embed_missing=False)
    return Ranker(cards, settings.ranking, now, semantic=semantic)


# Marks a batch's deliveries ranked (and those with nothing to send skipped) in one
# executemany; the bind names differ from the columns', as an executemany UPDATE needs.
_RANKED = (
    update(Delivery)
    .where(Delivery.id == bindparam("b_id"))
    .values(
        ranked_at=bindparam("b_now"),
        paper_count=bindparam("b_count"),
        status=bindparam("b_status"),
    )
)


def _rank_batch(
    session: Session,
    ranker: Ranker,
    deliveries: Sequence[Any],
    now: datetime,
    summary: PlanSummary,
) -> None:
    """Rank a batch of planned deliveries (rows of id, subscriber_id, since) and store what
    was chosen, with three statements whatever the batch's size."""
    ids = [d.subscriber_id for d in deliveries]
    people = {
        row.id: row
        for row in session.execute(
            select(
                Subscriber.id, Subscriber.profile, Subscriber.max_papers, Subscriber.send_when_empty
            ).where(Subscriber.id.in_(ids))
        )
    }
    since = min(d.since for d in deliveries)
    sent: dict[int, set[int]] = defaultdict(set)
    recent = select(Paper.id).where(Paper.first_seen_at >= since)
    rows = session.execute(
        select(SentPaper.subscriber_id, SentPaper.paper_id).where(
            SentPaper.subscriber_id.in_(ids), SentPaper.paper_id.in_(recent)
        )
    )
    for subscriber_id, paper_id in rows:
        sent[subscriber_id].add(paper_id)
    # A paper the reader judged (from a digest, or seeded) is not news to them.
    for subscriber_id, papers in feedback.judged_papers(session, ids).items():
        sent[subscriber_id] |= papers
    requests = [
        RankRequest(
            profile=Profile.from_json(people[d.subscriber_id].profile),
            limit=people[d.subscriber_id].max_papers,
            since=d.since,
            exclude_ids=frozenset(sent[d.subscriber_id]),
        )
        for d in deliveries
    ]
    results = ranker.rank(requests)
    item_rows: list[dict[str, object]] = []
    sent_rows: list[dict[str, object]] = []
    marks: list[dict[str, object]] = []
    for delivery, ranked in zip(deliveries, results, strict=True):
        status = "planned"
        if not ranked and not people[delivery.subscriber_id].send_when_empty:
            status = "skipped"
            summary.skipped += 1
        marks.append(
            {"b_id": delivery.id, "b_now": now, "b_count": len(ranked), "b_status": status}
        )
        item_rows.extend(compose.item_rows(delivery.id, ranked))
        sent_rows.extend(
            {
                "subscriber_id": delivery.subscriber_id,
                "paper_id": i.paper_id,
                "delivery_id": delivery.id,
            }
            for i in ranked
        )
        summary.ranked += 1
        summary.items += len(ranked)
    # Core statements on the session's connection: executemany, none of the ORM's per-row
    # bookkeeping (ten times faster for a batch's ~20,000 rows).
    connection = session.connection()
    connection.execute(_RANKED, marks)
    if item_rows:
        connection.execute(insert(DeliveryItem.__table__), item_rows)
        # The sent log's unique (subscriber, paper) makes "never the same paper twice" hold
        # even against a bug or a race upstream.
        connection.execute(insert(SentPaper.__table__), sent_rows)


# -- send -------------------------------------------------------------------------------


def worker_name(settings: Settings | None = None) -> str:
    """The name a sender's claims carry: ``delivery.worker_name``, else host:pid."""
    if settings is not None and settings.delivery.worker_name:
        return settings.delivery.worker_name
    return f"{socket.gethostname()}:{os.getpid()}"


def make_sender(
    settings: Settings,
    store: Store,
    renderer: Renderer,
    links: SignedLinks,
    *,
    clock: Callable[[], datetime] | None = None,
    owner: str | None = None,
    batch: int | None = None,
    lease: timedelta | None = None,
    only: Sequence[int] | None = None,
    stop: threading.Event | None = None,
) -> Sender:
    """A sender whose messages are the digests the pipeline ranked (and the transactional
    mail waiting ahead of them). Each claimed batch's inputs are loaded with a few queries
    (:class:`Digests`); the sending thread renders each message just before it sends it."""
    digests = Digests(settings, links)

    def prepare(session: Session, delivery: Delivery) -> Outgoing:
        data = digests.input(session, delivery)
        return _outgoing(delivery, data.to_address, lambda: renderer.render(data).raw)

    return Sender(
        settings,
        store,
        prepare,
        owner=owner or worker_name(settings),
        clock=clock,
        stop=stop,
        only=only,
        batch=batch,
        lease=lease,
        prepare_batch=digests.load,
    )


def send_ready(
    settings: Settings,
    store: Store,
    mailer: Mailer,
    renderer: Renderer,
    links: SignedLinks,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    owner: str | None = None,
    batch: int | None = None,
    lease: timedelta | None = None,
    only: Sequence[int] | None = None,
) -> SendSummary:
    """Claim ready deliveries, render and hand each to ``mailer``, record each outcome; one
    lane over one connection. One bad message is recorded and skipped; it never stops the run.
    """
    sender = make_sender(
        settings,
        store,
        renderer,
        links,
        clock=clock,
        owner=owner,
        batch=batch,
        lease=lease,
        only=only,
    )
    return sender.lane(mailer)


def send_all(
    settings: Settings,
    store: Store,
    renderer: Renderer,
    links: SignedLinks,
    *,
    make_mailer: Callable[[], Mailer] | None = None,
    clock: Callable[[], datetime] | None = None,
    owner: str | None = None,
    only: Sequence[int] | None = None,
    stop: threading.Event | None = None,
) -> SendSummary:
    """Send everything ready over ``smtp.max_connections`` connections at once."""
    from digest.delivery.mailers import make_mailer as default_mailer

    sender = make_sender(
        settings, store, renderer, links, clock=clock, owner=owner, only=only, stop=stop
    )
    return sender.run(make_mailer or (lambda: default_mailer(settings)))


def _outgoing(delivery: Delivery, address: str, build: Callable[[], bytes]) -> Outgoing:
    return Outgoing(
        delivery_id=delivery.id,
        public_id=delivery.public_id,
        subscriber_id=delivery.subscriber_id,
        recipient=address,
        attempts=delivery.attempts,
        planned_at=delivery.planned_at,
        name=compose.outbox_name(delivery.local_date, address, delivery.public_id),
        build=build,
    )


# -- preview: what a profile would get, writing nothing -----------------------------------


def preview(
    settings: Settings,
    store: Store,
    profile: Profile,
    *,
    limit: int,
    now: datetime,
    since: datetime | None,
    exclude_ids: frozenset[int] = frozenset(),
) -> list[tuple[RankedItem, PaperCard]]:
    with store.transaction() as session:
        query = select(Paper).order_by(Paper.id)
        if since is not None:
            query = query.where(Paper.first_seen_at >= since)
        cards = [compose.paper_card(p) for p in session.scalars(query)]
    by_id = {c.paper_id: c for c in cards}
    semantic = embeddings.semantic_for(settings, store, cards)
    ranker = Ranker(cards, settings.ranking, now, semantic=semantic)
    [ranked] = ranker.rank([RankRequest(profile, limit, since, exclude_ids)])
    return [(item, by_id[item.paper_id]) for item in ranked]


def subscriber_preview(
    settings: Settings, store: Store, email: str, now: datetime
) -> tuple[Subscriber, list[tuple[RankedItem, PaperCard]]]:
    """What ``email`` would get if their digest were planned now."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        last = session.scalar(
            select(Delivery.planned_at)
            .where(Delivery.subscriber_id == person.id)
            .order_by(Delivery.planned_at.desc())
            .limit(1)
        )
        sent = frozenset(
            session.scalars(select(SentPaper.paper_id).where(SentPaper.subscriber_id == person.id))
        ) | feedback.judged_papers(session, [person.id]).get(person.id, set())
    window = timedelta(hours=settings.ranking.first_window_hours)
    since = max(last, now - outbox.MAX_WINDOW) if last else now - window
    items = preview(
        settings,
        store,
        subscribers.profile_of(person),
        limit=person.max_papers,
        now=now,
        since=since,
        exclude_ids=sent,
    )
    return person, items
