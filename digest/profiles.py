"""Interest profiles: what a subscriber cares about, parsed and checked once.

A profile is plain data (stored as JSON on the subscriber): include terms (words or
phrases, each with a weight), exclude terms, arXiv categories and authors to follow.

Term syntax, the same on the command line and in the web form: terms are separated by
commas, semicolons or new lines; a multi-word term is a phrase and must match as one; quotes group a
phrase inside a longer line; ``^N`` after a term sets its weight (``"graph neural
network"^2, diffusion^0.5``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from digest.analysis import term_key
from digest.categories import canonical_category
from digest.errors import ValidationError

MAX_INCLUDE = 50
MAX_EXCLUDE = 50
MAX_CATEGORIES = 20
MAX_AUTHORS = 30
MAX_TERM_CHARS = 80
MAX_PHRASE_WORDS = 6
MAX_AUTHOR_CHARS = 100
MIN_WEIGHT, MAX_WEIGHT = 0.1, 10.0

_CHUNK = re.compile(r'"([^"]*)"(?:\^([0-9.]+))?|([^",;\n]+?)(?:\^([0-9.]+))?(?=\s*(?:[,;\n]|$|"))')


@dataclass(frozen=True, slots=True)
class Term:
    text: str  # as the person wrote it, without quotes or weight
    weight: float = 1.0

    @property
    def is_phrase(self) -> bool:
        return len(term_key(self.text)) > 1

    def __str__(self) -> str:
        shown = f'"{self.text}"' if self.is_phrase else self.text
        return shown if self.weight == 1.0 else f"{shown}^{self.weight:g}"


@dataclass(frozen=True, slots=True)
class Profile:
    include: tuple[Term, ...] = ()
    exclude: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    also_trending: bool = False  # a short "also trending today" section under the picks
    extra: Mapping[str, Any] = field(default_factory=dict)  # room for later issues

    @property
    def has_topics(self) -> bool:
        return bool(self.include or self.categories or self.authors)

    def to_json(self) -> dict[str, Any]:
        return {
            "include": [{"text": t.text, "weight": t.weight} for t in self.include],
            "exclude": list(self.exclude),
            "categories": list(self.categories),
            "authors": list(self.authors),
            "also_trending": self.also_trending,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Profile:
        data = data or {}
        return cls(
            include=tuple(
                Term(t["text"], float(t.get("weight", 1.0))) for t in data.get("include", [])
            ),
            exclude=tuple(data.get("exclude", [])),
            categories=tuple(data.get("categories", [])),
            authors=tuple(data.get("authors", [])),
            also_trending=bool(data.get("also_trending", False)),
            extra=dict(data.get("extra", {})),
        )

    def describe(self, weights: bool = True) -> str:
        """One line on what this profile matches (for a mail's header: ``weights=False``)."""
        shown = self.include[:6]
        parts = [str(t) if weights else str(Term(t.text)) for t in shown]
        parts += [f"category {c}" for c in self.categories[:3]]
        parts += [f"author {a}" for a in self.authors[:3]]
        return ", ".join(parts) if parts else "today's trending papers"


def parse_terms(
    values: Iterable[str], *, what: str = "include", weights: bool = True
) -> list[Term]:
    """Terms from one or more strings in the syntax above; raises ``ValidationError``."""
    terms: list[Term] = []
    for value in values:
        for match in _CHUNK.finditer(value):
            quoted, quoted_weight, bare, bare_weight = match.groups()
            text = (quoted if quoted is not None else bare or "").strip()
            text = re.sub(r"\s+", " ", text)
            if not text:
                continue
            raw_weight = quoted_weight if quoted is not None else bare_weight
            if "^" in text:
                raise ValidationError(
                    f"{what} term {text!r}: put a number after ^ for a weight, like diffusion^2"
                )
            if raw_weight is not None and not weights:
                raise ValidationError(f"{what} term {text!r}: weights are not used here")
            terms.append(Term(text, _weight(raw_weight, text, what)))
    return _check_terms(terms, what)


def _weight(raw: str | None, text: str, what: str) -> float:
    if raw is None:
        return 1.0
    try:
        weight = float(raw)
    except ValueError:
        raise ValidationError(f"{what} term {text!r}: weight {raw!r} is not a number") from None
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise ValidationError(
            f"{what} term {text!r}: weight {weight:g} is outside {MIN_WEIGHT:g}–{MAX_WEIGHT:g}"
        )
    return weight


def _check_terms(terms: list[Term], what: str) -> list[Term]:
    seen: dict[tuple[str, ...], Term] = {}
    for term in terms:
        if len(term.text) > MAX_TERM_CHARS:
            raise ValidationError(
                f"{what} term {term.text[:30]!r}… is longer than {MAX_TERM_CHARS} characters"
            )
        key = term_key(term.text)
        if not key:
            raise ValidationError(f"{what} term {term.text!r} has no letters or digits")
        if len(key) > MAX_PHRASE_WORDS:
            raise ValidationError(
                f"{what} term {term.text!r} has more than {MAX_PHRASE_WORDS} words"
            )
        seen.setdefault(key, term)  # "transformer" and "transformers" are one term
    limit = MAX_INCLUDE if what == "include" else MAX_EXCLUDE
    if len(seen) > limit:
        raise ValidationError(f"too many {what} terms: {len(seen)} (at most {limit})")
    return list(seen.values())


def parse_categories(values: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    for value in values:
        for part in re.split(r"[,\s]+", value):
            if not part:
                continue
            category = canonical_category(part)
            if category is None:
                raise ValidationError(
                    f"unknown arXiv category {part!r} (for example cs.LG, stat.ML, hep-th)"
                )
            if category not in chosen:
                chosen.append(category)
    if len(chosen) > MAX_CATEGORIES:
        raise ValidationError(f"too many categories: {len(chosen)} (at most {MAX_CATEGORIES})")
    return chosen


def parse_authors(values: Iterable[str]) -> list[str]:
    authors: list[str] = []
    for value in values:
        for part in re.split(r"[;\n]+", value):
            name = re.sub(r"\s+", " ", part).strip()
            if not name:
                continue
            if len(name) > MAX_AUTHOR_CHARS:
                raise ValidationError(
                    f"author {name[:30]!r}… is longer than {MAX_AUTHOR_CHARS} characters"
                )
            if not re.search(r"\w{2,}", name):
                raise ValidationError(f"author {name!r} does not look like a name")
            if name not in authors:
                authors.append(name)
    if len(authors) > MAX_AUTHORS:
        raise ValidationError(f"too many authors: {len(authors)} (at most {MAX_AUTHORS})")
    return authors


def build_profile(
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    categories: Iterable[str] = (),
    authors: Iterable[str] = (),
    also_trending: bool = False,
) -> Profile:
    """A checked profile from raw strings (CLI options or form fields)."""
    return Profile(
        include=tuple(parse_terms(include, what="include")),
        exclude=tuple(t.text for t in parse_terms(exclude, what="exclude", weights=False)),
        categories=tuple(parse_categories(categories)),
        authors=tuple(parse_authors(authors)),
        also_trending=also_trending,
    )
