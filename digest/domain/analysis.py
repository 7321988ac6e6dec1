"""Text analysis shared by ranking and highlighting: words, stems, phrase matching.

One definition of "a word matches a term", so the mail highlights exactly what the ranking
matched: lower-cased, English Snowball stems ("transformers" and "transformer" meet), an
acronym's plural folded ("LLMs" -> "llm"). Pure functions, no I/O, safe from any thread.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import snowballstemmer
from snowballstemmer.basestemmer import BaseStemmer

# Words: letters and digits, with inner hyphens or apostrophes kept apart as separate words
# ("state-of-the-art" -> state, of, the, art) so hyphenated and spaced spellings meet.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ACRONYM_PLURAL = re.compile(r"^[A-Z][A-Z0-9]+s$")  # LLMs, GNNs, VLMs

# A Snowball stemmer keeps the word it is working on in its own fields, so one shared by
# threads (the sending lanes render at once) mixes their words up: wrong stems, IndexError.
# Each thread gets its own; the cache below is shared (lru_cache is safe across threads).
_local = threading.local()


def _stemmer() -> BaseStemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The stem of one word as it appears in text (case is folded here)."""
    if _ACRONYM_PLURAL.match(word):
        word = word[:-1]
    return _stemmer().stemWord(word.lower())


def words(text: str) -> list[tuple[str, int, int]]:
    """Each word of ``text`` as (stem, start, end) character offsets."""
    return [(stem(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


def stems(text: str) -> list[str]:
    return [stem(m.group()) for m in _WORD.finditer(text)]


@lru_cache(maxsize=65_536)  # a profile's terms are asked for in every mail it gets
def term_key(term: str) -> tuple[str, ...]:
    """A term or phrase as the sequence of stems it must match; () when it has no words."""
    return tuple(stems(term))


def match_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of ``text`` where any of ``terms`` (words or phrases) matches.

    Sorted, non-overlapping (overlaps and neighbours merged), so a renderer can wrap each
    span in a highlight without nesting.
    """
    keys = {key for key in (term_key(t) for t in terms) if key}
    if not keys or not text:
        return []
    tokens = words(text)
    stems_only = [t[0] for t in tokens]
    by_first: dict[str, list[tuple[str, ...]]] = {}
    for key in keys:
        by_first.setdefault(key[0], []).append(key)
    spans: list[tuple[int, int]] = []
    for index, first in enumerate(stems_only):
        for key in by_first.get(first, ()):
            end = index + len(key)
            if tuple(stems_only[index:end]) == key:
                spans.append((tokens[index][1], tokens[end - 1][2]))
    return _merge(sorted(spans))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


_TEX_ACCENT = re.compile(r"\\[`'^\"~=.uvHckbdrt]\s*\{?([A-Za-z])\}?|\{\\([a-zA-Z])\}|\\([lLoO])\b")


def author_key(name: str) -> tuple[str, str]:
    """(family name, first initial), folded: "Yann LeCun", "Y. LeCun" and "LECUN, Yann" meet.

    TeX accents from arXiv listings (``R\\'emy``) and Unicode accents fold to plain letters.
    """
    text = _TEX_ACCENT.sub(lambda m: m.group(1) or m.group(2) or m.group(3), name)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    if "," in text:  # "Family, Given"
        family, _, given = text.partition(",")
        text = f"{given} {family}"
    parts = [p for p in re.split(r"[^\w-]+", text) if p]
    if not parts:
        return ("", "")
    return (parts[-1], parts[0][0] if len(parts) > 1 else "")
