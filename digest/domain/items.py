"""Plain data passed between ranking and rendering, and the names a digest goes by; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

ReasonKind = Literal[
    "term",
    "phrase",
    "author",
    "category",
    "trending",
    "semantic",
    "learned",
    "related",
    "second_look",
]
# "revisit": "Worth another look", a paper sent before that has news (domain.second_look).
Section = Literal["picks", "trending", "revisit"]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a paper was chosen. ``label`` is shown to the reader as is:

    term/phrase: the subscriber's term as they wrote it ("graph neural network");
    author: the paper's author name as the paper spells it; category: "cs.LG";
    trending: the upvote count as text ("42"); semantic: the profile text it was close to;
    learned: a word learned from the reader's feedback, as the papers spell it ("pruning");
    related: a word the reader did not use but the best matches for their words share
    (expansion: "pruning" for a reader of "model compression");
    second_look: what is new since the paper was sent ("Code released", "Upvotes 8 → 31",
    "New version v2").
    """

    kind: ReasonKind
    label: str


@dataclass(frozen=True, slots=True)
class PaperCard:
    """What ranking and rendering need of a stored paper; built once per day per paper."""

    paper_id: int  # the row id in ``papers``
    canonical_id: str
    arxiv_id: str | None
    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # primary first
    upvotes: int | None = None
    ai_summary: str | None = None
    github_repo: str | None = None
    sources: tuple[str, ...] = ()
    first_seen_at: datetime | None = None
    announced_on: date | None = None


@dataclass(slots=True)
class RankedItem:
    """One chosen paper for one subscriber. Not frozen: a batch makes a million of them, and
    a frozen dataclass is four times slower to build; nothing changes one once made."""

    paper_id: int
    score: float
    relevance: float  # the keyword part alone, before the trending/freshness prior
    reasons: tuple[Reason, ...] = ()
    section: Section = "picks"
    highlight: tuple[str, ...] = field(default=())  # terms to highlight in title/abstract


def message_id(delivery_public_id: str, from_address: str) -> str:
    """A digest's Message-ID, derived from its delivery, so a resend after a crash is the
    same message."""
    domain = from_address.rpartition("@")[2] or "localhost"
    return f"<digest.{delivery_public_id}@{domain}>"


def outbox_name(local_date: date, email: str, delivery_public_id: str) -> str:
    """How a digest is named in the outbox folder and in logs."""
    return f"{local_date.isoformat()}_{email}_{delivery_public_id[:8]}"
