"""A digest's content: what ranking needs to choose it, what is stored once chosen, and
what rendering loads back. Rows become the domain's plain types here and nowhere else."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Text, bindparam, cast, select, update
from sqlalchemy.orm import Session

from digest.domain.items import RankedItem, Reason, ReasonKind, Section
from digest.domain.profiles import Profile
from digest.domain.second_look import SECTION as REVISIT
from digest.domain.states import DeliveryState
from digest.models import Delivery, DeliveryItem, Feedback, Paper, SentPaper, Subscriber
from digest.store import bulk, chunks, second_looks


@dataclass(frozen=True, slots=True)
class Reader:
    """What choosing and rendering a subscriber's digest needs of them."""

    id: int
    email: str
    public_id: str
    token_version: int
    profile: Profile
    max_papers: int
    send_when_empty: bool


# What a claimed batch loads, built once (bind: ids): building a statement afresh for every
# batch of 20 digests cost more than running it.
_READERS = select(
    Subscriber.id,
    Subscriber.email,
    Subscriber.public_id,
    Subscriber.token_version,
    Subscriber.profile,
    Subscriber.max_papers,
    Subscriber.send_when_empty,
).where(Subscriber.id.in_(bindparam("ids", expanding=True)))


def readers(session: Session, subscriber_ids: Iterable[int]) -> dict[int, Reader]:
    found: dict[int, Reader] = {}
    connection = session.connection()
    for chunk in chunks(list(set(subscriber_ids))):
        rows = connection.execute(_READERS, {"ids": list(chunk)})
        for row in rows:
            found[row.id] = Reader(
                row.id,
                row.email,
                row.public_id,
                row.token_version,
                Profile.from_json(row.profile),
                row.max_papers,
                row.send_when_empty,
            )
    return found


def known_papers(
    session: Session, subscriber_ids: Sequence[int], since: datetime | None = None
) -> dict[int, set[int]]:
    """Per subscriber, the papers that are no news to them: mailed before, or judged (liked
    or disliked in a digest, or seeded), among the papers first seen from ``since`` on."""
    found: dict[int, set[int]] = defaultdict(set)
    for chunk in chunks(list(subscriber_ids)):
        sent = select(SentPaper.subscriber_id, SentPaper.paper_id).where(
            SentPaper.subscriber_id.in_(chunk)
        )
        judged = select(Feedback.subscriber_id, Feedback.paper_id).where(
            Feedback.subscriber_id.in_(chunk)
        )
        if since is not None:
            recent = select(Paper.id).where(Paper.first_seen_at >= since)
            sent = sent.where(SentPaper.paper_id.in_(recent))
            judged = judged.where(Feedback.paper_id.in_(recent))
        for query in (sent, judged):
            for subscriber_id, paper_id in session.execute(query):
                found[subscriber_id].add(paper_id)
    return found


def last_planned(session: Session, subscriber_id: int) -> datetime | None:
    """When the subscriber's latest digest was planned (None: never)."""
    return session.scalar(
        select(Delivery.planned_at)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.planned_at.desc())
        .limit(1)
    )


# Marks a batch's deliveries ranked (and those with nothing to send skipped) in one
# executemany; the bind names differ from the columns', as an executemany UPDATE needs.
_RANKED = (
    update(Delivery)
    .where(Delivery.id == bindparam("b_id"))
    .values(
        ranked_at=bindparam("b_now"),
        paper_count=bindparam("b_count"),
        status=bindparam("b_status"),
        lease_owner=None,
        lease_until=None,
    )
)


@dataclass(frozen=True, slots=True)
class Chosen:
    delivery_id: int
    subscriber_id: int
    items: Sequence[RankedItem]
    skipped: bool  # nothing to send, and the reader wants no empty mail


@dataclass(frozen=True, slots=True)
class ChosenRows:
    """A batch's rows to write, made by :func:`chosen_rows` before the write lock is taken
    and written by :func:`save_chosen` while it is held."""

    chosen: Sequence[Chosen]
    marks: list[dict[str, object]]  # per delivery, in ``chosen``'s order
    items: list[list[tuple[object, ...]]]  # per delivery: its delivery_items rows
    sent: list[list[tuple[object, ...]]]  # per delivery: its sent-log rows
    brought_back: list[list[dict[str, object]]]  # per delivery: second looks it brings back


def chosen_rows(session: Session, chosen: Sequence[Chosen], now: datetime) -> ChosenRows:
    """The rows that fix ``chosen`` deliveries' papers, made in any transaction: on SQLite
    building them (JSON text for every item, the papers' states read) under the write lock
    kept the other processes waiting for it twice as long as the writing itself."""
    # What each paper is like now, kept with the sent log: "worth another look" compares.
    then = second_looks.states_then(
        session, {i.paper_id for one in chosen for i in one.items if i.section != REVISIT}
    )
    rows = ChosenRows(chosen, [], [], [], [])
    for one in chosen:
        status = DeliveryState.SKIPPED if one.skipped else DeliveryState.PLANNED
        rows.marks.append(
            {"b_id": one.delivery_id, "b_now": now, "b_count": len(one.items), "b_status": status}
        )
        rows.items.append(_item_rows(one.delivery_id, one.items))
        sent: list[tuple[object, ...]] = []
        brought_back: list[dict[str, object]] = []
        for i in one.items:
            if i.section == REVISIT:  # in the sent log already: marked as brought back
                brought_back.append(
                    {
                        "b_subscriber": one.subscriber_id,
                        "b_paper": i.paper_id,
                        "b_delivery": one.delivery_id,
                    }
                )
                continue
            sent.append((one.subscriber_id, i.paper_id, one.delivery_id, *then[i.paper_id]))
        rows.sent.append(sent)
        rows.brought_back.append(brought_back)
    return rows


def save_chosen(session: Session, rows: ChosenRows, owner: str) -> Sequence[Chosen]:
    """Fix the papers of the deliveries still unranked and leased to ``owner`` (by
    ``outbox.claim_unranked``), with a few statements whatever the batch's size; those saved.
    One whose lease ran out and that another ranker took over is left to that one. Call
    after ``begin_write``."""
    mine: set[int] = set()
    for part in chunks([one.delivery_id for one in rows.chosen]):
        mine.update(
            session.scalars(
                select(Delivery.id).where(
                    Delivery.id.in_(part),
                    Delivery.ranked_at.is_(None),
                    Delivery.lease_owner == owner,
                )
            )
        )
    kept = [n for n, one in enumerate(rows.chosen) if one.delivery_id in mine]
    if not kept:
        return []
    connection = session.connection()
    connection.execute(_RANKED, [rows.marks[n] for n in kept])
    item_rows = [row for n in kept for row in rows.items[n]]
    if item_rows:
        _insert_many(connection, _ITEM_COLUMNS, item_rows)
    sent_rows = [row for n in kept for row in rows.sent[n]]
    if sent_rows:
        # The sent log's unique (subscriber, paper) makes "never the same paper twice" hold
        # even against a bug or a race upstream.
        _insert_many(connection, _SENT_COLUMNS, sent_rows)
    second_looks.mark_brought_back(session, [row for n in kept for row in rows.brought_back[n]])
    return [rows.chosen[n] for n in kept]


# A table, the plain columns save_chosen writes and then the JSON ones, in its rows' order.
_Columns = tuple[str, tuple[str, ...], tuple[str, ...]]
_ITEM_COLUMNS: _Columns = (
    DeliveryItem.__tablename__,
    ("delivery_id", "paper_id", "position", "section", "score", "relevance"),
    ("reasons", "highlight"),  # JSON, given as its text
)
_SENT_COLUMNS: _Columns = (
    SentPaper.__tablename__,
    ("subscriber_id", "paper_id", "delivery_id", *second_looks.STATE_COLUMNS),
    (),
)
# JSON text as SQLAlchemy's JSON type writes it (json.dumps with its defaults).
_JSON_TEXT = json.JSONEncoder().encode


def _insert_many(connection: Connection, columns: _Columns, rows: list[tuple[object, ...]]) -> None:
    table, plain, json_columns = columns
    bulk.insert_rows(connection, table, plain, json_columns, rows)


def _item_rows(delivery_id: int, ranked: Sequence[RankedItem]) -> list[tuple[object, ...]]:
    """``delivery_items`` rows for a delivery's chosen papers, in order (``_ITEM_COLUMNS``)."""
    return [
        (
            delivery_id,
            item.paper_id,
            position,
            item.section,
            float(item.score),
            float(item.relevance),
            _JSON_TEXT([[reason.kind, reason.label] for reason in item.reasons]),
            _JSON_TEXT(list(item.highlight)),
        )
        for position, item in enumerate(ranked, start=1)
    ]


_SECTIONS: dict[str, Section] = {"trending": "trending", REVISIT: REVISIT}


def ranked_item(row: Any) -> RankedItem:
    """From a ``delivery_items`` row, or any row with its columns (a Core select's)."""
    return RankedItem(
        paper_id=row.paper_id,
        score=row.score,
        relevance=row.relevance,
        reasons=tuple(Reason(kind, label) for kind, label in row.reasons),
        section=_SECTIONS.get(row.section, "picks"),
        highlight=tuple(row.highlight),
    )


# -- what rendering loads back ------------------------------------------------------------


def items_of(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[RankedItem]]:
    """Each delivery's chosen papers, in order.

    The two JSON columns come as text and every row's are decoded in one ``json.loads``: a
    call per value (SQLAlchemy's JSON type) cost four times as much, a worker's largest
    single cost of loading a claimed batch."""
    found: dict[int, list[RankedItem]] = {i: [] for i in delivery_ids}
    connection = session.connection()
    for chunk in chunks(list(delivery_ids)):
        rows = connection.execute(_ITEMS, {"ids": list(chunk)}).all()
        if not rows:
            continue
        values = iter(json.loads("[" + ",".join(f"{row[4]},{row[5]}" for row in rows) + "]"))
        for delivery_id, paper_id, score, relevance, _, _, section in rows:
            reasons, highlight = next(values), next(values)
            found[delivery_id].append(
                RankedItem(
                    paper_id=paper_id,
                    score=score,
                    relevance=relevance,
                    reasons=tuple([_reason(kind, label) for kind, label in reasons]),
                    section=_SECTIONS.get(section, "picks"),
                    highlight=tuple(highlight),
                )
            )
    return found


_ITEMS = (
    select(
        DeliveryItem.delivery_id,
        DeliveryItem.paper_id,
        DeliveryItem.score,
        DeliveryItem.relevance,
        cast(DeliveryItem.reasons, Text),
        cast(DeliveryItem.highlight, Text),
        DeliveryItem.section,
    )
    .where(DeliveryItem.delivery_id.in_(bindparam("ids", expanding=True)))
    .order_by(DeliveryItem.delivery_id, DeliveryItem.position)
)


def paper_at(session: Session, delivery_id: int, place: int) -> Paper | None:
    """The paper at ``place`` (from 1) among a delivery's chosen papers in their order, as
    :func:`items_of` lists them (and a digest's feedback links count them); None past the end."""
    if place < 1:
        return None
    return session.scalar(
        select(Paper)
        .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
        .where(DeliveryItem.delivery_id == delivery_id)
        .order_by(DeliveryItem.position)
        .offset(place - 1)
        .limit(1)
    )


@lru_cache(maxsize=4096)
def _reason(kind: ReasonKind, label: str) -> Reason:
    # Readers of a day share most reasons ("Matched agents"); a frozen dataclass is slow to make.
    return Reason(kind, label)


@dataclass(frozen=True, slots=True)
class Mailed:
    """One digest as the demo's table shows it."""

    email: str
    profile: Profile
    local_date: date
    public_id: str
    paper_count: int
    top_title: str | None


def mailed(session: Session) -> list[Mailed]:
    """Every digest with its reader and top paper, by the reader's address."""
    found = []
    rows = session.execute(
        select(Subscriber, Delivery).join(Delivery).order_by(Subscriber.email, Delivery.id)
    )
    for person, delivery in rows:
        top = session.scalar(
            select(Paper.title)
            .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
            .where(DeliveryItem.delivery_id == delivery.id)
            .order_by(DeliveryItem.position)
            .limit(1)
        )
        found.append(
            Mailed(
                person.email,
                Profile.from_json(person.profile),
                delivery.local_date,
                delivery.public_id,
                delivery.paper_count,
                top,
            )
        )
    return found
