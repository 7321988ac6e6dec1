"""The live preview's cards: what ``digest.app.candidates.LivePreviews`` chose, shaped for
the page (titles and snippets escaped, matched words marked, the mail's reasons as chips)."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from digest.app.candidates import Picks
from digest.config import Settings
from digest.domain.analysis import match_spans
from digest.domain.items import PaperCard, RankedItem
from digest.domain.profiles import Profile
from digest.render import paper_view
from digest.render.text import Why, why_parts

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
class Card:
    title: Markup
    url: str | None
    authors: str
    meta: tuple[str, ...]
    upvotes: int | None
    snippet: Markup
    chips: tuple[Why, ...]  # the mail's "why" line, a chip a part
    section: str


@dataclass(frozen=True, slots=True)
class Preview:
    cards: tuple[Card, ...]
    scanned: int  # papers in the window
    period: str  # the window in words: "of the last 3 days", "since your last digest"
    has_topics: bool
    returning: bool = False  # the window starts at the reader's last digest


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
        chips=why_parts(item.reasons),
        section=item.section,
    )


def preview(
    settings: Settings, picks: Picks, scanned: int, profile: Profile, *, returning: bool
) -> Preview:
    """The cards of a preview, from the picks the live preview chose; ``returning``: for a
    reader whose next digest starts at their last one."""
    shown = settings.mail.authors_shown
    days = max(round(settings.ranking.first_window_hours / 24), 1)
    return Preview(
        cards=tuple(card(item, paper, shown) for item, paper in picks),
        scanned=scanned,
        period="since your last digest" if returning else f"of the last {days} days",
        has_topics=profile.has_topics,
        returning=returning,
    )
