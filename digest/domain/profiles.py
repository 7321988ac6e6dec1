"""Interest profiles: what a subscriber cares about, parsed and checked once.

A profile is plain data (stored as JSON on the subscriber): include terms (words or
phrases, each with a weight), exclude terms, arXiv categories and authors to follow. Its
``extra`` holds the free-text ``description`` and, under ``learned``, what the reader's
feedback taught (``Learned``: made by ``digest.feedback``, read by ``digest.ranking``).

Term syntax, the same on the command line and in the web form: terms are separated by
commas, semicolons or new lines; quotes group a phrase inside a longer line (or keep a
sentence with commas whole); ``^N`` after a term sets its weight (``"graph neural
network"^2, diffusion^0.5``). A term of up to ``MAX_PHRASE_WORDS`` words is a word or a
phrase; a longer one (up to ``MAX_TERM_CHARS``) is a description of an interest in the
reader's own sentence. How each is matched is ``digest.ranking.query``'s business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from digest.domain.analysis import author_key, term_key
from digest.domain.categories import canonical_category
from digest.domain.text import visible
from digest.errors import ValidationError

MAX_INCLUDE = 50
MAX_EXCLUDE = 50
MAX_CATEGORIES = 20
MAX_AUTHORS = 30
MAX_TERM_CHARS = 300  # a sentence or two describing an interest
MAX_PHRASE_WORDS = 6  # longer terms are descriptions
MAX_AUTHOR_CHARS = 100
MIN_WEIGHT, MAX_WEIGHT = 0.1, 10.0

_SEPARATORS = (",", ";", "\n")  # what ends a bare term in _CHUNK
_CHUNK = re.compile(r'"([^"]*)"(?:\^([0-9.]+))?|([^",;\n]+?)(?:\^([0-9.]+))?(?=\s*(?:[,;\n]|$|"))')


@dataclass(frozen=True, slots=True)
class Term:
    text: str  # as the person wrote it, without quotes or weight
    weight: float = 1.0

    @property
    def is_phrase(self) -> bool:
        return 1 < len(term_key(self.text)) <= MAX_PHRASE_WORDS

    @property
    def is_description(self) -> bool:
        return len(term_key(self.text)) > MAX_PHRASE_WORDS

    def __str__(self) -> str:
        """The term in the syntax above, parsed back by ``parse_terms`` to the same term (the
        edit form and ``merge`` rely on it): a phrase is quoted to show it matches as one, and
        so is any text holding a separator (a quoted sentence with a comma), which bare would
        come back split."""
        quoted = self.is_phrase or any(mark in self.text for mark in _SEPARATORS)
        shown = f'"{self.text}"' if quoted else self.text
        return shown if self.weight == 1.0 else f"{shown}^{self.weight:g}"


@dataclass(frozen=True, slots=True)
class Profile:
    include: tuple[Term, ...] = ()
    exclude: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    also_trending: bool = False  # a short "also trending today" section under the picks
    second_look: bool = True  # "worth another look": sent papers with news (domain.second_look)
    extra: Mapping[str, Any] = field(default_factory=dict)  # room for later issues

    @property
    def has_topics(self) -> bool:
        """Something to match on: without, a reader gets the day's trending papers."""
        return bool(
            self.include
            or self.categories
            or self.authors
            or self.description
            or self.learned.has_topics
        )

    @property
    def description(self) -> str:
        """The reader's own words on what they follow (the web form's free-text field)."""
        return " ".join(str(self.extra.get("description") or "").split())

    @property
    def learned(self) -> Learned:
        return Learned.from_json(self.extra.get("learned"))

    def with_extra(self, **changes: Any) -> Profile:
        """A copy whose ``extra`` has ``changes`` applied (a value of None removes the key)."""
        extra = {**self.extra, **changes}
        return replace(self, extra={k: v for k, v in extra.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return {
            "include": [{"text": t.text, "weight": t.weight} for t in self.include],
            "exclude": list(self.exclude),
            "categories": list(self.categories),
            "authors": list(self.authors),
            "also_trending": self.also_trending,
            "second_look": self.second_look,
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
            # On unless turned off: profiles stored before it existed get it too.
            second_look=bool(data.get("second_look", True)),
            extra=dict(data.get("extra", {})),
        )

    def describe(self, weights: bool = True) -> str:
        """One line on what this profile matches (for a mail's header: ``weights=False``)."""
        shown = self.include[:6]
        parts = [str(t) if weights else str(Term(t.text)) for t in shown]
        parts += [f"category {c}" for c in self.categories[:3]]
        parts += [f"author {a}" for a in self.authors[:3]]
        likes = self.learned.likes
        if likes:
            parts.append(f"{likes} paper{'s' if likes != 1 else ''} you liked")
        return ", ".join(parts) if parts else "today's trending papers"


# -- what feedback taught ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LearnedTerm:
    text: str  # a word as the papers spell it ("pruning"); matched by its stems like any term
    weight: float  # signed: > 0 lifts matching papers, < 0 pushes them down (never lets one in)


@dataclass(frozen=True, slots=True)
class LearnedAuthor:
    name: str  # as a liked paper spells it
    weight: float  # > 0; added to a paper's relevance when they wrote it


@dataclass(frozen=True, slots=True)
class LikedPaper:
    canonical_id: str
    title: str


def term_id(text: str) -> str:
    """The key a learned or removed term is remembered by: its stems ("prune")."""
    return " ".join(term_key(text))


def author_id(name: str) -> str:
    """The key a learned or removed author is remembered by ("lecun y")."""
    return " ".join(author_key(name)).strip()


@dataclass(frozen=True)
class Learned:
    """What a reader's feedback taught, as of ``as_of``; see ``digest.feedback``.

    ``terms`` come from the distinctive words of liked (+) and disliked (-) papers, ``model``
    from the per-reader classifier's largest coefficients, ``authors`` from liked papers.
    All weights fade with the age of the feedback: ``decay(now)`` is the factor since
    ``as_of`` (each event was already weighted by its age at ``as_of``). The ``removed_*``
    keys are what the reader took away; they are never learned again.
    """

    terms: tuple[LearnedTerm, ...] = ()
    authors: tuple[LearnedAuthor, ...] = ()
    model: tuple[LearnedTerm, ...] = ()
    liked: tuple[LikedPaper, ...] = ()  # newest first: their meaning joins the profile's
    likes: int = 0
    dislikes: int = 0
    as_of: datetime | None = None
    half_life_days: float = 0.0  # 0: no decay
    removed_terms: tuple[str, ...] = ()  # term_id keys
    removed_authors: tuple[str, ...] = ()  # author_id keys
    model_off: bool = False  # the reader switched the per-reader model off

    @property
    def events(self) -> int:
        return self.likes + self.dislikes

    @property
    def model_on(self) -> bool:
        return bool(self.model)

    @property
    def has_topics(self) -> bool:
        """Something positive to match on (a profile seeded from liked papers alone)."""
        return any(t.weight > 0 for t in (*self.terms, *self.model)) or bool(self.authors)

    def decay(self, now: datetime) -> float:
        """How much of the learned weights is left at ``now`` (1.0 at ``as_of``)."""
        if self.as_of is None or self.half_life_days <= 0:
            return 1.0
        moment = now if now.tzinfo else now.replace(tzinfo=UTC)
        days = max(0.0, (moment - self.as_of).total_seconds() / 86400)
        return float(0.5 ** (days / self.half_life_days))

    def to_json(self) -> dict[str, Any]:
        return {
            "terms": [{"text": t.text, "weight": round(t.weight, 4)} for t in self.terms],
            "authors": [{"name": a.name, "weight": round(a.weight, 4)} for a in self.authors],
            "model": [{"text": t.text, "weight": round(t.weight, 4)} for t in self.model],
            "liked": [{"id": p.canonical_id, "title": p.title} for p in self.liked],
            "likes": self.likes,
            "dislikes": self.dislikes,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "half_life_days": self.half_life_days,
            "removed_terms": list(self.removed_terms),
            "removed_authors": list(self.removed_authors),
            "model_off": self.model_off,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Learned:
        """Tolerant: a hand-edited or older entry loses what it cannot read, not the profile."""
        if not isinstance(data, Mapping):
            return _NOTHING_LEARNED  # most readers: one shared, immutable instance

        def items(name: str) -> list[Mapping[str, Any]]:
            found = data.get(name)
            return [x for x in found if isinstance(x, Mapping)] if isinstance(found, list) else []

        def terms(name: str) -> tuple[LearnedTerm, ...]:
            return tuple(
                LearnedTerm(str(x["text"]), float(x["weight"]))
                for x in items(name)
                if x.get("text") and _finite(x.get("weight"))
            )

        as_of = data.get("as_of")
        try:
            moment = datetime.fromisoformat(as_of) if isinstance(as_of, str) else None
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls(
            terms=terms("terms"),
            authors=tuple(
                LearnedAuthor(str(x["name"]), float(x["weight"]))
                for x in items("authors")
                if x.get("name") and _finite(x.get("weight"))
            ),
            model=terms("model"),
            liked=tuple(
                LikedPaper(str(x["id"]), str(x.get("title") or ""))
                for x in items("liked")
                if x.get("id")
            ),
            likes=int(data.get("likes") or 0),
            dislikes=int(data.get("dislikes") or 0),
            as_of=moment,
            half_life_days=float(data.get("half_life_days") or 0.0),
            removed_terms=tuple(str(x) for x in data.get("removed_terms") or ()),
            removed_authors=tuple(str(x) for x in data.get("removed_authors") or ()),
            model_off=bool(data.get("model_off", False)),
        )


_NOTHING_LEARNED = Learned()


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")


def parse_terms(
    values: Iterable[str], *, what: str = "include", weights: bool = True
) -> list[Term]:
    """Terms from one or more strings in the syntax above; raises ``ValidationError``."""
    terms: list[Term] = []
    for value in values:
        for match in _CHUNK.finditer(value):
            quoted, quoted_weight, bare, bare_weight = match.groups()
            # Bidi overrides, zero-width and control characters go, as from paper text.
            text = visible(quoted if quoted is not None else bare or "")
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
                f"{what} term {term.text[:30]!r}… is {len(term.text)} characters long; at most "
                f"{MAX_TERM_CHARS} (a sentence or two)"
            )
        key = term_key(term.text)
        if not key:
            raise ValidationError(f"{what} term {term.text!r} has no letters or digits")
        if what == "exclude" and len(key) > MAX_PHRASE_WORDS:
            # An exclude vetoes every paper that says it: a sentence would veto nothing.
            raise ValidationError(
                f"exclude term {term.text[:40]!r}… has more than {MAX_PHRASE_WORDS} words; "
                "exclude words or short phrases"
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
            name = visible(part)
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
    second_look: bool = True,
) -> Profile:
    """A checked profile from raw strings (CLI options or form fields)."""
    return Profile(
        include=tuple(parse_terms(include, what="include")),
        exclude=tuple(t.text for t in parse_terms(exclude, what="exclude", weights=False)),
        categories=tuple(parse_categories(categories)),
        authors=tuple(parse_authors(authors)),
        also_trending=also_trending,
        second_look=second_look,
    )


MAX_DESCRIPTION_CHARS = 1000  # the model reads ~1,000 characters; more would go unread


def merge(
    old: Profile,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    authors: Iterable[str] | None = None,
    also_trending: bool | None = None,
    second_look: bool | None = None,
    description: str | None = None,
    clear: bool = False,
) -> Profile:
    """The one rule for changing a profile, wherever it is edited (``digest subscribe``,
    ``digest profile``, the web's forms): a part that is given replaces the stored one, a
    part that is not (None) is kept; what feedback taught stays (it follows the stored
    choices), unless ``clear`` starts from an empty profile. Raises ``ValidationError``."""
    base = Profile() if clear else old
    text = base.description if description is None else " ".join(description.split())
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise ValidationError(
            f"the description is {len(text):,} characters long; at most "
            f"{MAX_DESCRIPTION_CHARS:,} (a few sentences)"
        )
    new = build_profile(
        [str(t) for t in base.include] if include is None else include,
        base.exclude if exclude is None else exclude,
        base.categories if categories is None else categories,
        (("; ".join(base.authors),) if base.authors else ()) if authors is None else authors,
        base.also_trending if also_trending is None else also_trending,
        base.second_look if second_look is None else second_look,
    )
    kept = None if clear else old.extra.get("learned")
    return new.with_extra(description=text or None, learned=kept)
