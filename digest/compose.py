"""Turn stored rows into the plain data ranking and rendering take, and back.

The only place that knows both the tables and the stage types, so ranking and rendering
stay pure and the outbox stays ignorant of papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from digest.domain.items import PaperCard, RankedItem, Reason
from digest.models import DeliveryItem, Paper


def paper_card(paper: Paper) -> PaperCard:
    return PaperCard(
        paper_id=paper.id,
        canonical_id=paper.canonical_id,
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        abstract=paper.abstract,
        authors=tuple(paper.authors),
        categories=tuple(paper.categories),
        upvotes=paper.hf_upvotes,
        ai_summary=paper.ai_summary,
        github_repo=paper.github_repo,
        sources=tuple(paper.sources),
        first_seen_at=paper.first_seen_at,
        announced_on=paper.announced_on,
    )


def item_rows(delivery_id: int, ranked: Sequence[RankedItem]) -> list[dict[str, object]]:
    """``delivery_items`` rows for a delivery's chosen papers, in order."""
    return [
        {
            "delivery_id": delivery_id,
            "paper_id": item.paper_id,
            "position": position,
            "section": item.section,
            "score": float(item.score),
            "relevance": float(item.relevance),
            "reasons": [[reason.kind, reason.label] for reason in item.reasons],
            "highlight": list(item.highlight),
        }
        for position, item in enumerate(ranked, start=1)
    ]


def ranked_item(row: DeliveryItem | Any) -> RankedItem:
    """From a ``delivery_items`` row, or any row with its columns (a Core select's)."""
    return RankedItem(
        paper_id=row.paper_id,
        score=row.score,
        relevance=row.relevance,
        reasons=tuple(Reason(kind, label) for kind, label in row.reasons),
        section="trending" if row.section == "trending" else "picks",
        highlight=tuple(row.highlight),
    )


def message_id(delivery_public_id: str, from_address: str) -> str:
    """Derived from the delivery, so a resend after a crash is the same message."""
    domain = from_address.rpartition("@")[2] or "localhost"
    return f"<digest.{delivery_public_id}@{domain}>"


def outbox_name(local_date: date, email: str, delivery_public_id: str) -> str:
    return f"{local_date.isoformat()}_{email}_{delivery_public_id[:8]}"
