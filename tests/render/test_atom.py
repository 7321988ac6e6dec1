"""The Atom renderer alone: RFC 4287's required elements, cards as the mail shows them,
and well-formed XML whatever the feed text holds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from digest.config import MailSettings
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.render import paper_view
from digest.render.atom import FeedEntry, FeedInput, render_atom, xml_safe

A = "{http://www.w3.org/2005/Atom}"
SENT = datetime(2026, 9, 24, 7, 0, 12, tzinfo=UTC)
SETTINGS = MailSettings()


def card(n: int, title: str, **more: object) -> PaperCard:
    fields: dict[str, object] = {
        "paper_id": n,
        "canonical_id": f"2609.{n:05d}",
        "arxiv_id": f"2609.{n:05d}",
        "title": title,
        "abstract": "We study things. " * 80,
        "authors": ("Ada Lovelace", "Alan Turing"),
        "categories": ("cs.LG",),
    }
    fields.update(more)
    return PaperCard(**fields)  # type: ignore[arg-type]


def item(n: int, *reasons: Reason) -> RankedItem:
    return RankedItem(n, 2.0, 1.5, reasons or (Reason("term", "agents"),), "picks", ())


def feed_of(*cards: PaperCard, reasons: tuple[Reason, ...] = ()) -> FeedInput:
    return FeedInput(
        feed_id="tag:digest.example.org,2026:feed/abc",
        title="Papers: your papers",
        author="Papers",
        self_url="https://digest.example.org/feed/t.atom",
        alternate_url="https://digest.example.org/",
        updated=SENT,
        entries=[
            FeedEntry(
                f"tag:digest.example.org,2026:paper/abc/{c.canonical_id}",
                SENT,
                item(c.paper_id, *reasons),
                c,
            )
            for c in cards
        ],
    )


def test_required_elements_and_the_mails_card() -> None:
    one = card(1, "Agents that plan")
    body = render_atom(feed_of(one), SETTINGS)
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    feed = ET.fromstring(body)
    assert feed.tag == f"{A}feed"
    assert feed.findtext(f"{A}id") == "tag:digest.example.org,2026:feed/abc"
    assert feed.findtext(f"{A}updated") == "2026-09-24T07:00:12Z"
    assert feed.findtext(f"{A}author/{A}name") == "Papers"
    rels = {link.get("rel"): link.get("href") for link in feed.findall(f"{A}link")}
    assert rels == {
        "self": "https://digest.example.org/feed/t.atom",
        "alternate": "https://digest.example.org/",
    }
    [entry] = feed.findall(f"{A}entry")
    view = paper_view(one, SETTINGS.abstract_chars, SETTINGS.authors_shown)
    assert entry.findtext(f"{A}title") == view.title
    assert entry.find(f"{A}link[@rel='alternate']").get("href") == view.abs_url  # type: ignore[union-attr]
    assert entry.findtext(f"{A}summary") == view.abstract  # trimmed as the mail trims it
    assert view.abstract.endswith("…") and len(view.abstract) < len(one.abstract)
    assert (
        entry.findtext(f"{A}published") == entry.findtext(f"{A}updated") == "2026-09-24T07:00:12Z"
    )
    assert [a.findtext(f"{A}name") for a in entry.findall(f"{A}author")] == list(one.authors)
    assert "Why you got it: Matched agents" in (entry.findtext(f"{A}content") or "")


def test_same_input_same_bytes_and_an_empty_feed_is_valid() -> None:
    assert render_atom(feed_of(card(1, "x")), SETTINGS) == render_atom(
        feed_of(card(1, "x")), SETTINGS
    )
    empty = ET.fromstring(render_atom(feed_of(), SETTINGS))
    assert empty.findall(f"{A}entry") == [] and empty.findtext(f"{A}author/{A}name")


def test_hostile_text_gives_well_formed_xml() -> None:
    hostile = '<script>&"\x01\x08\ud800\ufffe]]>'
    bad = card(
        2,
        hostile + " title",
        abstract=hostile + " abstract",
        authors=(hostile, "Eve"),
        categories=(hostile,),
        ai_summary=hostile,
    )
    body = render_atom(feed_of(bad, reasons=(Reason("term", hostile),)), SETTINGS)
    feed = ET.fromstring(body)  # raises when ill-formed
    [entry] = feed.findall(f"{A}entry")
    assert entry.findtext(f"{A}title", "").startswith('<script>&"')
    assert b"<script>" not in body and b"\x01" not in body and b"\x08" not in body
    assert "\ufffe" not in body.decode()


def test_xml_safe_keeps_what_xml_allows() -> None:
    assert xml_safe("a\tb\nc\rd é 𝔸 \x00\x1f\ufffe\uffff") == "a\tb\nc\rd é 𝔸 "
