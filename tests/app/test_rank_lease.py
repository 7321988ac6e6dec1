"""Ranking batches are leased: a batch is ranked outside any transaction (on SQLite the write
lock is not held while the ranking computes), one ranker's batch is not taken by another
while its lease holds, a dead ranker's batch returns when the lease runs out, and a ranker
whose lease was taken over saves nothing of that batch. Each batch's save leases the next in
the same write (one write lock a batch), and a stop ranks the batch already leased and
leases no more."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from delivery_helpers import add_subscribers, fetch_sample
from sqlalchemy import event, func, select

from digest.app import digests
from digest.app.ranked import RankedItems
from digest.config import Settings
from digest.domain.items import RankedItem
from digest.models import Delivery, DeliveryItem, SentPaper
from digest.store import Store, begin_write, outbox
from digest.store import digests as stored

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def plan_only(settings: Settings, store: Store, count: int) -> None:
    fetch_sample(settings, store, NOW)
    add_subscribers(store, count, now=NOW)
    stopped = threading.Event()
    stopped.set()  # plans, then stops before the first ranking batch
    summary = digests.plan_and_rank(settings, store, NOW, stop=stopped)
    assert summary.planned == count and summary.ranked == 0


def claim(store: Store, owner: str, now: datetime, limit: int = 100) -> list[int]:
    with store.transaction() as session:
        begin_write(session)
        return [d.id for d in outbox.claim_unranked(session, owner, now, now + LEASE, limit)]


def counts(store: Store) -> tuple[int, int, int]:
    with store.transaction() as session:
        ranked = session.scalar(select(func.count()).where(Delivery.ranked_at.is_not(None)))
        items = session.scalar(select(func.count()).select_from(DeliveryItem))
        sent_log = session.scalar(select(func.count()).select_from(SentPaper))
    return ranked or 0, items or 0, sent_log or 0


def test_leased_batches_are_ranked_once(settings: Settings, store: Store) -> None:
    plan_only(settings, store, 6)
    first = claim(store, "A", NOW, limit=4)
    assert len(first) == 4
    # While A's lease holds, B gets only the rest; A itself (a restart with the same name)
    # gets its own back at once.
    second = claim(store, "B", NOW + timedelta(minutes=1))
    assert len(second) == 2 and not set(second) & set(first)
    assert sorted(claim(store, "A", NOW + timedelta(minutes=1), limit=4)) == sorted(first)

    # A dies; after its lease C takes everything unranked, B's expired batch too.
    later = NOW + LEASE + timedelta(minutes=2)
    taken = claim(store, "C", later)
    assert sorted(taken) == sorted(first + second)

    # A comes back late with its result: nothing of it is saved.
    chosen = [stored.Chosen(i, 0, [], skipped=False) for i in first]
    with store.transaction() as session:
        rows = stored.chosen_rows(session, chosen, later)
    with store.transaction() as session:
        begin_write(session)
        assert stored.save_chosen(session, rows, owner="A") == []
    assert counts(store) == (0, 0, 0)

    # C ranks them all (its own lease), each once; the sent log holds each paper once.
    summary = digests.plan_and_rank(settings, store, later, owner="C")
    assert summary.ranked == 6
    ranked, items, sent_log = counts(store)
    assert ranked == 6 and items == sent_log and items > 0
    with store.transaction() as session:
        leased = session.scalar(select(func.count()).where(Delivery.lease_owner.is_not(None)))
    assert leased == 0  # ranked rows carry no ranking lease into sending
    assert digests.plan_and_rank(settings, store, later, owner="D").ranked == 0


def test_nothing_is_planned_before_the_first_fetch(settings: Settings, store: Store) -> None:
    # A fresh installation: readers are due, no paper is stored. Planning now would use up
    # their day with an empty digest; it waits for the first fetch instead.
    add_subscribers(store, 3, now=NOW)
    first = digests.plan_and_rank(settings, store, NOW)
    again = digests.plan_and_rank(settings, store, NOW + timedelta(minutes=1))
    assert first.no_papers and first.planned == 0 and again.planned == 0
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    fetch_sample(settings, store, NOW)
    later = digests.plan_and_rank(settings, store, NOW + timedelta(minutes=2))
    assert not later.no_papers and later.planned == 3 and later.items > 0


class _StopAfterFirstKept(RankedItems):
    """Sets ``stop`` when the first saved digest's papers are handed over: by then the save
    that carried them has already leased the next batch."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def keep(self, delivery_id: int, items: Sequence[RankedItem]) -> bool:
        self.stop.set()
        return super().keep(delivery_id, items)


def test_each_save_leases_the_next_batch_in_the_same_write(
    settings: Settings, store: Store
) -> None:
    plan_only(settings, store, 6)
    writes: list[str] = []

    def count_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            writes.append(statement)

    event.listen(store.engine, "before_cursor_execute", count_write)
    try:
        summary = digests.plan_and_rank(settings, store, NOW, owner="A", batch=2)
    finally:
        event.remove(store.engine, "before_cursor_execute", count_write)
    assert summary.ranked == 6
    # One write to lease the first batch, then one a batch that saves it and leases the next
    # (the last finds none): 4, where a lease of its own for each batch and for the final
    # empty look would be 7.
    assert len(writes) == 4


def test_a_stop_during_a_batch_ranks_the_batch_already_leased_and_leases_no_more(
    settings: Settings, store: Store
) -> None:
    plan_only(settings, store, 6)
    stop = threading.Event()
    summary = digests.plan_and_rank(
        settings, store, NOW, owner="A", batch=2, stop=stop, kept=_StopAfterFirstKept(stop)
    )
    # The first batch's save leased the second before the stop came: that one is ranked too
    # (a leased batch is never left to its lease running out); the third is not leased.
    assert stop.is_set() and summary.ranked == 4
    with store.transaction() as session:
        unranked = session.execute(
            select(Delivery.lease_owner).where(Delivery.ranked_at.is_(None))
        ).all()
    assert [tuple(row) for row in unranked] == [(None,), (None,)]
