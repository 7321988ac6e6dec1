"""Parse arXiv API responses (``export.arxiv.org/api/query``, Atom 1.0).

Both the current layout and the legacy one (2016-2024: namespaces re-declared on each
element, different element order, hard-wrapped titles and abstracts) are read by name,
never by position. A request the API rejects (HTTP 400) still comes back as a valid feed
with one "Error" entry whose ``<id>`` holds ``/api/errors``; that becomes a
``SourceError``, never a paper. Ids the API does not recognise are dropped silently by the
server, so callers must not expect one paper per id asked for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from xml.etree.ElementTree import Element

from digest.config import ArxivApiSettings
from digest.errors import SourceError
from digest.sources.http import Fetcher
from digest.sources.records import PaperIn
from digest.sources.xml import (
    ARXIV,
    ATOM,
    OPENSEARCH,
    child_text,
    child_value,
    parse_iso,
    parse_xml,
    q,
)

SOURCE = "arxiv_api"

logger = logging.getLogger(__name__)

# http://arxiv.org/abs/2104.12255v1, http://arxiv.org/abs/astro-ph/0601001v1
_ABS_ID = re.compile(r"/abs/(?P<id>[^?#\s]+?)/?\Z")


@dataclass(slots=True)
class ApiPage:
    """One page of results plus the paging numbers the feed reported."""

    papers: list[PaperIn]
    total_results: int
    start_index: int
    items_per_page: int


def parse_api_feed(body: bytes) -> ApiPage:
    root = parse_xml(body, SOURCE)
    if root.tag != q(ATOM, "feed"):
        raise SourceError(SOURCE, f"not an Atom feed (root element {root.tag!r})")

    entries = root.findall(q(ATOM, "entry"))
    for entry in entries:
        entry_id = child_value(entry, q(ATOM, "id")) or ""
        if "/api/errors" in entry_id:
            message = child_value(entry, q(ATOM, "summary")) or entry_id
            raise SourceError(SOURCE, message)

    papers: list[PaperIn] = []
    for index, entry in enumerate(entries):
        paper = _parse_entry(entry)
        if paper is None:
            logger.warning("arxiv_api: skipped entry #%d with no usable id or title", index)
            continue
        papers.append(paper)

    # The error feed shows why these can't be trusted blindly; missing ones get safe defaults.
    start_index = _opensearch_int(root, "startIndex", 0)
    return ApiPage(
        papers=papers,
        total_results=_opensearch_int(root, "totalResults", start_index + len(papers)),
        start_index=start_index,
        items_per_page=_opensearch_int(root, "itemsPerPage", len(entries)),
    )


def _opensearch_int(root: Element, name: str, default: int) -> int:
    text = child_value(root, q(OPENSEARCH, name))
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value >= 0 else default


def _parse_entry(entry: Element) -> PaperIn | None:
    match = _ABS_ID.search(child_value(entry, q(ATOM, "id")) or "")
    title = child_text(entry, q(ATOM, "title"))
    # A title of "0" is a real title; only a missing or blank one disqualifies the entry.
    if match is None or title is None or not title.strip():
        return None

    authors: list[str] = []
    for author in entry.findall(q(ATOM, "author")):
        name = child_value(author, q(ATOM, "name"))
        if name:
            authors.append(name)

    # The primary category first, then the others in feed order without repeating it.
    categories: list[str] = []
    primary = entry.find(q(ARXIV, "primary_category"))
    for element in [primary, *entry.findall(q(ATOM, "category"))]:
        term = (element.get("term") or "").strip() if element is not None else ""
        if term and term not in categories:
            categories.append(term)

    return PaperIn(
        source=SOURCE,
        title=title,
        abstract=child_text(entry, q(ATOM, "summary")) or "",
        arxiv_id=match["id"],
        authors=authors,
        categories=categories,
        published_at=parse_iso(child_value(entry, q(ATOM, "published"))),
        updated_at=parse_iso(child_value(entry, q(ATOM, "updated"))),
        doi=child_value(entry, q(ARXIV, "doi")),
        journal_ref=child_value(entry, q(ARXIV, "journal_ref")),
        comment=child_value(entry, q(ARXIV, "comment")),
    )


class ArxivApiSource:
    """``export.arxiv.org/api/query`` for a query (newest first) or an id list, paged."""

    name = SOURCE

    def __init__(self, settings: ArxivApiSettings) -> None:
        self.settings = settings

    def fetch(self, fetcher: Fetcher, day: date | None) -> list[PaperIn]:
        s = self.settings
        params: dict[str, str | int] = {"sortBy": "submittedDate", "sortOrder": "descending"}
        if s.id_list:
            params["id_list"] = ",".join(s.id_list)
        else:
            query = s.query
            if day is not None:
                stamp = day.strftime("%Y%m%d")
                query = f"({query}) AND submittedDate:[{stamp}0000 TO {stamp}2359]"
            params["search_query"] = query
        papers: list[PaperIn] = []
        start = 0
        while start < s.max_results:
            size = min(s.page_size, s.max_results - start)
            result = fetcher.get(
                s.base_url,
                source=SOURCE,
                params={**params, "start": start, "max_results": size},
                min_interval=s.min_interval,
                conditional=False,  # a query's answer changes with every new submission
                ok_statuses=frozenset({200, 400}),  # a 400 explains itself in an Atom entry
            )
            page = parse_api_feed(result.body)
            if result.status != 200:
                raise SourceError(SOURCE, f"HTTP {result.status} with no error entry")
            papers.extend(page.papers)
            start += size
            if not page.papers or start >= page.total_results:
                break
        return papers
