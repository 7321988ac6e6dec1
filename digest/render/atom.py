"""A reader's private Atom feed (RFC 4287): one entry per paper of their recent digests.

Pure: data in, bytes out. Each entry shows a paper as the reader's mail showed it: the same
cleaned title, link, authors, trimmed abstract and reasons (:func:`digest.render.paper_view`
and the reasons' formatter), so the feed and the mail never disagree.

Feed text is hostile: the XML is built with ElementTree (which escapes ``<``, ``&`` and
quotes), and characters XML 1.0 forbids (most controls, lone surrogates, U+FFFE/FFFF),
which ElementTree would write as they are, are removed first from every value.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import escape

from digest.config import MailSettings
from digest.domain.items import PaperCard, RankedItem
from digest.render import paper_view
from digest.render.text import format_reasons, one_line

ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/atom+xml; charset=utf-8"
MAX_AUTHORS = 50  # per entry; a collaboration paper can list thousands

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 does not allow at all."""
    return _NOT_XML.sub("", text)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    entry_id: str  # stable per reader and paper (a tag: URI)
    sent_at: datetime  # aware: when the digest carrying the paper was sent
    item: RankedItem
    card: PaperCard
    digest_url: str | None = None  # the digest's "view in browser" page


@dataclass(frozen=True, slots=True)
class FeedInput:
    feed_id: str
    title: str
    author: str
    self_url: str
    alternate_url: str
    updated: datetime  # aware; the newest entry's, or a fixed moment when there is none
    entries: Sequence[FeedEntry]


def stamp(moment: datetime) -> str:
    """RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, {k: xml_safe(v) for k, v in attrs.items()})
    if text is not None:
        child.text = xml_safe(text)
    return child


def render_atom(data: FeedInput, settings: MailSettings) -> bytes:
    """The feed's document, UTF-8 with an XML declaration."""
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _add(feed, "id", data.feed_id)
    _add(feed, "title", one_line(data.title, 200))
    _add(feed, "updated", stamp(data.updated))
    author = _add(feed, "author")
    _add(author, "name", one_line(data.author, 120) or "Digest")
    _add(feed, "link", rel="self", type="application/atom+xml", href=data.self_url)
    _add(feed, "link", rel="alternate", type="text/html", href=data.alternate_url)
    _add(feed, "generator", "digest")
    for entry in data.entries:
        _entry(feed, entry, settings)
    ET.indent(feed, space="  ")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def _entry(feed: ET.Element, entry: FeedEntry, settings: MailSettings) -> None:
    paper = paper_view(entry.card, settings.abstract_chars, settings.authors_shown)
    reasons = format_reasons(entry.item.reasons)
    node = _add(feed, "entry")
    _add(node, "id", entry.entry_id)
    _add(node, "title", paper.title)
    if paper.abs_url:
        _add(node, "link", rel="alternate", type="text/html", href=paper.abs_url)
    if entry.digest_url:
        _add(node, "link", rel="related", type="text/html", href=entry.digest_url)
    when = stamp(entry.sent_at)
    _add(node, "published", when)
    _add(node, "updated", when)
    names = [one_line(name, 120) for name in entry.card.authors[:MAX_AUTHORS]]
    for name in [n for n in names if n]:
        _add(_add(node, "author"), "name", name)
    if paper.category:
        _add(node, "category", term=paper.category)
    if paper.abstract:
        _add(node, "summary", paper.abstract, type="text")
    links = [(link.label, link.url) for link in paper.links]
    html = _content_html(paper.authors, paper.tldr, paper.abstract, reasons, links)
    _add(node, "content", html, type="html")


def _content_html(
    authors: str, tldr: str | None, abstract: str, reasons: str, links: Sequence[tuple[str, str]]
) -> str:
    """The card as small HTML (escaped here, then escaped again as XML text by ElementTree,
    as ``type="html"`` content is)."""
    parts = [f"<p>{escape(authors)}</p>"]
    if tldr:
        parts.append(f"<p><em>{escape(tldr)}</em></p>")
    if abstract:
        parts.append(f"<p>{escape(abstract)}</p>")
    if reasons:
        parts.append(f"<p>Why you got it: {escape(reasons)}</p>")
    anchors = [f'<a href="{escape(url)}">{escape(label)}</a>' for label, url in links]
    if anchors:
        parts.append(f"<p>{' · '.join(anchors)}</p>")
    return "".join(parts)
