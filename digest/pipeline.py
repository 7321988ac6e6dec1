"""The pipeline, stage by stage: fetch -> ingest (-> plan -> rank -> render -> send).

Each stage saves its output before the next starts, so a rerun resumes where a crash
stopped it. Errors name the stage and the source or subscriber they concern.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest import compose, subscribers
from digest.config import Settings
from digest.delivery import outbox
from digest.delivery.mailers import Mailer
from digest.delivery.workers import Outgoing, Sender, SendSummary
from digest.errors import SourceError
from digest.ingest import merge_batch, upsert
from digest.items import PaperCard, RankedItem
from digest.models import Delivery, DeliveryItem, FetchRun, Paper, SentPaper, Subscriber
from digest.profiles import Profile
from digest.ranking import Ranker, RankRequest
from digest.render import DigestInput, Renderer
from digest.sources.base import build_source
from digest.sources.http import Fetcher
from digest.store import Store
from digest.tokens import Links

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
    with store.transaction() as session:
        outbox.begin_write(session)  # several planners at once on SQLite: take turns
        due = outbox.due(session, now, only, for_date=for_date)
        summary.planned = len(outbox.plan(session, due, now, window))

    ranker: Ranker | None = None
    ranker_since: datetime | None = None
    while True:
        with store.transaction() as session:
            outbox.begin_write(session)
            deliveries = outbox.unranked(session, batch)
            if not deliveries:
                break
            since = min(d.since for d in deliveries)
            if ranker is None or ranker_since is None or since < ranker_since:
                # Per-paper work (tokens, stems, matrices) once for all batches of this run.
                ranker, ranker_since = _ranker(session, settings, since, now), since
            _rank_batch(session, ranker, deliveries, now, summary)
    return summary


def _ranker(session: Session, settings: Settings, since: datetime, now: datetime) -> Ranker:
    papers = session.scalars(select(Paper).where(Paper.first_seen_at >= since).order_by(Paper.id))
    return Ranker([compose.paper_card(p) for p in papers], settings.ranking, now)


def _rank_batch(
    session: Session,
    ranker: Ranker,
    deliveries: Sequence[Delivery],
    now: datetime,
    summary: PlanSummary,
) -> None:
    ids = [d.subscriber_id for d in deliveries]
    people = {s.id: s for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)))}
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
    requests = [
        RankRequest(
            profile=subscribers.profile_of(people[d.subscriber_id]),
            limit=people[d.subscriber_id].max_papers,
            since=d.since,
            exclude_ids=frozenset(sent[d.subscriber_id]),
        )
        for d in deliveries
    ]
    results = ranker.rank(requests)
    item_rows: list[dict[str, object]] = []
    sent_rows: list[dict[str, object]] = []
    for delivery, ranked in zip(deliveries, results, strict=True):
        delivery.ranked_at = now
        delivery.paper_count = len(ranked)
        if not ranked and not people[delivery.subscriber_id].send_when_empty:
            delivery.status = "skipped"
            summary.skipped += 1
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
    if item_rows:
        session.execute(insert(DeliveryItem), item_rows)
        # The sent log's unique (subscriber, paper) makes "never the same paper twice" hold
        # even against a bug or a race upstream.
        session.execute(insert(SentPaper), sent_rows)


# -- send -------------------------------------------------------------------------------


def make_renderer(settings: Settings) -> Renderer:
    folder = settings.paths.templates_dir
    return Renderer(settings.mail, Path(folder) if folder else None)


def worker_name(settings: Settings | None = None) -> str:
    """The name a sender's claims carry: ``delivery.worker_name``, else host:pid."""
    if settings is not None and settings.delivery.worker_name:
        return settings.delivery.worker_name
    return f"{socket.gethostname()}:{os.getpid()}"


def make_sender(
    settings: Settings,
    store: Store,
    renderer: Renderer,
    links: Links,
    *,
    clock: Callable[[], datetime] | None = None,
    owner: str | None = None,
    batch: int | None = None,
    lease: timedelta | None = None,
    only: Sequence[int] | None = None,
    stop: threading.Event | None = None,
) -> Sender:
    """A sender whose messages are the digests the pipeline ranked."""

    def prepare(session: Session, delivery: Delivery) -> Outgoing:
        return _outgoing(session, settings, renderer, links, delivery)

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
    )


def send_ready(
    settings: Settings,
    store: Store,
    mailer: Mailer,
    renderer: Renderer,
    links: Links,
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
    links: Links,
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


def _outgoing(
    session: Session, settings: Settings, renderer: Renderer, links: Links, delivery: Delivery
) -> Outgoing:
    data = _digest_input(session, settings, links, delivery)
    return Outgoing(
        delivery_id=delivery.id,
        public_id=delivery.public_id,
        subscriber_id=delivery.subscriber_id,
        recipient=data.to_address,
        attempts=delivery.attempts,
        planned_at=delivery.planned_at,
        name=compose.outbox_name(data.local_date, data.to_address, delivery.public_id),
        build=lambda: renderer.render(data).message,
    )


def _digest_input(
    session: Session, settings: Settings, links: Links, delivery: Delivery
) -> DigestInput:
    subscriber = session.get(Subscriber, delivery.subscriber_id)
    assert subscriber is not None
    rows = session.scalars(
        select(DeliveryItem)
        .where(DeliveryItem.delivery_id == delivery.id)
        .order_by(DeliveryItem.position)
    ).all()
    papers = {
        p.id: p
        for p in session.scalars(select(Paper).where(Paper.id.in_([r.paper_id for r in rows])))
    }
    items = [(compose.ranked_item(r), compose.paper_card(papers[r.paper_id])) for r in rows]
    profile = subscribers.profile_of(subscriber)
    template = settings.delivery.return_path
    return DigestInput(
        to_address=subscriber.email,
        local_date=delivery.local_date,
        items=items,
        profile_summary=profile.describe(weights=False),
        message_id=compose.message_id(delivery.public_id, settings.mail.from_address),
        date_header=delivery.planned_at,
        manage_url=links.manage(subscriber.public_id, subscriber.token_version),
        unsubscribe_url=links.unsubscribe(subscriber.public_id),
        archive_url=links.archive(delivery.public_id),
        return_path=template.replace("{id}", delivery.public_id) if template else None,
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
    ranker = Ranker(cards, settings.ranking, now)
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
        )
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
