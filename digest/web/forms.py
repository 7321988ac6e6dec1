"""Form fields in, checked values out, with one clear message per bad field.

Each reader returns what was typed (to show the form again as it was) and the errors by field
name, next to the checked profile and schedule when everything is fine. The parsing rules are
those of :mod:`digest.profiles` and :mod:`digest.subscribers`, the same as on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from digest.config import Settings, check_timezone
from digest.domain import addresses
from digest.domain.categories import ARCHIVES, CATEGORIES
from digest.domain.profiles import (
    MAX_DESCRIPTION_CHARS,
    Profile,
    merge,
    parse_authors,
    parse_categories,
    parse_terms,
)
from digest.domain.schedules import FREQUENCIES, MAX_PAPERS, WEEKDAY_NAMES, WEEKDAYS, Schedule
from digest.errors import ValidationError
from digest.models import Subscriber

MAX_FIELD_CHARS = 4000
MAX_PAUSE_DAYS = 90

# The category picker: arXiv's archives grouped as arXiv's own listing groups them.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Computer Science", ("cs",)),
    ("Statistics", ("stat",)),
    ("Mathematics", ("math",)),
    ("Electrical Engineering and Systems Science", ("eess",)),
    (
        "Physics",
        (
            "astro-ph",
            "cond-mat",
            "gr-qc",
            "hep-ex",
            "hep-lat",
            "hep-ph",
            "hep-th",
            "math-ph",
            "nlin",
            "nucl-ex",
            "nucl-th",
            "physics",
            "quant-ph",
        ),
    ),
    ("Quantitative Biology", ("q-bio",)),
    ("Quantitative Finance", ("q-fin",)),
    ("Economics", ("econ",)),
)
ARCHIVE_NAMES = {
    "cs": "Computer Science",
    "stat": "Statistics",
    "math": "Mathematics",
    "eess": "Electrical Engineering and Systems Science",
    "astro-ph": "Astrophysics",
    "cond-mat": "Condensed Matter",
    "nlin": "Nonlinear Sciences",
    "physics": "Physics",
    "q-bio": "Quantitative Biology",
    "q-fin": "Quantitative Finance",
    "econ": "Economics",
}


@dataclass(frozen=True, slots=True)
class Choice:
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    choices: tuple[Choice, ...]


@lru_cache(maxsize=1)
def category_groups() -> tuple[Group, ...]:
    groups = []
    for name, archives in GROUPS:
        choices: list[Choice] = []
        for archive in archives:
            subdivided = sorted(code for code in CATEGORIES if code.split(".")[0] == archive)
            subdivided = [code for code in subdivided if "." in code]
            if subdivided and archive in ARCHIVES:
                whole = ARCHIVE_NAMES.get(archive, archive)
                choices.append(Choice(archive, f"all of {whole} ({archive}.*)"))
            if archive in CATEGORIES:
                choices.append(Choice(archive, CATEGORIES[archive]))
            choices.extend(Choice(code, CATEGORIES[code]) for code in subdivided)
        groups.append(Group(name, tuple(choices)))
    return tuple(groups)


@lru_cache(maxsize=1)
def timezones() -> tuple[str, ...]:
    zones = {z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV"))}
    return ("UTC", *sorted(zones))


def hours() -> list[tuple[int, str]]:
    return [(h, f"{h:02d}:00") for h in range(24)]


def weekdays() -> list[tuple[str, str]]:
    return list(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True))


def _message(exc: ValidationError) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", ")")) else ".")


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _list(form: Any, name: str) -> list[str]:
    getlist = getattr(form, "getlist", None)
    values = getlist(name) if getlist else form.get(name, [])
    if isinstance(values, str):
        values = [values]
    return [v for v in values if isinstance(v, str)]


def _checked(form: Mapping[str, Any], name: str) -> bool:
    return _text(form, name) in {"1", "on", "true", "yes"}


# -- topics ------------------------------------------------------------------------------


@dataclass
class Checked:
    """What was typed (``values``), the errors by field, and the checked results."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    changes: dict[str, Any] | None = None  # what ``profiles.merge`` takes, when all is fine
    profile: Profile | None = None  # those changes on an empty profile (for the preview)
    schedule: Schedule | None = None
    email: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def _too_long(values: dict[str, Any], errors: dict[str, str], *names: str) -> None:
    for name in names:
        if len(values[name]) > MAX_FIELD_CHARS:
            errors[name] = f"This is too long: at most {MAX_FIELD_CHARS:,} characters."


def read_topics(form: Any) -> Checked:
    values: dict[str, Any] = {
        "include": _text(form, "include"),
        "exclude": _text(form, "exclude"),
        "authors": _text(form, "authors"),
        "categories": _list(form, "categories")[:200],
        "also_trending": _checked(form, "also_trending"),
        "second_look": _checked(form, "second_look"),
        "description": _text(form, "description"),
    }
    checked = Checked(values)
    errors = checked.errors
    _too_long(values, errors, "include", "exclude", "authors")
    description = " ".join(values["description"].split())
    if len(description) > MAX_DESCRIPTION_CHARS:
        errors["description"] = (
            f"Please keep this under {MAX_DESCRIPTION_CHARS:,} characters: a few sentences."
        )
    # Each field checked alone, so each gets its own message; the profile itself is made
    # by the one rule every edit goes through (profiles.merge).
    checks = {
        "include": lambda: parse_terms([values["include"]], what="include"),
        "exclude": lambda: parse_terms([values["exclude"]], what="exclude", weights=False),
        "categories": lambda: parse_categories(values["categories"]),
        "authors": lambda: parse_authors([values["authors"]]),
    }
    for name, check in checks.items():
        if name in errors:
            continue
        try:
            check()
        except ValidationError as exc:
            errors[name] = _message(exc)
    if not errors:
        checked.changes = {
            "include": [values["include"]],
            "exclude": [values["exclude"]],
            "categories": values["categories"],
            "authors": [values["authors"]],
            "also_trending": values["also_trending"],
            "second_look": values["second_look"],
            "description": description,
        }
        checked.profile = merge(Profile(), **checked.changes)
    return checked


# -- schedule ----------------------------------------------------------------------------


def _int(raw: str, low: int, high: int) -> int | None:
    try:
        number = int(raw.strip())
    except ValueError:
        return None
    return number if low <= number <= high else None


def read_schedule(form: Any, settings: Settings, checked: Checked, *, full: bool) -> None:
    """Adds the schedule fields to ``checked``; ``full`` also reads papers per mail and
    "send when empty" (the preferences page; sign-up uses the defaults)."""
    defaults = settings.subscribers
    values, errors = checked.values, checked.errors
    values.update(
        timezone=_text(form, "timezone").strip()[:100],
        send_hour=_text(form, "send_hour").strip()[:10],
        frequency=_text(form, "frequency").strip()[:10] or "daily",
        weekday=_text(form, "weekday").strip()[:10],
        max_papers=(_text(form, "max_papers").strip()[:10] if full else "")
        or str(defaults.default_max_papers),
        send_when_empty=_checked(form, "send_when_empty") if full else False,
    )
    zone = values["timezone"] or defaults.default_timezone
    try:
        check_timezone(zone)
    except ValueError:
        errors["timezone"] = (
            f"Unknown time zone {zone!r}: pick one from the list, e.g. Europe/Berlin."
        )
    hour = _int(values["send_hour"] or str(defaults.default_hour), 0, 23)
    if hour is None:
        errors["send_hour"] = "Choose an hour from 00:00 to 23:00."
    if values["frequency"] not in FREQUENCIES:
        errors["frequency"] = "Choose daily or weekly."
    weekday: str | None = None
    if values["frequency"] == "weekly":
        weekday = values["weekday"]
        if weekday not in WEEKDAYS:
            errors["weekday"] = "A weekly digest needs a day of the week."
    max_papers = _int(values["max_papers"], 1, MAX_PAPERS)
    if max_papers is None:
        errors["max_papers"] = f"Choose a number from 1 to {MAX_PAPERS}."
    if errors:
        return
    try:
        checked.schedule = Schedule.checked(
            zone,
            hour or 0,
            values["frequency"],
            weekday,
            max_papers or defaults.default_max_papers,
            values["send_when_empty"],
        )
    except ValidationError as exc:  # every field was checked above; kept as a safety net
        errors["frequency"] = _message(exc)


def read_email(form: Any, checked: Checked, name: str = "email") -> None:
    raw = _text(form, name).strip()[:400]
    checked.values[name] = raw
    try:
        checked.email, _ = addresses.normalise(raw)
    except ValidationError as exc:
        checked.errors[name] = _message(exc)


def read_subscribe(form: Any, settings: Settings) -> Checked:
    checked = read_topics(form)
    read_email(form, checked)
    read_schedule(form, settings, checked, full=False)
    return checked


def read_preferences(form: Any, settings: Settings) -> Checked:
    checked = read_topics(form)
    read_schedule(form, settings, checked, full=True)
    return checked


def read_pause(form: Any) -> tuple[int | None, str | None]:
    """Days to pause, or (None, message)."""
    days = _int(_text(form, "days"), 1, MAX_PAUSE_DAYS)
    if days is None:
        return None, f"Choose a number of days from 1 to {MAX_PAUSE_DAYS}."
    return days, None


# -- the values a form starts with -------------------------------------------------------


def blank_values(settings: Settings) -> dict[str, Any]:
    d = settings.subscribers
    return {
        "email": "",
        "include": "",
        "exclude": "",
        "authors": "",
        "categories": [],
        "also_trending": False,
        "second_look": True,
        "description": "",
        "timezone": d.default_timezone,
        "send_hour": str(d.default_hour),
        "frequency": "daily",
        "weekday": "mon",
        "max_papers": str(d.default_max_papers),
        "send_when_empty": False,
    }


def subscriber_values(person: Subscriber) -> dict[str, Any]:
    profile = Profile.from_json(person.profile)
    return {
        "email": person.email,
        "include": "\n".join(str(term) for term in profile.include),
        "exclude": "\n".join(profile.exclude),
        "authors": "\n".join(profile.authors),
        "categories": list(profile.categories),
        "also_trending": profile.also_trending,
        "second_look": profile.second_look,
        "description": profile.description,
        "timezone": person.timezone,
        "send_hour": str(person.send_hour),
        "frequency": person.frequency,
        "weekday": WEEKDAYS[person.weekday] if person.weekday is not None else "mon",
        "max_papers": str(person.max_papers),
        "send_when_empty": person.send_when_empty,
    }
