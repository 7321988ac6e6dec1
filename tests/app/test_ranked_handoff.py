"""A worker sends what it ranked without reading the chosen papers back (digest.app.ranked):
what it holds equals what the database gives back, the messages made either way are the same
bytes, its claims take what it holds first and let go of what another sender took, and its
sending threads share what it holds, every digest sent once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from delivery_helpers import add_subscribers, fetch_sample, smtp_settings
from smtp_server import smtp_server
from sqlalchemy import select

from digest.app import digests
from digest.app.ranked import RankedItems
from digest.app.sending import DigestMaker, OutboxQueue, make_renderer, signed_links
from digest.config import Settings
from digest.delivery.sender import SendSummary
from digest.domain.states import Lease
from digest.models import Delivery
from digest.scheduler import Service
from digest.store import Store, begin_write, outbox
from digest.store import digests as stored

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def ranked_day(settings: Settings, store: Store, readers: int, **options: object) -> RankedItems:
    """The sample's papers, ``readers`` subscribers with topics (their papers have reasons and
    highlighted terms), planned and ranked, what was ranked held."""
    fetch_sample(settings, store, NOW)
    add_subscribers(store, readers, now=NOW, topics=True, max_papers=5)
    kept = RankedItems(**options)  # type: ignore[arg-type]
    summary = digests.plan_and_rank(settings, store, NOW, owner="ranker", batch=4, kept=kept)
    assert summary.ranked == readers
    return kept


def delivery_ids(store: Store) -> list[int]:
    with store.transaction() as session:
        return sorted(session.scalars(select(Delivery.id)))


def test_what_a_worker_holds_is_what_the_database_gives_back(
    settings: Settings, any_store: Store
) -> None:
    kept = ranked_day(settings, any_store, 9)
    ids = delivery_ids(any_store)
    assert len(kept) == len(ids) == 9
    held = kept.take(ids)
    with any_store.transaction() as session:
        loaded = stored.items_of(session, ids)
    assert held == loaded
    assert any(item.highlight for items in loaded.values() for item in items)
    assert any(item.reasons for items in loaded.values() for item in items)


def test_messages_from_held_papers_and_from_the_database_are_the_same(
    settings: Settings, store: Store
) -> None:
    kept = ranked_day(settings, store, 6)
    maker = DigestMaker(settings, make_renderer(settings), signed_links(settings))
    with store.transaction() as session:
        begin_write(session)
        claimed = outbox.claim(session, Lease("sender", NOW, HOUR), 10)
    assert len(claimed) == 6
    with store.transaction() as session:
        from_memory = maker.prepare(session, claimed, kept)
    assert len(kept) == 0  # each one handed over once
    with store.transaction() as session:
        from_database = maker.prepare(session, claimed)
    for one in claimed:
        held, loaded = from_memory[one.id], from_database[one.id]
        assert not isinstance(held, Exception) and not isinstance(loaded, Exception)
        assert held.build() == loaded.build()


def test_a_worker_claims_what_it_holds_first_and_lets_go_of_what_others_took(
    settings: Settings, store: Store
) -> None:
    kept = ranked_day(settings, store, 8)
    ids = delivery_ids(store)
    kept.forget(ids[:4])  # the first four were ranked by "another process"
    mine = ids[4:]
    # Another sender takes one of ours.
    with store.transaction() as session:
        begin_write(session)
        [taken] = outbox.claim(session, Lease("other", NOW, HOUR), 1, ids=[mine[1]])
    assert taken.id == mine[1]
    queue = OutboxQueue(
        settings,
        store,
        DigestMaker(settings, make_renderer(settings), signed_links(settings)),
        kept=kept,
    )
    lease = Lease("worker", NOW, HOUR)
    first = queue.claim(lease, 2, SendSummary())
    # Ours first, though lower ids were ready; the one the other sender took is let go of.
    assert first is not None and [o.delivery_id for o in first] == [mine[0]]
    assert kept.held() == [mine[2], mine[3]]
    second = queue.claim(lease, 2, SendSummary())
    assert second is not None and [o.delivery_id for o in second] == [mine[2], mine[3]]
    assert len(kept) == 0
    # Then the rest, in the usual order, loaded from the database.
    rest = queue.claim(lease, 10, SendSummary())
    assert rest is not None and [o.delivery_id for o in rest] == ids[:4]
    assert queue.claim(lease, 10, SendSummary()) is None


def test_what_a_worker_holds_is_bounded(settings: Settings, store: Store) -> None:
    kept = ranked_day(settings, store, 7, limit=3)
    ids = delivery_ids(store)
    assert kept.held() == ids[:3]  # the first ranked, in order; the rest not held


def test_sending_threads_share_what_their_worker_ranked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (host, port, recorder):
        mail = smtp_settings(
            settings, host, port, SMTP__MAX_CONNECTIONS="3", DELIVERY__BATCH_SIZE="3"
        )
        store = Store.open(mail.database)
        try:
            fetch_sample(mail, store, NOW)
            emails = add_subscribers(store, 40, now=NOW, topics=True, max_papers=5)
            taken: list[int] = []
            original = RankedItems.take

            def counted(self: RankedItems, wanted: Iterable[int]) -> dict[int, Any]:
                found = original(self, wanted)
                taken.extend(found)
                return found

            monkeypatch.setattr(RankedItems, "take", counted)
            summary = Service(mail, store, clock=lambda: NOW, owner="worker").tick()
        finally:
            store.close()
    assert summary.sent == 40
    assert sorted(r.recipients[0] for r in recorder.messages) == sorted(emails)
    # Every digest's papers came from what the worker held, each handed over once.
    assert len(taken) == len(set(taken)) == 40
