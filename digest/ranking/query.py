"""What a reader's words ask for: each include term turned into weighted *units*. Pure.

A unit is one thing the day's papers can be searched for, with its own BM25F vector
(``digest.ranking.prepared``):

- ``word``: one stem;
- ``phrase``: a contiguous sequence of stems;
- ``near``: the content stems of a phrase, all within ``NEAR_WINDOW`` words of each other in
  one field, in any order ("compressing large models" for "model compression").

A term becomes units by its length:

- a **word** ("diffusion") is its word unit;
- a **phrase** of up to ``MAX_PHRASE_WORDS`` words ("model compression") is its content words,
  each a word unit, plus the phrase (``phrase_weight``) and the words near each other
  (``proximity_weight``): the exact phrase scores highest, its words still count apart;
- a **description**, anything longer ("papers on how pretrained visual features transfer"),
  is a weaker bag (``description_weight``): its content words, and each pair of adjacent
  content words as a two-word phrase.

Content words are the stems left after ``QUERY_STOPWORDS`` (function words, and the words
readers wrap an interest in: "I want papers on ..."); a phrase made only of such words keeps
them all. Units of one stem sequence and kind given by several terms add their weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Literal

from digest.domain.analysis import stem, term_key, words
from digest.domain.profiles import MAX_PHRASE_WORDS

UnitKind = Literal["word", "phrase", "near"]
NEAR_WINDOW = 8  # words: "near" means every content word within this distance of the first

_QUERY_STOPWORD_TEXT = """
    a about above after again against all also although am among an and another any are as
    at be because been before being below between both but by can could did do does doing
    done during each either else etc even ever every few for from further furthermore had has
    have having here hence how however i if in into is it its itself just may might me more
    moreover most much must my neither no nor not now of off often on once only or other
    otherwise our ours out over own per rather same shall she should since so some such than
    that the their theirs them then there thereby therefore these they this those though
    through thus to too under until up upon us very via was we well were what when where
    whether which while who whom whose why will with within without would yet you your
    want wants wanted follow following interested interest interests looking look like
    understand paper papers work works article articles research anything everything
    especially particularly mainly mostly ones one things thing kind kinds topic topics
"""
QUERY_STOPWORDS = frozenset(_QUERY_STOPWORD_TEXT.split())
STOP_STEMS = frozenset(stem(word) for word in QUERY_STOPWORDS)


@dataclass(frozen=True, slots=True)
class Unit:
    kind: UnitKind
    stems: tuple[str, ...]
    weight: float  # relative to the term's own weight
    surface: str  # what the mail highlights: the reader's word or phrase as written, or ""


@dataclass(frozen=True, slots=True)
class TermUnits:
    kind: Literal["word", "phrase", "description"]
    units: tuple[Unit, ...]


@dataclass(frozen=True)
class QueryWeights:
    phrase: float  # the exact phrase, on top of its words
    proximity: float  # the phrase's words near each other, on top of its words
    description: float  # each word (and two-word phrase) of a description


def content(key: tuple[str, ...]) -> tuple[str, ...]:
    """The stems of ``key`` that say something, in order, each once; all of them if none do."""
    kept = tuple(dict.fromkeys(s for s in key if s not in STOP_STEMS and not s.isdigit()))
    return kept or tuple(dict.fromkeys(key))


def _surfaces(text: str) -> dict[str, str]:
    """stem -> the first word of ``text`` with that stem, as written."""
    found: dict[str, str] = {}
    for word_stem, start, end in words(text):
        found.setdefault(word_stem, text[start:end])
    return found


@lru_cache(maxsize=65_536)
def units(text: str, weights: QueryWeights) -> TermUnits | None:
    """The units of one include term as written; None when it has no words."""
    key = term_key(text)
    if not key:
        return None
    if len(key) == 1:
        return TermUnits("word", (Unit("word", key, 1.0, text.strip()),))
    spelled = _surfaces(text)
    kept = content(key)
    if len(key) <= MAX_PHRASE_WORDS:
        found = [Unit("word", (s,), 1.0, spelled.get(s, s)) for s in kept]
        if weights.phrase:
            found.append(Unit("phrase", key, weights.phrase, " ".join(text.split())))
        if weights.proximity and len(kept) > 1:
            # Nothing of its own to highlight: its words are highlighted as words.
            found.append(Unit("near", kept, weights.proximity, ""))
        return TermUnits("phrase", tuple(found))
    if not weights.description:
        return None
    found = [Unit("word", (s,), weights.description, spelled.get(s, s)) for s in kept]
    pairs = dict.fromkeys((a, b) for a, b in pairwise(key) if a in kept and b in kept and a != b)
    for pair in pairs:
        surface = f"{spelled.get(pair[0], pair[0])} {spelled.get(pair[1], pair[1])}"
        found.append(Unit("phrase", pair, weights.description, surface))
    return TermUnits("description", tuple(found))
