"""Safe XML parsing and the small helpers every feed parser shares.

Also home to the helpers the JSON source needs (the HTML check, dates, arXiv id
shapes), so each parser module stays about its own format.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DefusedET
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)

from digest.errors import SourceError

ATOM = "http://www.w3.org/2005/Atom"
ARXIV = "http://arxiv.org/schemas/atom"
OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"
DC = "http://purl.org/dc/elements/1.1/"

HTML_MESSAGE = "answered with an HTML page, not a feed"

_BOM = b"\xef\xbb\xbf"
_XML_DECL = re.compile(rb"<\?xml[^>]*\?>")

# New style 2104.12255 / 0808.0539 (4 or 5 digits after the dot), old style astro-ph/0601001
# or math.GT/0309136; an optional version either way.
ARXIV_ID_RE = re.compile(r"(?:\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?")


def q(namespace: str, tag: str) -> str:
    """ElementTree's ``{namespace}tag`` spelling."""
    return f"{{{namespace}}}{tag}"


def looks_like_html(body: bytes) -> bool:
    """True when a body served as a feed is really an HTML page (a login wall, a 5xx page)."""
    head = body[:512]
    # Skip any mix of BOM, whitespace and an XML declaration (XHTML error pages have one).
    while True:
        stripped = head.lstrip()
        if stripped.startswith(_BOM):
            stripped = stripped[len(_BOM) :]
        decl = _XML_DECL.match(stripped)
        if decl:
            stripped = stripped[decl.end() :]
        if stripped == head:
            break
        head = stripped
    lowered = head[:20].lower()
    return lowered.startswith((b"<!doctype html", b"<html"))


def reject_html(body: bytes, source: str) -> None:
    if looks_like_html(body):
        raise SourceError(source, HTML_MESSAGE)


def parse_xml(body: bytes, source: str) -> Element:
    """Parse untrusted XML: no DTDs, no entity declarations, no external references.

    Forbidding the DTD outright also stops entity expansion bombs before they start.
    """
    reject_html(body, source)
    try:
        return DefusedET.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except ParseError as exc:
        raise SourceError(source, f"malformed XML: {exc}") from exc
    except DefusedXmlException as exc:
        raise SourceError(source, _refused(exc)) from None


def _refused(exc: DefusedXmlException) -> str:
    """What a refused feed did, in words (defusedxml's own text is a Python repr). No feed
    needs these features, and each is how an XML attack starts."""
    if isinstance(exc, DTDForbidden):
        return "the feed declares a DTD, which is refused"
    if isinstance(exc, EntitiesForbidden):
        return f"the feed declares the entity {exc.name!r}, which is refused"
    if isinstance(exc, ExternalReferenceForbidden):
        where = exc.sysid or exc.pubid or "an outside resource"
        return f"the feed refers to {where}, which is refused"
    return f"the feed uses an XML feature that is refused ({type(exc).__name__})"


def element_text(element: Element | None) -> str | None:
    """All text inside ``element`` as the source gave it, or None when it is missing."""
    if element is None:
        return None
    return "".join(element.itertext())


def child_text(parent: Element, path: str) -> str | None:
    """Raw text of the first child at ``path`` (whitespace kept), None when absent."""
    return element_text(parent.find(path))


def child_value(parent: Element, path: str) -> str | None:
    """Stripped text of the first child at ``path``; None when absent or blank.

    For short values (ids, DOIs, names), where surrounding whitespace is only layout.
    """
    text = child_text(parent, path)
    if text is None:
        return None
    return text.strip() or None


def _as_utc(value: datetime) -> datetime:
    # A stamp without an offset is taken as UTC, the only zone these APIs use.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso_local(text: str | None) -> datetime | None:
    """ISO 8601 (``Z``, microseconds, offsets) keeping the stamp's own offset; None if bad."""
    if not text or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_iso(text: str | None) -> datetime | None:
    """ISO 8601 as an aware UTC datetime; None when missing or unreadable."""
    value = parse_iso_local(text)
    return None if value is None else _as_utc(value)


def parse_rfc822_local(text: str | None) -> datetime | None:
    """RFC 822 (``Thu, 28 Nov 2024 00:00:00 -0500``) keeping its offset; None if bad."""
    if not text or not text.strip():
        return None
    try:
        value = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_rfc822(text: str | None) -> datetime | None:
    """RFC 822 as an aware UTC datetime; None when missing or unreadable."""
    value = parse_rfc822_local(text)
    return None if value is None else _as_utc(value)


def local_date(value: datetime | None) -> date | None:
    """The calendar day in the stamp's own offset.

    arXiv writes announce days as local midnight (``00:00:00 -0500``); in UTC that is
    still the same day, but taking the local date does not depend on that.
    """
    return None if value is None else value.date()


def is_arxiv_id(text: str) -> bool:
    return ARXIV_ID_RE.fullmatch(text) is not None
