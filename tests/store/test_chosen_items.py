"""A ranked digest's chosen papers as stored and read back, on SQLite and PostgreSQL: their
reasons and highlighted terms are written as JSON text handed straight to the driver (an
executemany on SQLite, COPY on PostgreSQL: digest/store/bulk.py), and must come back as they
went in, hostile labels included, through the sender's loader and through the ORM alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from delivery_helpers import planned_day
from sqlalchemy import select

from digest.config import Settings
from digest.domain.items import RankedItem, Reason
from digest.models import DeliveryItem, Paper
from digest.store import Store, begin_write, outbox
from digest.store import digests as stored

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)

LABELS = [
    'say "hi"',
    "back\\slash",
    "naïve café — 東京",
    "</script><b>",
    "",
    "tab\there",
    "50% %s %(x)s",
]


def test_chosen_items_come_back_as_they_were_saved(settings: Settings, any_store: Store) -> None:
    store = any_store
    assert planned_day(settings, store, 3, NOW) == 3  # the ranking here is ours
    with store.transaction() as session:
        papers = list(session.scalars(select(Paper.id).order_by(Paper.id).limit(6)))
        begin_write(session)
        leased = outbox.claim_unranked(session, "A", NOW, NOW + timedelta(minutes=5), 10)
    shared = (Reason("term", "agents"), Reason("phrase", "reinforcement learning"))
    chosen, expected = [], {}
    for n, one in enumerate(leased):
        items = [
            RankedItem(
                paper_id=paper,
                score=1.5 - k / 10,
                relevance=0.25 * k,
                # Most readers share their lists (made once); some are their own.
                reasons=shared if k % 2 else (Reason("author", LABELS[(n + k) % len(LABELS)]),),
                section="trending" if k == 5 else "picks",
                highlight=("agents", LABELS[k]) if k % 3 else (),
            )
            for k, paper in enumerate(papers)
        ]
        chosen.append(stored.Chosen(one.id, one.subscriber_id, items, skipped=False))
        expected[one.id] = items
    with store.transaction() as session:
        rows = stored.chosen_rows(session, chosen, NOW)
    with store.transaction() as session:
        begin_write(session)
        assert len(stored.save_chosen(session, rows, owner="A")) == 3
    with store.transaction() as session:
        assert stored.items_of(session, list(expected)) == expected
        rows = session.scalars(select(DeliveryItem).order_by(DeliveryItem.id)).all()
    by_orm = {
        (row.delivery_id, row.paper_id): (row.reasons, row.highlight, row.position) for row in rows
    }
    for delivery_id, items in expected.items():
        for position, item in enumerate(items, start=1):
            reasons = [[r.kind, r.label] for r in item.reasons]
            assert by_orm[delivery_id, item.paper_id] == (
                reasons,
                list(item.highlight),
                position,
            )
