"""Parse arXiv's daily listing feeds from rss.arxiv.org, RSS 2.0 and Atom alike.

``/rss/<cats>`` is RSS 2.0 (``<rss><channel><item>``), ``/atom/<cats>`` is Atom
(``<feed><entry>``); both carry the same fields, told apart by the root element. Every item
of one feed shares the announce date. A feed with no items (weekends, holidays) is normal and
yields ``[]``; a bad archive name yields a feed whose title starts "Feed error for query" and
whose description holds the reason.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Collection
from datetime import date
from xml.etree.ElementTree import Element

from digest.config import ArxivRssSettings
from digest.errors import SourceError
from digest.sources.http import Fetcher
from digest.sources.records import PaperIn
from digest.sources.xml import (
    ARXIV,
    ATOM,
    DC,
    child_text,
    child_value,
    is_arxiv_id,
    local_date,
    parse_iso_local,
    parse_rfc822_local,
    parse_xml,
    q,
)

SOURCE = "arxiv_rss"
DEFAULT_ANNOUNCE_TYPES: tuple[str, ...] = ("new", "cross")
ERROR_TITLE_PREFIX = "Feed error for query"
OAI_PREFIX = "oai:arXiv.org:"

logger = logging.getLogger(__name__)

# "arXiv:2411.17700v1 Announce Type: new \nAbstract: ..." (note the space before the newline).
_DESCRIPTION_PREFIX = re.compile(
    r"\A\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[\w-]+)[ \t]*\r?\n?(?:Abstract:[ \t]?)?"
)
_ABS_LINK = re.compile(r"arxiv\.org/abs/(?P<id>\S+?)/?\Z")
_AND = re.compile(r"\s+and\s+")
_TRAILING_GROUP = re.compile(r"\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*\Z")


def parse_listing(
    body: bytes, announce_types: Collection[str] = DEFAULT_ANNOUNCE_TYPES
) -> list[PaperIn]:
    """Records for the items whose announce type is in ``announce_types``, in feed order.

    By default ``replace`` and ``replace-cross`` (new versions of old papers) are skipped.
    """
    root = parse_xml(body, SOURCE)
    if root.tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise SourceError(SOURCE, "RSS feed has no <channel>")
        _raise_for_error_feed(channel, "title", "description")
        feed_day = local_date(parse_rfc822_local(child_value(channel, "pubDate")))
        items = [_from_rss_item(item, feed_day) for item in channel.findall("item")]
    elif root.tag == q(ATOM, "feed"):
        _raise_for_error_feed(root, q(ATOM, "title"), q(ATOM, "subtitle"))
        items = [_from_atom_entry(entry) for entry in root.findall(q(ATOM, "entry"))]
    else:
        raise SourceError(SOURCE, f"not an RSS or Atom listing (root element {root.tag!r})")

    papers: list[PaperIn] = []
    skipped: Counter[str] = Counter()
    for index, paper in enumerate(items):
        if paper is None:
            logger.warning("arxiv_rss: skipped item #%d with no arXiv id or title", index)
        elif paper.announce_type in announce_types:
            papers.append(paper)
        else:
            skipped[paper.announce_type or "unknown"] += 1
    if skipped:
        logger.debug("arxiv_rss: skipped by announce type: %s", dict(skipped))
    return papers


def _raise_for_error_feed(container: Element, title_tag: str, message_tag: str) -> None:
    title = child_value(container, title_tag) or ""
    if title.startswith(ERROR_TITLE_PREFIX):
        raise SourceError(SOURCE, child_value(container, message_tag) or title)


def _from_rss_item(item: Element, feed_day: date | None) -> PaperIn | None:
    announced = local_date(parse_rfc822_local(child_value(item, "pubDate"))) or feed_day
    return _build(
        item,
        guid=child_value(item, "guid"),
        link=child_value(item, "link"),
        description=child_text(item, "description"),
        categories=[c for c in (_stripped(el) for el in item.findall("category")) if c],
        announced_on=announced,
        title_tag="title",
    )


def _from_atom_entry(entry: Element) -> PaperIn | None:
    link = None
    for el in entry.findall(q(ATOM, "link")):
        if el.get("rel", "alternate") == "alternate":
            link = el.get("href")
            break
    terms = [(el.get("term") or "").strip() for el in entry.findall(q(ATOM, "category"))]
    return _build(
        entry,
        guid=child_value(entry, q(ATOM, "id")),
        link=link,
        description=child_text(entry, q(ATOM, "summary")),
        categories=[t for t in terms if t],
        # <published> is the announce day at local midnight; <updated> is the build time.
        announced_on=local_date(parse_iso_local(child_value(entry, q(ATOM, "published")))),
        title_tag=q(ATOM, "title"),
    )


def _stripped(element: Element) -> str | None:
    text = element.text
    return text.strip() if text and text.strip() else None


def _build(
    element: Element,
    *,
    guid: str | None,
    link: str | None,
    description: str | None,
    categories: list[str],
    announced_on: date | None,
    title_tag: str,
) -> PaperIn | None:
    title = child_text(element, title_tag)
    description = description or ""
    prefix = _DESCRIPTION_PREFIX.match(description)

    arxiv_id = _id_from_guid(guid)
    if arxiv_id is None and prefix and is_arxiv_id(prefix["id"]):
        arxiv_id = prefix["id"]
    if arxiv_id is None and link:
        # The link has no version, but an unversioned id beats none.
        match = _ABS_LINK.search(link)
        if match and is_arxiv_id(match["id"]):
            arxiv_id = match["id"]
    if arxiv_id is None or not title or not title.strip():
        return None

    announce_type = child_value(element, q(ARXIV, "announce_type"))
    if announce_type is None and prefix:
        announce_type = prefix["type"]

    return PaperIn(
        source=SOURCE,
        title=title,
        abstract=description[prefix.end() :] if prefix else description,
        arxiv_id=arxiv_id,
        authors=split_creators(child_text(element, q(DC, "creator")) or ""),
        categories=list(dict.fromkeys(categories)),
        announced_on=announced_on,
        doi=child_value(element, q(ARXIV, "DOI")),
        journal_ref=child_value(element, q(ARXIV, "journal_reference")),
        announce_type=announce_type,
    )


def _id_from_guid(guid: str | None) -> str | None:
    if not guid:
        return None
    candidate = guid[len(OAI_PREFIX) :] if guid.startswith(OAI_PREFIX) else guid
    return candidate if is_arxiv_id(candidate) else None


def split_creators(text: str) -> list[str]:
    """Split ``dc:creator`` ("A, B (Affil), C and D") into names, in order.

    Commas and " and " inside parentheses belong to an affiliation and do not split. A
    trailing parenthesised group (the affiliation) is dropped from each name; TeX accents
    (``R\\'emy``, ``Przemys{\\l}aw``) are left for ingest.
    """
    parts: list[str] = []
    buffer: list[str] = []
    depth = 0
    index = 0
    while index < len(text):
        char = text[index]
        if depth == 0:
            joiner = _AND.match(text, index)
            if char == "," or joiner:
                parts.append("".join(buffer))
                buffer = []
                index = joiner.end() if joiner else index + 1
                continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        buffer.append(char)
        index += 1
    parts.append("".join(buffer))

    names: list[str] = []
    for part in parts:
        name = part.strip()
        while True:
            stripped = _TRAILING_GROUP.sub("", name)
            if stripped == name:
                break
            name = stripped.strip()
        # ", and C" leaves "and C" when the joiner follows a comma directly.
        if name.startswith("and "):
            name = name[4:].strip()
        if name:
            names.append(name)
    return names


class ArxivRssSource:
    """``{base_url}/rss/<cat>+<cat>``: the latest announcement of the configured categories."""

    name = SOURCE

    def __init__(self, settings: ArxivRssSettings) -> None:
        self.settings = settings

    def fetch(self, fetcher: Fetcher, day: date | None) -> list[PaperIn]:
        if day is not None:
            # The feed holds only the latest announcement; past days come from arxiv_api.
            logger.warning("arxiv_rss: the feed has only the latest listing; --date ignored")
        url = f"{self.settings.base_url.rstrip('/')}/rss/{'+'.join(self.settings.categories)}"
        result = fetcher.get(url, source=SOURCE, min_interval=self.settings.min_interval)
        if result.not_modified:
            return []
        return parse_listing(result.body, self.settings.announce_types)
