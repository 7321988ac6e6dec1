"""The bundled sample listing: works with no network, for the demo and the tests.

It holds the 251-paper listing-page corpus (titles and abstracts, no ids) and a few real
recorded Hugging Face and arXiv responses, read through the same parsers as the live
sources, so the demo has real ids, authors, categories and upvotes too.
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path

from digest.config import SampleSettings
from digest.errors import SourceError
from digest.sources.arxiv_api import parse_api_feed
from digest.sources.arxiv_rss import parse_listing
from digest.sources.http import Fetcher
from digest.sources.huggingface import parse_daily_papers
from digest.sources.records import PaperIn

NAME = "sample"
_DATA = resources.files("digest") / "data" / "sample"


class SampleSource:
    name = NAME

    def __init__(self, settings: SampleSettings) -> None:
        self.settings = settings

    def fetch(self, fetcher: Fetcher, day: date | None) -> list[PaperIn]:
        if self.settings.listing:
            path = Path(self.settings.listing)
            try:
                body = path.read_bytes()
            except OSError as exc:
                raise SourceError(NAME, f"cannot read {path}: {exc.strerror}") from None
            return read_listing(body, str(path))
        records = read_listing((_DATA / "listing.jsonl").read_bytes(), "listing.jsonl")
        hf_day = date(2026, 8, 13)
        records += parse_daily_papers(
            (_DATA / "huggingface_daily_papers_2026-08-13.json").read_bytes(), hf_day
        )
        records += parse_listing((_DATA / "arxiv_rss_2026-09-24.xml").read_bytes())
        records += parse_api_feed((_DATA / "arxiv_api_query_testing.xml").read_bytes()).papers
        return records


def read_listing(body: bytes, where: str) -> list[PaperIn]:
    """Parse a JSONL listing of ``{"title", "abstract"}`` objects (other keys ignored)."""
    records = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(NAME, f"{where}: not UTF-8 text ({exc.reason})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(NAME, f"{where} line {number}: malformed JSON: {exc.msg}") from None
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            raise SourceError(NAME, f"{where} line {number}: expected an object with a title")
        abstract = item.get("abstract")
        records.append(
            PaperIn(
                source=NAME,
                title=item["title"],
                abstract=abstract if isinstance(abstract, str) else "",
                arxiv_id=item.get("arxiv_id") if isinstance(item.get("arxiv_id"), str) else None,
            )
        )
    return records
