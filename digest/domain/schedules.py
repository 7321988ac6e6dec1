"""When a subscriber's mail goes out: time zone, hour, daily or weekly, how many papers.

A ``Schedule`` is always checked; ``when_line`` says it in words for pages and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.config import SubscriberSettings, check_timezone
from digest.errors import ValidationError

FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_PAPERS = 50


def parse_weekday(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
    else:
        key = value.strip().lower()[:3]
        if key in WEEKDAYS:
            return WEEKDAYS.index(key)
        if key.isdigit() and 0 <= int(key) <= 6:
            return int(key)
    raise ValidationError(f"weekday {value!r}: expected mon, tue, wed, thu, fri, sat or sun")


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscriber's mail goes out, checked."""

    timezone: str
    send_hour: int
    frequency: str = "daily"
    weekday: int | None = None
    max_papers: int = 10
    send_when_empty: bool = False

    @classmethod
    def checked(
        cls,
        timezone: str,
        send_hour: int,
        frequency: str = "daily",
        weekday: str | int | None = None,
        max_papers: int = 10,
        send_when_empty: bool = False,
    ) -> Schedule:
        try:
            check_timezone(timezone)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if not 0 <= send_hour <= 23:
            raise ValidationError(f"send hour {send_hour}: expected 0–23 (local time)")
        if frequency not in FREQUENCIES:
            raise ValidationError(f"frequency {frequency!r}: expected daily or weekly")
        day = parse_weekday(weekday)
        if frequency == "weekly" and day is None:
            raise ValidationError("a weekly digest needs a weekday (mon … sun)")
        if not 1 <= max_papers <= MAX_PAPERS:
            raise ValidationError(f"papers per mail {max_papers}: expected 1–{MAX_PAPERS}")
        return cls(
            timezone,
            send_hour,
            frequency,
            day if frequency == "weekly" else None,
            max_papers,
            send_when_empty,
        )

    @classmethod
    def default(cls, settings: SubscriberSettings) -> Schedule:
        return cls(
            settings.default_timezone, settings.default_hour, max_papers=settings.default_max_papers
        )


WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def when_line(frequency: str, weekday: int | None, send_hour: int, timezone: str) -> str:
    """ "every day at 07:00 (Europe/Berlin)", "every Monday at 07:00 (UTC)"."""
    day = (
        f"every {WEEKDAY_NAMES[weekday]}"
        if frequency == "weekly" and weekday is not None
        else "every day"
    )
    return f"{day} at {send_hour:02d}:00 ({timezone})"


# A returning reader's window never reaches back further than this.
MAX_WINDOW = timedelta(days=8)


def window_start(last_planned: datetime | None, now: datetime, first_window: timedelta) -> datetime:
    """Where a reader's next digest starts looking for papers: from their last digest (at
    most ``MAX_WINDOW`` back), or ``first_window`` back for a first digest."""
    if last_planned is None:
        return now - first_window
    return max(last_planned, now - MAX_WINDOW)
