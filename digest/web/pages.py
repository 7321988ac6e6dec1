"""Pages: Jinja2 templates from ``templates/web/``, autoescaped, and the static files' URLs.

Every value that reaches a page is escaped by Jinja's autoescape (paper titles, authors and
abstracts come from feeds and are hostile until shown otherwise); the only markup passed in
is built here or in :mod:`digest.web.preview` from escaped pieces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from digest.domain.profiles import MAX_PHRASE_WORDS, MAX_TERM_CHARS
from digest.render.text import one_line
from digest.web import forms

STATIC = "static"

# What a failed submit's alert calls each field, and the element its link goes to (the id of
# the field, or of the group for checkboxes and radio buttons).
FIELD_LABELS = {
    "email": "Email address",
    "include": "Topics",
    "exclude": "Leave out papers about",
    "categories": "arXiv categories",
    "authors": "Authors to follow",
    "description": "Describe what you follow",
    "timezone": "Time zone",
    "send_hour": "Send at",
    "frequency": "How often",
    "weekday": "Day of the week",
    "max_papers": "Papers per mail",
    "seed": "Start from papers you like",
    "days": "Days to pause",
    "new_email": "New address",
    "confirm_delete": "Delete everything",
}
FIELD_ANCHORS = {"seed": "seed_file"}


class Pages:
    def __init__(
        self,
        templates_dir: Path,
        *,
        brand: str,
        csrf_token: Callable[[Request], str],
        confirm_days: float,
    ) -> None:
        self.folder = templates_dir / "web"
        if not (self.folder / "base.html").is_file():
            raise FileNotFoundError(
                f"web templates not found in {self.folder} (set paths.templates_dir, or run "
                "from a checkout with templates/ beside digest/)"
            )
        self.static_dir = self.folder / STATIC
        self._csrf_token = csrf_token
        self._versions: dict[str, str] = {}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.folder)),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            extensions=["jinja2.ext.do"],
        )
        self.env.globals.update(
            brand=one_line(brand, 80) or "Trending Papers",
            static=self.static_url,
            category_groups=forms.category_groups(),
            timezones=forms.timezones(),
            hours=forms.hours(),
            weekdays=forms.weekdays(),
            max_pause_days=forms.MAX_PAUSE_DAYS,
            field_labels=FIELD_LABELS,
            field_anchors=FIELD_ANCHORS,
            max_term_chars=MAX_TERM_CHARS,  # the topic hints state the parser's own limits
            max_phrase_words=MAX_PHRASE_WORDS,
            confirm_days=f"{confirm_days:g} day" + ("" if confirm_days == 1 else "s"),
        )
        self.env.filters["when"] = when

    def static_url(self, name: str) -> str:
        """``/static/NAME?v=HASH``: the hash changes when the file does, so caches refresh."""
        version = self._versions.get(name)
        if version is None:
            path = self.static_dir / name
            data = path.read_bytes() if path.is_file() else b""
            version = self._versions[name] = hashlib.sha256(data).hexdigest()[:10]
        return f"/static/{name}?v={version}"

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(name).render(context)

    def response(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        full = {"csrf_token": lambda: self._csrf_token(request), "robots": "noindex"}
        full.update(context or {})
        return HTMLResponse(self.render(name, full), status_code=status, headers=headers)


def when(moment: datetime | None, zone: str = "UTC") -> str:
    """'Tuesday 3 March 2026, 07:00 (Europe/Berlin)'."""
    if moment is None:
        return ""
    from zoneinfo import ZoneInfo

    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} ({zone})"
