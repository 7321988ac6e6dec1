"""The plain record every source returns; sources know nothing of the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(slots=True)
class PaperIn:
    """One paper as one source reported it, before cleaning and merging.

    ``arxiv_id`` may carry a version (``2104.12255v1``) or be an old-style id
    (``astro-ph/0601001v1``); ingest canonicalises it. Text fields are as the source gave
    them (after XML/JSON decoding); ingest cleans them once.
    """

    source: str
    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # primary first when known
    published_at: datetime | None = None  # first version's submission time
    updated_at: datetime | None = None  # this version's time
    announced_on: date | None = None  # the listing day (arXiv announce / HF daily date)
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    upvotes: int | None = None  # Hugging Face upvotes
    ai_summary: str | None = None  # Hugging Face one-line TL;DR
    github_repo: str | None = None
    announce_type: str | None = None  # arXiv listing: new, cross, replace, replace-cross
