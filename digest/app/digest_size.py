"""The html-size check of `digest doctor`: does the largest digest fit under Gmail's clip?

Gmail shows an HTML part over 102 KB only up to there, with "[Message clipped]" and a link;
what is cut off includes the footer's unsubscribe link. The renderer keeps every mail under
the clip: it shortens abstracts (never to nothing), and when that is not enough moves the
last papers behind a "view in the browser" line. The check renders, with the project's
renderer and templates and without the database, digests of the bundled sample's papers
with the most text: the default size (``subscribers.default_max_papers``) and the largest a
reader may choose, each with the "also trending" papers, and says what fitting cost. It
fails only when even the frame of a mail (header and footer, no paper) is over the clip.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from digest.app.doctor import Check, Doctor
from digest.app.sending import make_renderer
from digest.config import SampleSettings
from digest.domain.items import PaperCard, RankedItem, Reason, message_id
from digest.domain.schedules import MAX_PAPERS
from digest.domain.tokens import SignedLinks, Tokens
from digest.render import GMAIL_CLIP_BYTES, DigestInput, Rendered

if TYPE_CHECKING:
    from digest.sources.http import Fetcher


def check_html_size(doctor: Doctor) -> list[Check]:
    settings = doctor.settings
    measure = Measure(doctor)
    default, trending = settings.subscribers.default_max_papers, settings.ranking.also_trending
    clip = f"Gmail's {GMAIL_CLIP_BYTES // 1024} KB clip"
    usual = f"{default} papers + {trending} trending (the default size): {measure.shown(default)}"
    largest = (
        f"{MAX_PAPERS} + {trending} (the most a reader may choose): {measure.shown(MAX_PAPERS)}"
    )
    if measure.size(default) > GMAIL_CLIP_BYTES:
        return [
            Check(
                "html-size",
                "fail",
                f"{usual}, over {clip} even with the papers moved out: Gmail hides the end, "
                "the unsubscribe link with it",
                "trim the email templates (paths.templates_dir)",
            )
        ]
    if measure.get(default).moved:
        return [
            Check(
                "html-size",
                "warn",
                f"{usual}; {largest}",
                "a digest of the default size should fit whole: trim the email templates "
                "(paths.templates_dir) or lower subscribers.default_max_papers",
            )
        ]
    return [Check("html-size", "ok", f"{usual}; {largest}; every mail under {clip}")]


class Measure:
    """Renders the sample's longest papers as digests of n papers, and remembers them."""

    def __init__(self, doctor: Doctor) -> None:
        self.settings = doctor.settings
        self.renderer = make_renderer(self.settings)
        self.trending = self.settings.ranking.also_trending
        self.cards = sample_cards()
        self.rendered: dict[int, Rendered] = {}

    def get(self, picks: int) -> Rendered:
        if picks not in self.rendered:
            self.rendered[picks] = self._render(picks)
        return self.rendered[picks]

    def size(self, picks: int) -> int:
        return self.get(picks).html_size

    def shown(self, picks: int) -> str:
        found = self.get(picks)
        notes = []
        if found.abstract_chars < self.settings.mail.abstract_chars:
            notes.append(f"abstracts shortened to {found.abstract_chars} characters")
        if found.moved:
            total = picks + self.trending
            notes.append(
                f"{total - found.moved} of {total} papers in the mail, the last {found.moved} "
                'behind its "view in the browser" link'
            )
        note = f" ({'; '.join(notes)})" if notes else ""
        return f"{self.size(picks) / 1024:.1f} KB of HTML{note}"

    def _render(self, picks: int) -> Rendered:
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
            feedback_urls=links.feedback(secrets.token_hex(16), len(items)),  # a public id
            feed_url=links.feed(reader, 1),  # every link a real digest has counts toward its size
        )
        return self.renderer.render(data)


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
