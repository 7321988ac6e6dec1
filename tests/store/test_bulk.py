"""Rows in bulk (digest/store/bulk.py), on SQLite and PostgreSQL: a broken key fails the whole
batch as the store's ``Conflict``; a value too long for its column is refused or kept whole,
never cut short; and on PostgreSQL, where the rows go by COPY on the driver's own cursor, a
connection lost in the middle of it is reported as ``Unavailable``, dropped from the pool, and
leaves nothing behind, the next transaction working on a fresh connection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from delivery_helpers import planned_day
from sqlalchemy import func, select

from digest.config import DatabaseSettings, Settings
from digest.errors import Conflict, StoreError, Unavailable
from digest.models import DeliveryItem, Paper, SentPaper
from digest.store import Store, begin_write, bulk, outbox

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
SENT = ("sent_papers", ("subscriber_id", "paper_id", "delivery_id", "upvotes_then"), ())
ITEMS = (
    "delivery_items",
    ("delivery_id", "paper_id", "position", "section", "score", "relevance"),
    ("reasons", "highlight"),
)


def _leased(
    settings: Settings, store: Store, readers: int, papers: int = 6
) -> tuple[list[int], list[Any]]:
    """The sample's first ``papers`` papers' ids, and ``readers`` digests planned and
    leased."""
    planned_day(settings, store, readers, NOW)
    with store.transaction() as session:
        ids = list(session.scalars(select(Paper.id).order_by(Paper.id).limit(papers)))
        begin_write(session)
        leased = outbox.claim_unranked(session, "A", NOW, NOW + timedelta(minutes=5), readers)
    return ids, leased


def test_a_broken_key_fails_the_whole_batch_as_a_conflict(
    settings: Settings, any_store: Store
) -> None:
    store = any_store
    papers, (first, second) = _leased(settings, store, 2)
    sent = (first.subscriber_id, papers[0], first.id, None)
    with store.transaction() as session:
        bulk.insert_rows(session.connection(), *SENT, [sent])
    # The second reader's row is fine; the first's paper is already in its sent log.
    batch = [(second.subscriber_id, papers[1], second.id, 3), sent]
    with pytest.raises(Conflict), store.transaction() as session:
        bulk.insert_rows(session.connection(), *SENT, batch)
    with store.transaction() as session:
        rows = session.execute(select(SentPaper.subscriber_id, SentPaper.paper_id)).all()
    assert [tuple(row) for row in rows] == [(first.subscriber_id, papers[0])]


def test_rows_that_match_a_unique_key_are_skipped_when_asked_and_the_rest_inserted(
    settings: Settings, any_store: Store
) -> None:
    """``skip_conflicts``: a row whose key is there already (or earlier in the same batch) is
    skipped, the others go in; on PostgreSQL that is an executemany, as COPY cannot skip."""
    store = any_store
    papers, (first, second) = _leased(settings, store, 2)
    there = (first.subscriber_id, papers[0], first.id, None)
    with store.transaction() as session:
        bulk.insert_rows(session.connection(), *SENT, [there])
    batch = [there, (second.subscriber_id, papers[1], second.id, 3), (first.subscriber_id,
             papers[2], first.id, 5), (first.subscriber_id, papers[2], first.id, 7)]  # fmt: skip
    with store.transaction() as session:
        bulk.insert_rows(
            session.connection(), *SENT, batch, skip_conflicts=("subscriber_id", "paper_id")
        )
    with store.transaction() as session:
        rows = session.execute(
            select(SentPaper.subscriber_id, SentPaper.paper_id, SentPaper.upvotes_then)
        ).all()
    assert sorted(tuple(row) for row in rows) == sorted(
        [(first.subscriber_id, papers[0], None), (second.subscriber_id, papers[1], 3),
         (first.subscriber_id, papers[2], 5)]
    )  # fmt: skip


def test_a_value_too_long_for_its_column_is_never_cut_short(
    settings: Settings, any_store: Store
) -> None:
    store = any_store
    papers, leased = _leased(settings, store, 1)
    long_section = "picks-and-more-than-ten"  # delivery_items.section is VARCHAR(10)
    row = (leased[0].id, papers[0], 1, long_section, 1.0, 0.5, "[]", "[]")
    try:
        with store.transaction() as session:
            bulk.insert_rows(session.connection(), *ITEMS, [row])
    except StoreError as refused:  # PostgreSQL checks the length
        assert "too long" in str(refused)
        return
    with store.transaction() as session:  # SQLite keeps any length
        assert session.scalar(select(DeliveryItem.section)) == long_section


class _RowsThatCutTheLine(list[tuple[Any, ...]]):
    """Rows whose reading, half way through, has the server end the connection they are
    being copied on (``pg_terminate_backend`` from another connection), as a restart or a
    network fault would."""

    def __init__(self, rows: list[tuple[Any, ...]], url: str, backend: int) -> None:
        super().__init__(rows)
        self.url, self.backend, self.cut = url, backend, False

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for n, row in enumerate(super().__iter__()):
            if n == len(self) // 2:
                with psycopg.connect(self.url, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (self.backend,))
                self.cut = True
            yield row


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    store = Store.open(DatabaseSettings(url=postgres_url))
    yield store
    store.close()


def test_a_connection_lost_during_copy_is_unavailable_and_leaves_nothing(
    settings: Settings, postgres_store: Store, postgres_url: str
) -> None:
    store = postgres_store
    # Every row valid (no (digest, paper) pair twice), so that the cut is the only thing that
    # can fail: with repeated pairs the server could refuse a duplicate key before the cut
    # reached the client, and the test saw that refusal instead (a CI run did).
    papers, leased = _leased(settings, store, 100, papers=200)
    pairs = [(digest.id, paper) for digest in leased for paper in papers]
    rows = [
        (delivery, paper, n + 1, "picks", 1.0, 0.5, '[["term", "x"]]', "[]")
        for n, (delivery, paper) in enumerate(pairs)
    ]
    assert len(rows) == 20_000  # past the driver's buffer, so the cut is seen mid-stream
    plain_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with pytest.raises(Unavailable) as caught, store.transaction() as session:
        connection = session.connection()
        backend = connection.connection.driver_connection.info.backend_pid
        cutting = _RowsThatCutTheLine(rows, plain_url, backend)
        bulk.insert_rows(connection, *ITEMS, cutting)
    assert cutting.cut
    assert "database unavailable" in str(caught.value)
    # The pool let go of the dead connection: the next transaction gets a working one.
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryItem)) == 0
        bulk.insert_rows(session.connection(), *ITEMS, rows[:3])
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryItem)) == 3
