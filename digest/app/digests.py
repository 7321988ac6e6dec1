"""Plan, rank and send the digests that are due: what `digest send`, a worker's round and
the scheduler's tick run, stage by stage.

Each stage saves its output before the next starts, so a rerun resumes where a crash
stopped it: planning inserts one delivery per reader and local date (a unique key makes a
second plan a no-op); ranking fixes each planned delivery's papers; sending claims the
ranked ones (``digest.app.sending``). Candidates come from ``digest.app.candidates``, the
same selection previews and dry runs use.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from digest.app import candidates, meaning, sending
from digest.app.ranked import RankedItems
from digest.config import Settings
from digest.delivery.mailers import Mailer
from digest.delivery.sender import SendSummary
from digest.errors import ValidationError
from digest.ranking import Ranker
from digest.ranking.parts import gc_paused
from digest.render import Renderer
from digest.store import Session, Store, begin_write, digests, outbox, papers, subscribers

log = logging.getLogger(__name__)

PLAN_CHUNK = 5000
# Readers ranked at once: the ranking's dense (readers x papers) arrays and the batch's
# picks are what sets a worker's peak memory (at 1,000 papers: 2,000 readers peaked at
# 310 MB, 500 at 195 MB, for 7% more ranking time; docs/benchmarks.md).
RANK_BATCH = 500
# A batch being ranked is leased for this long; a ranker that died leaves it to the others
# after that (ranking a batch takes about a second).
RANK_LEASE_SECONDS = 300


@dataclass(slots=True)
class PlanSummary:
    planned: int = 0
    ranked: int = 0
    skipped: int = 0  # nothing matched and the subscriber wants no empty mail
    items: int = 0
    no_papers: bool = False  # nothing was planned: no paper is stored yet
    plan_seconds: float = 0.0
    rank_seconds: float = 0.0


_told_no_papers = threading.Event()


def _log_no_papers() -> None:
    # Said once per process: the scheduler asks every tick until the first fetch.
    if not _told_no_papers.is_set():
        _told_no_papers.set()
        log.warning("no papers stored yet: nothing is planned until a fetch stores some")


def plan_and_rank(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    for_date: date | None = None,
    only: Sequence[int] | None = None,
    batch: int = RANK_BATCH,
    owner: str | None = None,
    stop: threading.Event | None = None,
    kept: RankedItems | None = None,
) -> PlanSummary:
    """Plan a delivery for everyone due, then fix each planned delivery's papers.

    Planning and ranking commit separately: a crash between them leaves planned deliveries
    without papers, which the next call ranks. ``for_date`` plans that local date for every
    active subscriber whatever the hour (an operator's catch-up); ``only`` limits to some
    subscriber ids. Ranking goes batch by batch, each leased to ``owner`` (a name of its
    own when None) in a short transaction, ranked outside any, and saved in another that
    leases the next batch: other processes claim, send and record meanwhile (on SQLite the
    write lock is never held while ranking computes). ``stop`` ends it between batches.
    ``kept``: where the saved digests' papers are held for this process's sender
    (``digest.app.ranked``).
    """
    owner = owner or f"rank-{secrets.token_hex(6)}"
    summary = PlanSummary()
    clock = time.perf_counter()
    with store.transaction() as session:
        if papers.count(session) == 0:
            # A fresh installation: a digest planned now would be empty and use up the day
            # (one digest per reader and date), though the first fetch may be minutes away.
            summary.no_papers = True
            _log_no_papers()
            return summary
        due = outbox.due(session, now, only, for_date=for_date)
    # Planned in chunks, each its own short transaction (several planners at once on SQLite
    # take turns): memory and lock time stay flat however many are due. A subscriber another
    # process planned meanwhile is skipped by the unique key.
    window = candidates.first_window(settings)
    for start in range(0, len(due), PLAN_CHUNK):
        with store.transaction() as session:
            begin_write(session)
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
    pool_since: datetime | None = None
    clock = time.perf_counter()
    # Papers stored before the semantic extra was installed get their vectors now, outside
    # the ranking transactions (on SQLite those hold the write lock).
    meaning.embed_new(settings, store)

    def claim_next(session: Session) -> list[outbox.Unranked]:
        """The next batch, leased; none once ``stop`` is set (a batch claimed is ranked)."""
        if stop is not None and stop.is_set():
            return []
        until = now + timedelta(seconds=RANK_LEASE_SECONDS)
        return outbox.claim_unranked(session, owner, now, until, batch)

    with store.transaction() as session:
        begin_write(session)
        planned = claim_next(session)
    while planned:
        since = candidates.pool_start(settings, now, [d.since for d in planned])
        if ranker is None or pool_since is None or since < pool_since:
            # Per-paper work (tokens, stems, matrices) once for all batches of this run.
            ranker, _ = candidates.ranker(settings, store, since, now, embed_missing=False)
            pool_since = since
        # Held for the sender, the batch's picks outlive it: counted as old, not scanned.
        with gc_paused(results_kept=kept is not None):
            planned = _rank_batch(
                settings, store, ranker, planned, now, owner, summary, claim_next, kept
            )
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


def _rank_batch(
    settings: Settings,
    store: Store,
    ranker: Ranker,
    planned: Sequence[outbox.Unranked],
    now: datetime,
    owner: str,
    summary: PlanSummary,
    claim_next: Callable[[Session], list[outbox.Unranked]],
    kept: RankedItems | None = None,
) -> list[outbox.Unranked]:
    """Rank a batch of planned deliveries leased to ``owner``, store what was chosen, and
    claim the next batch (``claim_next``) in the same write: one write lock a batch, not two
    (on SQLite the other rankers and senders wait for each)."""
    ids = [d.subscriber_id for d in planned]
    with store.transaction() as session:
        readers = digests.readers(session, ids)
        known = digests.known_papers(session, ids, min(d.since for d in planned))
        profiles = {i: reader.profile for i, reader in readers.items()}
        back = candidates.second_look_candidates(session, settings, profiles, now)
    requests = [
        candidates.request(
            readers[d.subscriber_id].profile,
            readers[d.subscriber_id].max_papers,
            d.since,
            known.get(d.subscriber_id, set()),
        )
        for d in planned
    ]
    chosen = []
    for delivery, items in zip(planned, ranker.rank(requests), strict=True):
        skipped = not items and not readers[delivery.subscriber_id].send_when_empty
        found = back.get(delivery.subscriber_id, ())
        items = candidates.with_second_looks(settings, items, found, not skipped)
        chosen.append(digests.Chosen(delivery.id, delivery.subscriber_id, items, skipped))
    with store.transaction() as session:
        rows = digests.chosen_rows(session, chosen, now)
    with store.transaction() as session:
        begin_write(session)
        saved = digests.save_chosen(session, rows, owner)
        following = claim_next(session)
    if len(saved) < len(chosen):
        # Our lease ran out and another ranker took some over: theirs count, not ours.
        log.warning(
            "rank: %d of %d deliveries were ranked by another process meanwhile",
            len(chosen) - len(saved),
            len(chosen),
        )
    for one in saved:
        if kept is not None and not one.skipped:
            kept.keep(one.delivery_id, one.items)
        summary.skipped += one.skipped
        summary.ranked += 1
        summary.items += len(one.items)
    return following


def _stage(name: str, count: int, seconds: float) -> dict[str, object]:
    """Log record fields a collector can add up (the benchmark does)."""
    return {"stage": name, "stage_numbers": {"count": count, "seconds": seconds}}


def run(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    for_date: date | None = None,
    only: Sequence[int] | None = None,
    renderer: Renderer | None = None,
    mailers: Callable[[], Mailer] | None = None,
    stop: threading.Event | None = None,
    owner: str | None = None,
    on_planned: Callable[[PlanSummary], None] | None = None,
) -> tuple[PlanSummary, SendSummary]:
    """Plan and rank what is due, then send everything ready (`digest send`)."""
    kept = RankedItems()  # what is ranked here goes to the sender in memory
    planned = plan_and_rank(settings, store, now, for_date=for_date, only=only, kept=kept)
    if on_planned:
        on_planned(planned)
    sent = sending.send_all(
        settings,
        store,
        renderer=renderer,
        mailers=mailers,
        only=only,
        stop=stop,
        owner=owner,
        kept=kept,
    )
    return planned, sent


def active_ids(store: Store, email: str) -> list[int]:
    """The id of the active subscriber ``email`` (to send only their digest); a clear error
    for anyone else."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        if person.status != "active":
            raise ValidationError(
                f"{person.email} is {person.status}; only active subscribers get mail"
            )
        return [person.id]


@dataclass(frozen=True, slots=True)
class DryRun:
    """Who is due now and what each would get (writes nothing)."""

    due: list[tuple[str, date, candidates.ReaderPreview]]


def dry_run(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    for_date: date | None = None,
    only: Sequence[int] | None = None,
) -> DryRun:
    with store.transaction() as session:
        due = outbox.due(session, now, only, for_date=for_date)
        emails = {d.subscriber_id: subscribers.by_id(session, d.subscriber_id) for d in due}
        rows = [
            (emails[d.subscriber_id].email, d.local_date) for d in due if emails[d.subscriber_id]
        ]
    return DryRun(
        [(email, day, candidates.for_reader(settings, store, email, now)) for email, day in rows]
    )


def remaining(store: Store, since: datetime, only: Sequence[int] | None) -> int:
    """Digests still to go among those ready at ``since`` (for a progress bar)."""
    with store.transaction() as session:
        return outbox.remaining(session, since, only)
