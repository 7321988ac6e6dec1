"""Cron lines as APScheduler trigger fields, with weekdays numbered as cron numbers them."""

from __future__ import annotations

import re

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_fields(line: str) -> dict[str, str]:
    """A crontab line as APScheduler fields, weekdays numbered as cron does (0 or 7 = Sunday).

    APScheduler 3 numbers weekdays from Monday = 0, so "1-5" would silently mean Tuesday to
    Saturday; numbers are turned into day names here.
    """
    parts = line.split()
    if len(parts) != 5:
        raise ValueError(f"wrong number of fields; got {len(parts)}, expected 5")
    minute, hour, day, month, weekday = parts

    def names(match: re.Match[str]) -> str:
        start, end = int(match["a"]), match["b"]
        if not 0 <= start <= 7 or (end is not None and not 0 <= int(end) <= 7):
            raise ValueError(f"weekday {match.group()} is outside 0–7")
        if end is None:
            return _CRON_DAYS[start]
        return ",".join(_CRON_DAYS[n] for n in range(start, int(end) + 1))

    weekday = re.sub(r"(?<![*/\d])(?P<a>\d+)(?:-(?P<b>\d+))?", names, weekday)
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": weekday}
