"""The "worth another look" section: when a paper a reader was sent may come back, once.

A paper goes to a reader at most once, except in a digest's small "Worth another look"
section, once, when something new happened to it since it was sent: its code was released,
its upvotes at least tripled and reached ``ranking.second_look_min_upvotes``, or a new arXiv
version appeared. What it was like when sent is kept in the sent log (``sent_papers``); a
paper logged before that was kept has no such state and never comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from digest.domain.items import Reason

SECTION: Literal["revisit"] = "revisit"  # delivery_items.section: ten characters at most
LIMIT = 3  # papers in the section, at most
WINDOW_DAYS = 60  # only papers sent in this many days: older ones are gone from mind
UPVOTE_FACTOR = 3  # "at least tripled"


@dataclass(frozen=True, slots=True)
class PaperState:
    """What the reader could see of a paper: then (when it was sent) or now."""

    upvotes: int | None  # None: not on Hugging Face (or not reported)
    has_code: bool
    version: int | None  # arXiv version; None: unknown


def reasons(then: PaperState, now: PaperState, min_upvotes: int) -> tuple[Reason, ...]:
    """What happened since the paper was sent that makes it worth another look (empty:
    nothing), the strongest news first."""
    return tuple(reason for _strength, reason in _news(then, now, min_upvotes))


def _news(then: PaperState, now: PaperState, min_upvotes: int) -> list[tuple[int, Reason]]:
    found: list[tuple[int, Reason]] = []
    if now.has_code and not then.has_code:
        found.append((0, Reason("second_look", "Code released")))
    # An unknown version then (no arXiv id yet) says nothing about a new one.
    if then.version is not None and now.version is not None and now.version > then.version:
        found.append((1, Reason("second_look", f"New version v{now.version}")))
    # Unknown upvotes then (not on Hugging Face yet) say nothing about growth either.
    if (
        then.upvotes is not None
        and now.upvotes is not None
        and now.upvotes >= min_upvotes
        and now.upvotes >= UPVOTE_FACTOR * then.upvotes
    ):
        found.append((2, Reason("second_look", f"Upvotes {then.upvotes} → {now.upvotes}")))
    return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A paper a reader was sent, with its state then and now."""

    paper_id: int
    sent_at: datetime
    then: PaperState
    now: PaperState


def choose(
    candidates: Iterable[Candidate],
    min_upvotes: int,
    exclude: Sequence[int] | frozenset[int] = frozenset(),
    limit: int = LIMIT,
) -> list[tuple[int, tuple[Reason, ...]]]:
    """The papers for the section and why: released code first, then new versions, then
    upvotes; within each the most recently sent first (then by id, so every path that
    chooses for the same reader and moment chooses the same)."""
    scored = []
    for one in candidates:
        if one.paper_id in exclude:
            continue
        news = _news(one.then, one.now, min_upvotes)
        if news:
            why = tuple(reason for _strength, reason in news)
            key = (news[0][0], -one.sent_at.timestamp(), one.paper_id)
            scored.append((key, one.paper_id, why))
    scored.sort(key=lambda entry: entry[0])
    return [(paper_id, why) for _key, paper_id, why in scored[:limit]]
