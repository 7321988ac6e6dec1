"""Parse Hugging Face's ``GET /api/daily_papers?date=YYYY-MM-DD`` (a JSON array).

Two shapes are in the wild: 2024 (top level only ``paper``, ``publishedAt``, ``title``,
``mediaUrl``, ``numComments``; ``paper.title``/``paper.summary`` hard-wrapped) and the
current one (adds ``summary``, ``submittedBy``, ``paper.submittedOnDailyAt``,
``paper.ai_summary``, ``paper.githubRepo``...). Only ``paper.*`` plus the top-level title and
dates are read, so both work.

An entry whose ``paper.id`` is not an arXiv id is kept with ``arxiv_id=None`` when it has a
title: it is still a paper people upvoted, and ingest decides whether it can be linked.
Entries that are not objects or have no title are skipped with a warning.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

from digest.config import HuggingFaceSettings
from digest.errors import SourceError
from digest.sources.http import Fetcher
from digest.sources.records import PaperIn
from digest.sources.xml import is_arxiv_id, parse_iso, reject_html

SOURCE = "huggingface"
GITHUB_PREFIX = "https://github.com/"

logger = logging.getLogger(__name__)


def parse_daily_papers(body: bytes, day: date | None = None) -> list[PaperIn]:
    """Turn one daily-papers response into records, in the order Hugging Face listed them.

    ``day`` is the date that was asked for; when given it is every paper's
    ``announced_on``, otherwise the entry's own dates decide.
    """
    reject_html(body, SOURCE)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise SourceError(SOURCE, f"malformed JSON: {exc}") from exc

    if not isinstance(data, list):
        if isinstance(data, dict) and "error" in data:
            raise SourceError(SOURCE, f"answered with an error: {data['error']}")
        raise SourceError(SOURCE, f"expected a JSON list of papers, got {type(data).__name__}")

    papers: list[PaperIn] = []
    for index, entry in enumerate(data):
        paper = _parse_entry(entry, day)
        if paper is None:
            logger.warning("huggingface: skipped malformed daily-papers entry #%d", index)
            continue
        papers.append(paper)
    return papers


def _str(value: Any) -> str | None:
    """A non-blank string, else None (JSON may carry null, numbers or "")."""
    if isinstance(value, str) and value.strip():
        return value
    return None


def _parse_entry(entry: Any, day: date | None) -> PaperIn | None:
    if not isinstance(entry, dict):
        return None
    paper = entry.get("paper")
    if not isinstance(paper, dict):
        paper = {}

    # The top-level title is unwrapped in the 2024 shape; paper.title keeps arXiv's wraps.
    title = _str(entry.get("title")) or _str(paper.get("title"))
    if title is None:
        return None

    raw_id = _str(paper.get("id"))
    arxiv_id = raw_id.strip() if raw_id and is_arxiv_id(raw_id.strip()) else None
    if arxiv_id is None:
        logger.info("huggingface: paper %r has no arXiv id (%r)", title[:60], raw_id)

    abstract = _str(paper.get("summary")) or _str(entry.get("summary")) or ""

    authors: list[str] = []
    raw_authors = paper.get("authors")
    if isinstance(raw_authors, list):
        for author in raw_authors:
            # Hidden authors are still authors of the paper; keep every name, in order.
            name = _str(author.get("name")) if isinstance(author, dict) else None
            if name is not None:
                authors.append(name.strip())

    upvotes = paper.get("upvotes")
    if not isinstance(upvotes, int) or isinstance(upvotes, bool):
        upvotes = None

    repo = _str(paper.get("githubRepo"))
    repo = repo.strip() if repo else None
    # Only a real GitHub https link is worth showing; anything else is dropped.
    github_repo = (
        repo if repo and repo.startswith(GITHUB_PREFIX) and len(repo) > len(GITHUB_PREFIX) else None
    )

    published_at = parse_iso(_str(paper.get("publishedAt")))
    announced_on = day or _announced_on(entry, paper)

    return PaperIn(
        source=SOURCE,
        title=title,
        abstract=abstract,
        arxiv_id=arxiv_id,
        authors=authors,
        published_at=published_at,
        announced_on=announced_on,
        upvotes=upvotes,
        ai_summary=_str(paper.get("ai_summary")),
        github_repo=github_repo,
    )


def _announced_on(entry: dict[str, Any], paper: dict[str, Any]) -> date | None:
    # submittedOnDailyAt is the digest day (midnight UTC); the 2024 shape lacks it, and there
    # the top-level publishedAt is the posting time on that day (UTC).
    for stamp in (paper.get("submittedOnDailyAt"), entry.get("publishedAt")):
        value = parse_iso(_str(stamp))
        if value is not None:
            return value.date()
    return None


class HuggingFaceSource:
    """``{base_url}/api/daily_papers?date=D``: the day's papers with upvotes and TL;DRs."""

    name = SOURCE

    def __init__(self, settings: HuggingFaceSettings) -> None:
        self.settings = settings

    def fetch(self, fetcher: Fetcher, day: date | None) -> list[PaperIn]:
        params = {"date": day.isoformat()} if day else None
        result = fetcher.get(
            f"{self.settings.base_url.rstrip('/')}/api/daily_papers",
            source=SOURCE,
            params=params,
            min_interval=self.settings.min_interval,
        )
        if result.not_modified:
            return []
        return parse_daily_papers(result.body, day)
