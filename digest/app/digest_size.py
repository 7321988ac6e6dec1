"""The html-size check of `digest doctor`: does the largest digest fit under Gmail's clip?

Gmail shows an HTML part over 102 KB only up to there, with "[Message clipped]" and a link;
what is cut off includes the footer's unsubscribe link. The renderer shortens abstracts (then
drops them) to keep a digest under the clip, but the cards, their links and the templates'
markup still grow with the number of papers. The check renders, with the project's renderer
and templates and without the database, digests of the bundled sample's papers with the most
text: the default size (``subscribers.default_max_papers``) and the largest a reader may
choose, each with the "also trending" papers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from digest.app.doctor import Check, Doctor
from digest.app.sending import make_renderer
from digest.config import SampleSettings
from digest.domain.items import PaperCard, RankedItem, Reason, message_id
from digest.domain.schedules import MAX_PAPERS
from digest.domain.tokens import SignedLinks, Tokens
from digest.render import GMAIL_CLIP_BYTES, DigestInput

if TYPE_CHECKING:
    from digest.sources.http import Fetcher


def check_html_size(doctor: Doctor) -> list[Check]:
    settings = doctor.settings
    measure = Measure(doctor)
    default, trending = settings.subscribers.default_max_papers, settings.ranking.also_trending
    clip = f"Gmail's {GMAIL_CLIP_BYTES // 1024} KB clip"
    usual = f"{default} papers + {trending} trending (the default size): {measure.shown(default)}"
    if measure.size(default) > GMAIL_CLIP_BYTES:
        return [
            Check(
                "html-size",
                "fail",
                f"{usual}, over {clip}: Gmail hides the rest, the unsubscribe link with it",
                "trim the email templates (paths.templates_dir), or lower "
                "subscribers.default_max_papers",
            )
        ]
    if measure.size(MAX_PAPERS) <= GMAIL_CLIP_BYTES:
        return [
            Check(
                "html-size",
                "ok",
                f"{usual}; {MAX_PAPERS} + {trending} (the most a reader may choose): "
                f"{measure.shown(MAX_PAPERS)}; both under {clip}",
            )
        ]
    fits = measure.most_that_fit(default, MAX_PAPERS, GMAIL_CLIP_BYTES)
    return [
        Check(
            "html-size",
            "warn",
            f"{usual}, under {clip}; but {MAX_PAPERS} + {trending} (the most a reader may "
            f"choose) has {measure.shown(MAX_PAPERS)}: digests of more than about {fits} "
            "papers get clipped, and the unsubscribe link at their end is hidden",
            f"trim the email templates (paths.templates_dir), or suggest readers choose at most "
            f"{fits} papers",
        )
    ]


class Measure:
    """Renders the sample's longest papers as digests of n papers, and remembers sizes."""

    def __init__(self, doctor: Doctor) -> None:
        self.settings = doctor.settings
        self.renderer = make_renderer(self.settings)
        self.trending = self.settings.ranking.also_trending
        self.cards = sample_cards()
        self.sizes: dict[int, tuple[int, bool]] = {}  # n -> (bytes, abstracts shortened)

    def size(self, picks: int) -> int:
        if picks not in self.sizes:
            with _shortenings() as shortened:
                html = self._render(picks)
            self.sizes[picks] = (len(html.encode()), bool(shortened))
        return self.sizes[picks][0]

    def shown(self, picks: int) -> str:
        size, shortened = self.size(picks), self.sizes[picks][1]
        note = ""
        if shortened:
            fitted = size <= GMAIL_CLIP_BYTES
            note = " (abstracts shortened to fit)" if fitted else " (even with no abstracts)"
        return f"{size / 1024:.1f} KB of HTML{note}"

    def most_that_fit(self, low: int, high: int, limit: int) -> int:
        """The most papers whose digest fits, by bisection (``low`` fits, ``high`` not)."""
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self.size(middle) <= limit else (low, middle)
        return low

    def _render(self, picks: int) -> str:
        items = largest_digest(self.cards, picks, self.trending)
        links = SignedLinks(self.settings.web.base_url, Tokens(secrets.token_urlsafe(32)))
        reader = "doctor-" + secrets.token_hex(6)
        domain = self.settings.mail.from_address.rpartition("@")[2] or "localhost"
        data = DigestInput(
            to_address=f"a.reader@{domain}",
            local_date=datetime.now(UTC).date(),
            items=items,
            profile_summary="; ".join(_TOPICS),
            message_id=message_id(secrets.token_hex(8), self.settings.mail.from_address),
            date_header=datetime.now(UTC),
            manage_url=links.manage(reader, 1),
            unsubscribe_url=links.unsubscribe(reader),
            archive_url=links.archive(reader),
            feedback_urls=[
                (
                    links.feedback(reader, card.canonical_id, 1),
                    links.feedback(reader, card.canonical_id, -1),
                )
                for _, card in items
            ],
            feed_url=links.feed(reader, 1),  # every link a real digest has counts toward its size
        )
        return self.renderer.render(data).html


@contextmanager
def _shortenings() -> Iterator[list[logging.LogRecord]]:
    """The renderer warns each time it shortens a digest's abstracts to fit under the clip;
    here those warnings are collected, not printed (the check's line says it)."""
    seen: list[logging.LogRecord] = []

    def collect(record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING:
            seen.append(record)
            return False
        return True

    logger = logging.getLogger("digest.render")
    logger.addFilter(collect)
    try:
        yield seen
    finally:
        logger.removeFilter(collect)


_TOPICS = ("large language models", "reasoning", "diffusion models", "graph neural networks")


def sample_cards() -> list[PaperCard]:
    """The bundled sample's papers, cleaned and merged as fetching does, the ones with the
    most text first."""
    from digest.ingest import merge_batch
    from digest.sources.sample import SampleSource

    records = SampleSource(SampleSettings()).fetch(cast("Fetcher", None), None)
    merged, _ = merge_batch(records)
    cards = [
        PaperCard(
            paper_id=number,
            canonical_id=paper.key,
            arxiv_id=paper.arxiv_id,
            title=paper.record.title,
            abstract=paper.record.abstract,
            authors=tuple(paper.record.authors),
            categories=tuple(paper.record.categories),
            upvotes=paper.record.upvotes,
            ai_summary=paper.record.ai_summary,
            github_repo=paper.record.github_repo,
            sources=tuple(paper.sources),
        )
        for number, paper in enumerate(merged, start=1)
    ]
    return sorted(cards, key=_text_size, reverse=True)


def largest_digest(
    cards: list[PaperCard], picks: int, trending: int
) -> list[tuple[RankedItem, PaperCard]]:
    """The first ``picks`` cards as chosen papers (each with reasons and highlights), the
    next ``trending`` as "also trending" ones."""
    reasons = tuple(Reason("phrase", topic) for topic in _TOPICS[:3])
    highlight = ("language", "model", "learning", "data")
    chosen = [
        (RankedItem(card.paper_id, 1.0, 1.0, reasons, "picks", highlight), card)
        for card in cards[:picks]
    ]
    chosen += [
        (
            RankedItem(
                card.paper_id, 0.5, 0.0, (Reason("trending", str(card.upvotes or 0)),), "trending"
            ),
            card,
        )
        for card in cards[picks : picks + trending]
    ]
    return chosen


def _text_size(card: PaperCard) -> int:
    return (
        len(card.title)
        + len(card.abstract)
        + len(card.ai_summary or "")
        + sum(len(name) + 2 for name in card.authors)
    )
