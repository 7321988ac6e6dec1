"""Text and id normalisation, done once at ingest (and to what people type, at input).

Pure functions, no I/O: used by ingest (and later by ranking and rendering for the same
notion of an id or a clean line).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Bidi embedding/override/isolate controls and marks: they can reorder what a reader sees.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Zero-width and byte-order marks carry nothing a reader should see either.
_INVISIBLE = "\u200b\u2060\ufeff"
# Control characters (Unicode's Cc: C0, DEL and C1) become spaces, collapsed after.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_STRIP: dict[int, str | None] = {ord(ch): None for ch in _BIDI + _INVISIBLE}
_STRIP.update(dict.fromkeys(_CONTROLS, " "))
# Most text has none of them: looking is ten times cheaper than translating.
_HIDDEN = re.compile(f"[{re.escape(''.join(map(chr, _STRIP)))}]")

_NEW_ID = re.compile(r"(?P<id>\d{4}\.\d{4,5})(?:v(?P<v>\d+))?")
_OLD_ID = re.compile(r"(?P<id>[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<v>\d+))?")
_ID_PREFIX = re.compile(
    r"^(?:arxiv:|oai:arxiv\.org:|https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)",
    re.IGNORECASE,
)
_DOI = re.compile(r"^10\.\d{4,9}/[^\s\"<>]+$")
_GITHUB = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/?$")


def clean_text(value: str | None, limit: int) -> str:
    """One clean line: controls and bidi overrides gone, whitespace collapsed, length capped.

    TeX is left as it is; it is the authors' notation.
    """
    return cap(visible(value), limit) if value else ""


def visible(value: str) -> str:
    """What a reader sees of ``value``: NFC, without bidi controls, zero-width characters or
    other controls (those become spaces), whitespace collapsed. For paper text and for
    what people type alike, so neither can reorder or hide what is shown."""
    text = unicodedata.normalize("NFC", value)
    if _HIDDEN.search(text):
        text = text.translate(_STRIP)
    # Whitespace collapsed: str.split() splits at what the regex \s matches, runs at once.
    return " ".join(text.split())


def cap(text: str, limit: int, *, keep: float = 0.6, strip: str = " ,;:") -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with "…": at the last
    word boundary when that keeps at least ``keep`` of the limit, then without trailing
    ``strip`` characters."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * keep:
        cut = cut[:space]
    return cut.rstrip(strip) + "…"


def parse_arxiv_id(raw: str | None) -> tuple[str, int | None] | None:
    """``(id without version, version)`` for a valid arXiv id in any usual spelling, else None.

    New style ``YYMM.NNNN(N)`` with a real month; old style ``archive(.SC)/YYMMNNN``.
    """
    if not raw:
        return None
    text = _ID_PREFIX.sub("", raw.strip())
    for pattern in (_NEW_ID, _OLD_ID):
        match = pattern.fullmatch(text)
        if match:
            paper_id = match["id"]
            version = int(match["v"]) if match["v"] else None
            if pattern is _NEW_ID and not _valid_new_id(paper_id):
                return None
            return paper_id, version
    return None


def _valid_new_id(paper_id: str) -> bool:
    yymm, number = paper_id.split(".")
    month = int(yymm[2:])
    if not 1 <= month <= 12:
        return False
    # Four digits after the dot until 2014-12, five from 2015-01 on.
    return len(number) == (5 if int(yymm) >= 1501 else 4)


def title_key(title: str) -> str:
    """A stable key for a title: case, accents, punctuation and spacing do not matter."""
    decomposed = unicodedata.normalize("NFKD", title.casefold())
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = re.findall(r"\w+", letters)
    return hashlib.blake2b(" ".join(words).encode(), digest_size=16).hexdigest()


def valid_doi(value: str | None) -> str | None:
    if not value:
        return None
    # Some records carry two DOIs separated by a space; keep the first.
    first = value.strip().split()[0] if value.strip() else ""
    return first if _DOI.match(first) else None


def valid_github(value: str | None) -> str | None:
    if value and _GITHUB.match(value.strip()):
        return value.strip().rstrip("/")
    return None
