"""The live preview: the papers of the last few days that a profile would have received.

The same ranking as the digests (:class:`digest.ranking.Ranker`), over the papers first seen in
the last ``web.preview_days`` days. Preparing those papers (tokenising, stemming, matrices) is
the costly part, so it is done once and kept until the set of papers changes (a fetch) or the
window moves on (hourly); ranking one profile against it takes milliseconds, which is what
lets the page update as a person types.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape
from sqlalchemy import func, select

from digest import compose, embeddings
from digest.config import Settings
from digest.domain.analysis import match_spans
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.domain.profiles import Profile
from digest.models import Paper, PaperEmbedding
from digest.ranking import Ranker, RankRequest
from digest.render import one_line, paper_view
from digest.store import Store

ABSTRACT_CHARS = 320


def highlight(text: str, terms: tuple[str, ...]) -> Markup:
    """``text`` escaped, with matched terms in <mark> (styled by class, for the CSP)."""
    spans = match_spans(text, terms) if terms else []
    parts: list[str] = []
    position = 0
    for start, end in spans:
        parts.append(str(escape(text[position:start])))
        parts.append(f"<mark>{escape(text[start:end])}</mark>")
        position = end
    parts.append(str(escape(text[position:])))
    return Markup("".join(parts))


@dataclass(frozen=True, slots=True)
class Chip:
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Card:
    title: Markup
    url: str | None
    authors: str
    meta: tuple[str, ...]
    upvotes: int | None
    snippet: Markup
    chips: tuple[Chip, ...]
    section: str


@dataclass(frozen=True, slots=True)
class Preview:
    cards: tuple[Card, ...]
    scanned: int  # papers in the window
    days: int
    has_topics: bool


def chips(reasons: tuple[Reason, ...]) -> tuple[Chip, ...]:
    found: list[Chip] = []
    for reason in reasons:
        label = one_line(reason.label, 80)
        if not label:
            continue
        if reason.kind in ("term", "phrase"):
            found.append(Chip("term", f"“{label}”" if " " in label else label))
        elif reason.kind == "author":
            found.append(Chip("author", f"author: {label}"))
        elif reason.kind == "category":
            found.append(Chip("category", label))
        elif reason.kind == "semantic":
            found.append(Chip("term", f"close to “{label}”"))
        elif reason.kind == "learned":
            found.append(Chip("term", f"from your feedback: {label}"))
        elif reason.kind == "trending":
            if label.isdigit():
                found.append(Chip("trending", f"▲ {label} upvote{'' if label == '1' else 's'}"))
            else:
                found.append(Chip("trending", "new today"))
    return tuple(dict.fromkeys(found))


def card(item: RankedItem, paper: PaperCard, authors_shown: int) -> Card:
    view = paper_view(paper, ABSTRACT_CHARS, authors_shown)
    terms = tuple(item.highlight)
    meta = tuple(m for m in (view.category,) if m)
    snippet = view.tldr or view.abstract
    return Card(
        title=highlight(view.title, terms),
        url=view.abs_url,
        authors=view.authors,
        meta=meta,
        upvotes=paper.upvotes if isinstance(paper.upvotes, int) and paper.upvotes > 0 else None,
        snippet=highlight(snippet, terms),
        chips=chips(item.reasons),
        section=item.section,
    )


@dataclass(slots=True)
class _Prepared:
    key: tuple[object, ...]
    ranker: Ranker
    cards: dict[int, PaperCard]


class PreviewIndex:
    """The window's papers, prepared once and shared by every preview request."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._prepared: _Prepared | None = None

    def window_start(self, now: datetime) -> datetime:
        start = now - timedelta(days=self.settings.web.preview_days)
        return start.replace(minute=0, second=0, microsecond=0)

    def _prepare(self, now: datetime) -> _Prepared:
        since = self.window_start(now)
        window = Paper.first_seen_at >= since
        with self.store.transaction() as session:
            stamp = session.execute(
                select(
                    func.count(Paper.id), func.max(Paper.id), func.max(Paper.last_seen_at)
                ).where(window)
            ).one()
            vectors = session.scalar(select(func.count()).select_from(PaperEmbedding))
            key = (since, *stamp, vectors)  # papers embedded since: prepare again
            with self._lock:
                if self._prepared is not None and self._prepared.key == key:
                    return self._prepared
            papers = [compose.paper_card(p) for p in session.scalars(select(Paper).where(window))]
        # Semantic matching on the vectors already stored: a page never waits for the model
        # to embed papers (the fetch does that).
        semantic = embeddings.semantic_for(self.settings, self.store, papers, embed_missing=False)
        ranker = Ranker(papers, self.settings.ranking, now, semantic=semantic)
        prepared = _Prepared(key, ranker, {})
        prepared.cards.update((p.paper_id, p) for p in papers)
        with self._lock:
            self._prepared = prepared
        return prepared

    def preview(self, profile: Profile, limit: int, now: datetime) -> Preview:
        prepared = self._prepare(now)
        since = self.window_start(now)
        [ranked] = prepared.ranker.rank([RankRequest(profile, limit, since)])
        shown = self.settings.mail.authors_shown
        cards = tuple(card(item, prepared.cards[item.paper_id], shown) for item in ranked)
        return Preview(
            cards=cards,
            scanned=len(prepared.cards),
            days=self.settings.web.preview_days,
            has_topics=profile.has_topics,
        )
