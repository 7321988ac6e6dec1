"""The sent log's side of "worth another look" (``digest.domain.second_look``): the state
of papers when they are chosen, the papers a reader was sent with that state and the state
now, and which digest brought each back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from digest.domain.second_look import UPVOTE_FACTOR, Candidate, PaperState
from digest.domain.states import DeliveryState
from digest.domain.text import valid_github
from digest.models import Delivery, Feedback, Paper, SentPaper
from digest.store import chunks


def _has_code(repo: str | None) -> bool:
    # The same test rendering makes before it shows a "Code" link.
    return valid_github(repo) is not None


# The sent log's "then" columns, in the order :func:`states_then` gives their values.
STATE_COLUMNS = ("upvotes_then", "code_then", "version_then")


def states_then(
    session: Session, paper_ids: Iterable[int]
) -> dict[int, tuple[int | None, bool, int | None]]:
    """The sent log's "then" columns for each paper, as they are now (when it is chosen)."""
    found: dict[int, tuple[int | None, bool, int | None]] = {}
    for chunk in chunks(list(set(paper_ids))):
        rows = session.execute(
            select(Paper.id, Paper.hf_upvotes, Paper.github_repo, Paper.version).where(
                Paper.id.in_(chunk)
            )
        )
        for row in rows:
            found[row.id] = (row.hf_upvotes, _has_code(row.github_repo), row.version)
    return found


def candidates(
    session: Session, subscriber_ids: Sequence[int], sent_since: datetime, min_upvotes: int
) -> dict[int, list[Candidate]]:
    """Per subscriber, the papers sent to them from ``sent_since`` on that may come back: the
    state then is known, none came back before, the reader did not say "fewer like this"
    about it, and something changed since (``second_look.reasons`` decides what counts)."""
    found: dict[int, list[Candidate]] = defaultdict(list)
    # A coarse test in SQL, so a batch loads the few changed papers, not every paper its
    # readers got in two months.
    changed = or_(
        and_(SentPaper.code_then.is_(False), Paper.github_repo.is_not(None)),
        Paper.version > SentPaper.version_then,
        and_(
            Paper.hf_upvotes >= min_upvotes,
            Paper.hf_upvotes >= UPVOTE_FACTOR * SentPaper.upvotes_then,
        ),
    )
    for chunk in chunks(list(subscriber_ids)):
        disliked = select(Feedback.paper_id).where(
            Feedback.subscriber_id == SentPaper.subscriber_id, Feedback.value < 0
        )
        rows = session.execute(
            select(
                SentPaper.subscriber_id,
                SentPaper.paper_id,
                SentPaper.upvotes_then,
                SentPaper.code_then,
                SentPaper.version_then,
                Delivery.sent_at,
                Paper.hf_upvotes,
                Paper.github_repo,
                Paper.version,
            )
            .join(Delivery, Delivery.id == SentPaper.delivery_id)
            .join(Paper, Paper.id == SentPaper.paper_id)
            .where(
                SentPaper.subscriber_id.in_(chunk),
                SentPaper.code_then.is_not(None),
                SentPaper.second_look_delivery_id.is_(None),
                Delivery.status == DeliveryState.SENT,
                Delivery.sent_at >= sent_since,
                SentPaper.paper_id.not_in(disliked),
                changed,
            )
        )
        for row in rows:
            found[row.subscriber_id].append(
                Candidate(
                    row.paper_id,
                    row.sent_at,
                    PaperState(row.upvotes_then, bool(row.code_then), row.version_then),
                    PaperState(row.hf_upvotes, _has_code(row.github_repo), row.version),
                )
            )
    return found


# Marks each paper brought back; only one not brought back before, so a race or a bug
# upstream cannot bring one back twice.
_BROUGHT_BACK = (
    update(SentPaper)
    .where(
        SentPaper.subscriber_id == bindparam("b_subscriber"),
        SentPaper.paper_id == bindparam("b_paper"),
        SentPaper.second_look_delivery_id.is_(None),
    )
    .values(second_look_delivery_id=bindparam("b_delivery"))
)


def mark_brought_back(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """``rows``: ``b_subscriber``, ``b_paper``, ``b_delivery`` each."""
    if rows:
        session.connection().execute(_BROUGHT_BACK, rows)
