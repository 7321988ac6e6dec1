"""How digests are received: ``digest quality`` and the ``digest_quality_*`` gauges.

Only from what is already recorded (no opens, no tracking pixels: on purpose). Days are UTC
calendar days; the window is today and the ``days - 1`` days before it. Per day:

- sent: digests the mail server accepted that day; picks: the papers in them;
- liked / disliked: the "more like this" / "fewer like this" now standing on papers of that
  day's digests (a reader's later change replaces the earlier one), as shares of the picks;
- empty rate: (skipped digests + digests sent with no paper) / (sent + skipped); a skipped
  digest counts on the day it was planned;
- unsubscribes per 1,000: readers who unsubscribed that day (and have not come back) per
  1,000 digests sent that day; not "because of" that day's digest;
- bounces per 1,000: permanent failures at sending and hard bounce reports recorded that
  day, per 1,000 digests sent that day.

Over the window the same figures come from the sums, plus the active readers sent at least
one digest in the window who gave no "more like this" in it. docs/operations.md says what
each figure does not show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from digest.store import Session, Store, reports
from digest.store.reports import QualityDay

DEFAULT_DAYS = 30


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def per_1000(part: int, whole: int) -> float | None:
    return 1000 * part / whole if whole else None


def empty(day: QualityDay) -> int:
    return day.skipped + day.empty_sent


def figures(day: QualityDay) -> dict[str, Any]:
    """One row as JSON: counts, and the rates (null when there is nothing to divide by)."""
    return {
        "day": day.day.isoformat() if day.day else None,
        "sent": day.sent,
        "picks": day.picks,
        "liked": day.liked,
        "disliked": day.disliked,
        "liked_ratio": share(day.liked, day.picks),
        "disliked_ratio": share(day.disliked, day.picks),
        "empty": empty(day),
        "skipped": day.skipped,
        "empty_ratio": share(empty(day), day.sent + day.skipped),
        "unsubscribes": day.unsubscribes,
        "unsubscribes_per_1000": per_1000(day.unsubscribes, day.sent),
        "bounces": day.bounces,
        "bounces_per_1000": per_1000(day.bounces, day.sent),
    }


@dataclass(frozen=True, slots=True)
class QualityReport:
    now: datetime
    days: int
    rows: list[QualityDay]  # one per day, oldest first, days with nothing included
    total: QualityDay
    unpraised: int  # active readers sent digests with no "more like this" in the window
    unpraised_addresses: list[str] | None = None  # only when asked for

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "now": self.now.isoformat(),
            "days": self.days,
            "since": self.rows[0].day.isoformat() if self.rows[0].day else None,
            "total": figures(self.total),
            "readers_without_positive_feedback": self.unpraised,
            "per_day": [figures(row) for row in self.rows],
        }
        if self.unpraised_addresses is not None:
            found["readers_without_positive_feedback_list"] = self.unpraised_addresses
        return found


def window_start(now: datetime, days: int) -> datetime:
    """Midnight UTC at the start of the window's first day."""
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    return datetime.combine(first, time(), tzinfo=UTC)


def _rows(session: Session, now: datetime, days: int) -> tuple[list[QualityDay], QualityDay]:
    since = window_start(now, days)
    found = reports.quality_days(session, since)
    first = since.date()
    rows = [found.get(d, QualityDay(d)) for d in _dates(first, days)]
    total = QualityDay(None)
    for row in rows:
        total.add(row)
    return rows, total


def _dates(first: date, days: int) -> list[date]:
    return [first + timedelta(days=n) for n in range(days)]


def report(
    store: Store, now: datetime, days: int = DEFAULT_DAYS, *, listed: bool = False
) -> QualityReport:
    if days < 1:
        raise ValueError("days must be at least 1")
    since = window_start(now, days)
    with store.transaction() as session:
        rows, total = _rows(session, now, days)
        unpraised = reports.unpraised_count(session, since)
        addresses = reports.unpraised_addresses(session, since) if listed else None
    return QualityReport(now, days, rows, total, unpraised, addresses)


def window(session: Session, now: datetime, days: int = DEFAULT_DAYS) -> tuple[QualityDay, int]:
    """The window's sums and the readers without praise, for /metrics (a few grouped
    queries, inside the scrape's transaction)."""
    _, total = _rows(session, now, days)
    return total, reports.unpraised_count(session, window_start(now, days))
