"""Feedback events in the database, and the learned state kept in step with them.

Callers hand in a session from ``Store.transaction()``, so a
choice and the profile it changes commit together. Every change ends in ``relearn``: the
learned state is recomputed from all of the reader's events (``digest.domain.learning.learn``) and
stored in the profile's ``extra["learned"]``, so it is always a function of the events.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.domain.items import PaperCard
from digest.domain.learning import Event, FeedbackSettings, Vocabulary, learn
from digest.domain.profiles import Learned, author_id, term_id
from digest.models import Feedback, Paper, SentPaper, Subscriber
from digest.store import subscribers
from digest.store.papers import card_of

# The background corpus for tf-idf: the newest stored papers. Enough to tell a field's
# common words from its distinctive ones; bounded so a click stays quick on a large store.
CORPUS_PAPERS = 3000
REMOVABLE = ("term", "author", "model")


def record(
    session: Session,
    person: Subscriber,
    paper: Paper,
    value: int,
    now: datetime,
    delivery_id: int | None = None,
) -> None:
    """Store a choice; the latest one per (reader, paper) wins. Does not relearn."""
    if value not in (1, -1):
        raise ValueError("feedback is +1 or -1")
    row = session.scalar(
        select(Feedback).where(Feedback.subscriber_id == person.id, Feedback.paper_id == paper.id)
    )
    if delivery_id is None:
        delivery_id = sent_in(session, person, paper)
    if row is None:
        session.add(
            Feedback(
                subscriber_id=person.id,
                paper_id=paper.id,
                delivery_id=delivery_id,
                value=value,
                created_at=now,
            )
        )
    else:
        row.value, row.created_at = value, now
        row.delivery_id = delivery_id if delivery_id is not None else row.delivery_id
    session.flush()


def undo(session: Session, person: Subscriber, paper: Paper) -> bool:
    """Forget the reader's choice on ``paper``; False when there was none."""
    result = session.execute(
        delete(Feedback).where(Feedback.subscriber_id == person.id, Feedback.paper_id == paper.id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def choice(session: Session, person: Subscriber, paper: Paper) -> int | None:
    """The reader's current choice on ``paper`` (+1, -1), or None."""
    return session.scalar(
        select(Feedback.value).where(
            Feedback.subscriber_id == person.id, Feedback.paper_id == paper.id
        )
    )


def sent_in(session: Session, person: Subscriber, paper: Paper) -> int | None:
    """The delivery that mailed ``paper`` to the reader, if one did."""
    return session.scalar(
        select(SentPaper.delivery_id).where(
            SentPaper.subscriber_id == person.id, SentPaper.paper_id == paper.id
        )
    )


def events(session: Session, person: Subscriber) -> list[Event]:
    rows = session.execute(
        select(Feedback, Paper)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(Feedback.subscriber_id == person.id)
        .order_by(Feedback.created_at, Feedback.paper_id)
    )
    return [Event(card_of(paper), row.value, row.created_at) for row, paper in rows]


# -- the corpus, prepared once per store state ----------------------------------------------

_cache_lock = threading.Lock()
_cache: tuple[tuple[object, ...], list[PaperCard], Vocabulary] | None = None


def corpus(session: Session) -> tuple[list[PaperCard], Vocabulary]:
    """The newest ``CORPUS_PAPERS`` stored papers and their vocabulary, kept until the store
    gains or changes papers (tokenising thousands of abstracts per click would be slow)."""
    global _cache
    stamp = tuple(
        session.execute(
            select(func.count(Paper.id), func.max(Paper.id), func.max(Paper.last_seen_at))
        ).one()
    )
    key = (str(session.get_bind().url), *stamp)
    with _cache_lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1], _cache[2]
    papers = session.scalars(
        select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc()).limit(CORPUS_PAPERS)
    )
    cards = [card_of(p) for p in papers]
    vocabulary = Vocabulary(cards)
    with _cache_lock:
        _cache = (key, cards, vocabulary)
    return cards, vocabulary


# -- learning -------------------------------------------------------------------------------


def relearn(
    session: Session,
    person: Subscriber,
    settings: FeedbackSettings,
    now: datetime,
    previous: Learned | None = None,
) -> Learned:
    """Recompute the reader's learned state from all their events and store it."""
    profile = subscribers.profile_of(person)
    previous = previous if previous is not None else profile.learned
    found = events(session, person)
    cards, vocabulary = corpus(session)
    if not found and not (previous.removed_terms or previous.removed_authors or previous.model_off):
        subscribers.set_profile(person, profile.with_extra(learned=None), now)
        return Learned()
    extra_docs = [
        e.paper for e in found if e.paper.canonical_id not in {c.canonical_id for c in cards}
    ]
    if extra_docs:  # a seeded paper older than the corpus window: its words count too
        vocabulary = Vocabulary([*cards, *extra_docs])
    learned = learn(found, cards, settings, now, previous, vocabulary=vocabulary)
    subscribers.set_profile(person, profile.with_extra(learned=learned.to_json()), now)
    return learned


def like_many(
    session: Session,
    person: Subscriber,
    papers: Sequence[Paper],
    settings: FeedbackSettings,
    now: datetime,
    value: int = 1,
) -> Learned:
    """Record the same choice on several papers (a seed list), then relearn once."""
    for paper in papers:
        record(session, person, paper, value, now)
    return relearn(session, person, settings, now)


def remove(
    session: Session,
    person: Subscriber,
    kind: str,
    value: str,
    settings: FeedbackSettings,
    now: datetime,
) -> Learned:
    """Take a learned item away for good: a term or an author (remembered, never learned
    again), or the per-reader model ("model": switched off; "model-on": back on)."""
    previous = subscribers.profile_of(person).learned
    if kind == "term" and (key := term_id(value)):
        if key not in previous.removed_terms:
            previous = replace(previous, removed_terms=(*previous.removed_terms, key))
    elif kind == "author" and (key := author_id(value)):
        if key not in previous.removed_authors:
            previous = replace(previous, removed_authors=(*previous.removed_authors, key))
    elif kind in ("model", "model-on"):
        previous = replace(previous, model_off=kind == "model")
    else:
        raise ValueError(f"cannot remove {kind!r}")
    return relearn(session, person, settings, now, previous)


def forget_all(session: Session, person: Subscriber, now: datetime) -> None:
    """Every choice and everything learned from them, removals included, gone."""
    session.execute(delete(Feedback).where(Feedback.subscriber_id == person.id))
    profile = subscribers.profile_of(person)
    subscribers.set_profile(person, profile.with_extra(learned=None), now)
