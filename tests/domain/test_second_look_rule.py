"""The "worth another look" rule: which news since a paper was sent brings it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.domain.items import Reason
from digest.domain.second_look import Candidate, PaperState, choose, reasons

FLOOR = 20
SENT = PaperState(upvotes=8, has_code=False, version=1)


def labels(then: PaperState, now: PaperState) -> list[str]:
    return [r.label for r in reasons(then, now, FLOOR)]


def test_nothing_new_is_no_reason() -> None:
    assert reasons(SENT, SENT, FLOOR) == ()


def test_code_released() -> None:
    assert reasons(SENT, PaperState(8, True, 1), FLOOR) == (Reason("second_look", "Code released"),)
    # Code that was there when it was sent is no news.
    assert labels(PaperState(8, True, 1), PaperState(8, True, 1)) == []


def test_new_version() -> None:
    assert labels(SENT, PaperState(8, False, 2)) == ["New version v2"]
    assert labels(PaperState(8, False, None), PaperState(8, False, 3)) == []  # unknown then


@pytest.mark.parametrize(
    ("then", "now", "shown"),
    [
        (8, 31, ["Upvotes 8 → 31"]),  # tripled, past the floor
        (8, 24, ["Upvotes 8 → 24"]),  # exactly tripled
        (0, 20, ["Upvotes 0 → 20"]),  # exactly the floor
        (5, 15, []),  # tripled, under the floor
        (12, 30, []),  # past the floor, only 2.5 times
        (10, 20, []),  # doubled
        (None, 50, []),  # not on Hugging Face when sent: growth unknown
        (8, None, []),
    ],
)
def test_upvotes_tripled_past_the_floor(
    then: int | None, now: int | None, shown: list[str]
) -> None:
    assert labels(PaperState(then, False, 1), PaperState(now, False, 1)) == shown


def test_several_news_at_once_strongest_first() -> None:
    assert labels(SENT, PaperState(40, True, 2)) == [
        "Code released",
        "New version v2",
        "Upvotes 8 → 40",
    ]


def test_choose_orders_limits_and_excludes() -> None:
    day = datetime(2026, 9, 24, tzinfo=UTC)

    def sent(paper_id: int, days_ago: int, now: PaperState) -> Candidate:
        return Candidate(paper_id, day - timedelta(days=days_ago), SENT, now)

    found = [
        sent(1, 1, PaperState(30, False, 1)),  # upvotes
        sent(2, 5, PaperState(8, False, 2)),  # version
        sent(3, 9, PaperState(8, True, 1)),  # code, sent long ago
        sent(4, 2, PaperState(8, True, 1)),  # code, sent lately
        sent(5, 1, SENT),  # nothing new
    ]
    assert [paper_id for paper_id, _ in choose(found, FLOOR)] == [4, 3, 2]
    assert [paper_id for paper_id, _ in choose(found, FLOOR, frozenset({4}), limit=5)] == [3, 2, 1]
    assert choose(found, FLOOR, limit=0) == []
