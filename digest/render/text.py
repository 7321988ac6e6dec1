"""Text helpers for mail: one-liners, trimmed abstracts, highlights, dates, wrapping,
checked URLs. Pure functions (most cached: the same papers go to everyone today)."""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from digest.domain.analysis import term_key, words
from digest.domain.items import Reason
from digest.domain.text import cap, clean_text

# Highlight style, inline because Gmail drops classes in some views; dark mode overrides it
# through the .hl class and !important.
HIGHLIGHT_STYLE = "background-color:#fff3b0;color:inherit;padding:0 2px;border-radius:3px"

SUBJECT_MAX = 118
TEXT_WIDTH = 76
MAX_TITLE = 500  # the same caps as ingest: feed text is not trusted to be reasonable
MAX_ABSTRACT = 6000
MAX_AUTHOR = 200
MAX_SUMMARY = 600
MAX_LINE = 300  # profile summary and other one-liners
MAX_HEADER_URL = 900  # a raw header line must stay under 998 octets

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def one_line(value: str | None, limit: int) -> str:
    """Feed or caller text as one clean line: no controls, bidi overrides or CR/LF."""
    return clean_text(value, limit)


_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"“'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|approx|resp|Fig|Figs|Eq|Eqs|Sec|Ref|Refs|No|Dr|Prof|"
    r"Mr|Ms|St|Inc|Ltd|Jr)|(?<![\w.])[A-Z])\.$"
)


@lru_cache(maxsize=4096)
def trim_abstract(text: str, limit: int) -> str:
    """``text`` cut at the sentence end nearest ``limit`` (never mid-word), "…" when cut.

    Kept whole when at most 15% over ``limit``. Otherwise the last sentence end between 60%
    and 115% of ``limit`` wins; with none there, the cut falls on the last space before
    ``limit``.
    """
    high = int(limit * 1.15)
    if len(text) <= high:
        return text
    best = None
    for match in _SENTENCE_END.finditer(text, 0, high + 1):
        end = match.end()
        if end < limit * 0.6 or end > high:
            continue
        if _ABBREVIATION.search(text[max(0, end - 8) : end]):
            continue
        best = end
    if best is not None:
        return text[:best] + " …"
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    # One enormous word has no boundary to respect: cut it.
    cut = cut[:space] if space > limit * 0.5 else cut[:limit]
    return cut.rstrip(" ,;:-–—(") + "…"


@lru_cache(maxsize=8192)
def _words(
    text: str,
) -> tuple[tuple[str, ...], tuple[tuple[str, int, int], ...], dict[str, list[int]]]:
    """The stems of ``text``, each word's (stem, start, end), and where each stem occurs:
    worked out once per title or abstract, not once per mail."""
    found = tuple(words(text))
    where: dict[str, list[int]] = {}
    for index, (stem, _, _) in enumerate(found):
        where.setdefault(stem, []).append(index)
    return tuple(w[0] for w in found), found, where


@lru_cache(maxsize=4096)
def _term_keys(terms: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted({key for key in map(term_key, terms) if key}))


def highlight_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """``digest.analysis.match_spans`` (the ranking's own definition of a match), with the
    text's words and the terms' stems worked out once rather than per mail."""
    keys = _term_keys(tuple(terms))
    if not keys or not text:
        return []
    stems, tokens, where = _words(text)
    spans: list[tuple[int, int]] = []
    for key in keys:
        for index in where.get(key[0], ()):
            end = index + len(key)
            if stems[index:end] == key:
                spans.append((tokens[index][1], tokens[end - 1][2]))
    if not spans:
        return spans
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@lru_cache(maxsize=4096)
def highlight_html(text: str, terms: tuple[str, ...]) -> Markup:
    """``text`` escaped, with the spans where ``terms`` match wrapped in an inline <mark>.

    The raw text is split at the spans first and each piece escaped on its own, so an entity
    is never cut or marked up.
    """
    spans = highlight_spans(text, terms) if terms else []
    escaped, where = _escaped(text)
    if not spans:
        return Markup(escaped)
    parts: list[str] = []
    position = 0
    for start, end in spans:
        # Escaping is character by character, so a slice of the escaped text at the
        # characters' own positions is the escaped slice.
        a, b = (start, end) if where is None else (where[start], where[end])
        parts += (escaped[position:a], _MARK_OPEN, escaped[a:b], "</mark>")
        position = b
    parts.append(escaped[position:])
    return Markup("".join(parts))


# A line break between the attributes, as in the templates' tags
# (:func:`~digest.render.templates.inline_template_css`): an abstract with many highlights
# stays in lines well under the 998 octets that let the mail go as 7bit.
_MARK_OPEN = f'<mark class="hl"\nstyle="{HIGHLIGHT_STYLE}">'
_ESCAPED_LENGTH = {"&": 5, "<": 4, ">": 4, '"': 5, "'": 5}  # &amp; &lt; &gt; &#34; &#39;


@lru_cache(maxsize=8192)
def _escaped(text: str) -> tuple[str, list[int] | None]:
    """``text`` HTML-escaped, and where each of its characters starts in the escaped text
    (None when nothing needed escaping, so positions are the same); once per text."""
    escaped = str(escape(text))
    if len(escaped) == len(text):
        return escaped, None
    where = [0]
    for ch in text:
        where.append(where[-1] + _ESCAPED_LENGTH.get(ch, 1))
    return escaped, where


def format_authors(authors: Sequence[str], shown: int) -> str:
    names = [one_line(name, MAX_AUTHOR) for name in authors]
    names = [name for name in names if name]
    if len(names) > shown:
        return ", ".join(names[:shown]) + " et al."
    return ", ".join(names)


@lru_cache(maxsize=16384)
def _label(text: str) -> str:
    return one_line(text, 120)


@dataclass(frozen=True, slots=True)
class Why:
    """One part of the "why" line; ``kind`` (term, author, category, trending, second_look)
    is what the web preview styles its chip by."""

    kind: str
    label: str


def format_reasons(reasons: Sequence[Reason]) -> str:
    """'Matched "graph neural network", diffusion · author Yann LeCun · cs.LG'."""
    return _format_reasons(tuple(reasons))


@lru_cache(maxsize=16384)
def _format_reasons(reasons: tuple[Reason, ...]) -> str:
    return " · ".join(part.label for part in _why(reasons))


def why_parts(reasons: Sequence[Reason]) -> tuple[Why, ...]:
    """The parts of the "why" line, in order: the mail's line and the web preview's chips
    say the same thing in the same words."""
    return _why(tuple(reasons))


@lru_cache(maxsize=16384)
def _why(reasons: tuple[Reason, ...]) -> tuple[Why, ...]:
    # Labels by the kind of reason, in order, each once; "second_look" says what is new
    # since the paper was sent; a multi-word term reads as a quoted phrase.
    found: dict[str, dict[str, None]] = defaultdict(dict)
    for reason in reasons:
        label = _label(reason.label)
        if not label:
            continue
        kind = reason.kind
        if kind == "phrase" or (kind == "term" and " " in label):
            kind, label = "term", f"“{label}”" if '"' in label else f'"{label}"'
        elif kind == "semantic":
            label = f'"{label}"'
        found[kind][label] = None
    parts = [Why("second_look", label) for label in found["second_look"]]
    if found["term"]:
        parts.append(Why("term", "Matched " + ", ".join(found["term"])))
    parts.extend(Why("author", f"author {name}") for name in found["author"])
    if found["category"]:
        parts.append(Why("category", ", ".join(found["category"])))
    for kind, lead in (
        ("semantic", "close to "),
        ("learned", "from your feedback: "),
        ("related", "related: "),
    ):
        if found[kind]:
            parts.append(Why("term", lead + ", ".join(found[kind])))
    for count in found["trending"]:
        unit = "upvote" if count == "1" else "upvotes"
        text = f"Trending: {count} {unit}" if count.isdigit() else f"Trending: {count}"
        parts.append(Why("trending", text))
    return tuple(parts)


def short_date(day: date) -> str:
    return f"{_DAYS[day.weekday()][:3]} {day.day} {_MONTHS[day.month - 1][:3]}"


def long_date(day: date) -> str:
    return f"{_DAYS[day.weekday()]}, {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word when possible, "…" when cut."""
    return cap(text, limit, keep=0.5, strip=" ,;:-–—(")


def make_subject(day: date, top_title: str | None, more: int) -> str:
    if top_title is None:
        return f"Your papers for {short_date(day)}: nothing new matched today"
    prefix = f"Your papers for {short_date(day)}: "
    suffix = f" (+{more} more)" if more > 0 else ""
    room = max(SUBJECT_MAX - len(prefix) - len(suffix), 20)
    return prefix + _shorten(one_line(top_title, MAX_TITLE), room) + suffix


def _papers(n: int) -> str:
    return f"{n} paper" if n == 1 else f"{n} papers"


_LONG_WORD = re.compile(rf"\S{{{TEXT_WIDTH + 1},}}")
# Text with no white space at either end (textwrap strips any there, Unicode's too) and no
# ASCII white space inside but plain spaces (those textwrap turns into spaces).
_ONE_LINE = re.compile(r"\S(?:[^\t\n\x0b\x0c\r]*\S)?")


def wrap(text: str, indent: str = "", first: str | None = None) -> str:
    """Plain text wrapped at ~78 columns; URLs are never broken, other giant words are.
    ``first`` replaces ``indent`` on the first line."""
    lead = indent if first is None else first
    if len(lead) + len(text) <= TEXT_WIDTH and _ONE_LINE.fullmatch(text):
        # It fits and has nothing textwrap would fold or drop: what fill would return, in
        # a fraction of the time (a reader's "Why:" lines and the like, new in every mail).
        return lead + text
    if first is not None and len(first) == len(indent):
        # The same breaks as with ``indent`` throughout: a card's "12. " before its title
        # reuses the title wrapped once per paper, not once per position.
        lines = _wrap(text, indent, None)
        return first + lines[len(indent) :] if lines else lines
    return _wrap(text, indent, first)


@lru_cache(maxsize=16384)
def _wrap(text: str, indent: str, first: str | None) -> str:

    def split_word(match: re.Match[str]) -> str:
        word = match.group()
        if re.match(r"https?://", word):
            return word
        size = TEXT_WIDTH - len(indent)
        return " ".join(word[i : i + size] for i in range(0, len(word), size))

    if _PLAIN_WORDS.fullmatch(text) and text.isprintable() and not _LONG_WORD.search(text):
        return _greedy_fill(text, indent if first is None else first, indent)
    text = _LONG_WORD.sub(split_word, text)
    lead = indent if first is None else first
    return textwrap.fill(text, initial_indent=lead, subsequent_indent=indent, **TEXTWRAP)


# How the plain text is folded: URLs and words are never broken, not even at hyphens.
TEXTWRAP: dict[str, Any] = {
    "width": TEXT_WIDTH,
    "break_long_words": False,
    "break_on_hyphens": False,
}

# Words between single spaces; with ``str.isprintable`` (false for every white space but the
# ASCII space) nothing textwrap would treat as white space is left inside a word.
_PLAIN_WORDS = re.compile(r"[^ ]+(?: [^ ]+)*")


def _greedy_fill(text: str, first: str, indent: str) -> str:
    """What ``textwrap.fill`` returns with the options of :func:`_wrap`, for text of words
    between single spaces (no other white space, no word over ``TEXT_WIDTH``): lines filled
    word by word, a word too long for a line alone on its own. Five times faster, and the
    lines a reader's mail alone has ("Why: …", the footer with the address) miss the cache.
    """
    lines: list[str] = []
    lead, width = first, TEXT_WIDTH - len(first)
    line: list[str] = []
    length = 0
    for word in text.split(" "):
        if line and length + 1 + len(word) > width:
            lines.append(lead + " ".join(line))
            lead, width = indent, TEXT_WIDTH - len(indent)
            line, length = [word], len(word)
        else:
            length += len(word) + (1 if line else 0)
            line.append(word)
    lines.append(lead + " ".join(line))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# URL and header guards


_URL_OK = re.compile(r"https?://[^\s\"'<>\\`\x00-\x1f\x7f]+", re.ASCII)
_MESSAGE_ID = re.compile(r"<[!#-;=?-\[\]-~]+@[!#-;=?-\[\]-~]+>", re.ASCII)


def checked_url(url: str, what: str) -> str:
    """``url`` when it is an http(s) URL that cannot break out of an attribute or header."""
    if not isinstance(url, str) or not _URL_OK.fullmatch(url):
        raise ValueError(f"{what} must be an http(s) URL without spaces or quotes: {url!r:.80}")
    return url
