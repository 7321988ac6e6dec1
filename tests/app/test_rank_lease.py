"""Ranking batches are leased: a batch is ranked outside any transaction (on SQLite the write
lock is not held while the ranking computes), one ranker's batch is not taken by another
while its lease holds, a dead ranker's batch returns when the lease runs out, and a ranker
whose lease was taken over saves nothing of that batch."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from delivery_helpers import add_subscribers, fetch_sample
from sqlalchemy import func, select

from digest.app import digests
from digest.config import Settings
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
