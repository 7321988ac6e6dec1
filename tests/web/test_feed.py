"""A reader's private Atom feed, through the real app: the link in the sent mail's footer
answers with their digest's papers, polls are answered 304, and the link stops working when
the reader signs out everywhere (410), unsubscribes (410) or is deleted (410)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import unescape

import pytest
from sqlalchemy import select
from web_support import BASE, Harness

from digest.models import DeliveryItem, Paper

ATOM = "{http://www.w3.org/2005/Atom}"


def send_digest(web: Harness, address: str) -> str:
    """Plan, rank and send ``address``'s digest over SMTP; the feed path in its footer."""
    assert web.send_digests() >= 1
    [*_, mail] = web.mails_to(address)
    html = mail.get_body(("html",)).get_content()
    found = re.search(
        r'href="' + re.escape(BASE) + r'(/feed/[^"]+)"[^>]*>Subscribe in a feed', html
    )
    assert found, "no feed link in the HTML footer"
    path = found.group(1)
    assert f"{BASE}{path}" in mail.get_body(("plain",)).get_content()
    return path


def mailed_html(web: Harness, address: str) -> str:
    [*_, mail] = web.mails_to(address)
    return str(mail.get_body(("html",)).get_content())


@pytest.fixture
def ada(web: Harness) -> str:
    web.ingest_sample()
    web.add("ada@example.org", include=["language model"])
    return send_digest(web, "ada@example.org")


def test_the_footer_link_serves_the_digest_as_valid_atom(web: Harness, ada: str) -> None:
    client = web.client()
    answer = client.get(ada)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert "private" in answer.headers["cache-control"]
    feed = ET.fromstring(answer.content)
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated", "author/" + ATOM + "name"):
        assert (feed.findtext(ATOM + required) or "").strip(), required
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    assert links["self"] == f"{BASE}{ada}" and links["alternate"] == f"{BASE}/"
    token = ada.removeprefix("/feed/").removesuffix(".atom")
    assert token not in feed.findtext(f"{ATOM}id", "")

    entries = feed.findall(f"{ATOM}entry")
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    html = mailed_html(web, "ada@example.org")
    # Highlights wrap words in tags: drop tags without a space in their place.
    shown = " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())
    cards = html.count('class="fb-link"') // 2  # each card's "more" and "fewer" links
    assert titles and len(titles) == cards
    # The mail's titles, in the mail's order.
    places = [shown.find(title or "?") for title in titles]
    assert -1 not in places and places == sorted(places)
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == len(ids)
    person = web.subscriber("ada@example.org")
    assert person is not None
    for entry, entry_id in zip(entries, ids, strict=True):
        assert entry_id and entry_id.startswith("tag:digest.example.org,")
        assert person.public_id in entry_id and token not in entry_id
        assert entry.findtext(f"{ATOM}published") == entry.findtext(f"{ATOM}updated")
        assert entry.findtext(f"{ATOM}updated") == feed.findtext(f"{ATOM}updated")
        link = entry.find(f"{ATOM}link[@rel='alternate']")
        assert link is not None and f'href="{link.get("href")}"' in unescape(html)
        assert "Why you got it:" in (entry.findtext(f"{ATOM}content") or "")
    # The same ids (and bytes) on the next poll.
    again = ET.fromstring(client.get(ada).content)
    assert [e.findtext(f"{ATOM}id") for e in again.findall(f"{ATOM}entry")] == ids


def test_polls_with_the_etag_get_304(web: Harness, ada: str) -> None:
    client = web.client()
    first = client.get(ada)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["last-modified"].endswith("GMT")
    again = client.get(ada, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = client.get(ada, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content
    since = client.get(ada, headers={"If-Modified-Since": first.headers["last-modified"]})
    assert since.status_code == 304


def test_signing_out_everywhere_revokes_the_feed(web: Harness, ada: str) -> None:
    person = web.subscriber("ada@example.org")
    assert person is not None
    client = web.client()
    path = web.manage_path(person)
    page = client.get(path)
    assert 'href="' + BASE + ada + '"' in page.text  # the preferences page shows it too
    assert client.submit(f"{path}/signout", {}, page=path).status_code == 200
    gone = client.get(ada)
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("text/plain")
    assert "revoked" in gone.text
    fresh = web.last_link("ada@example.org", "/manage/")
    new_feed = re.search(re.escape(BASE) + r'(/feed/[^"]+\.atom)', client.get(fresh).text)
    assert new_feed and new_feed.group(1) != ada
    assert client.get(new_feed.group(1)).status_code == 200


def test_an_unsubscribed_readers_feed_is_gone(web: Harness, ada: str) -> None:
    person = web.subscriber("ada@example.org")
    assert person is not None
    client = web.client()
    assert client.post(web.unsubscribe_path(person)).status_code == 200
    gone = client.get(ada)
    assert gone.status_code == 410 and "unsubscribed" in gone.text


def test_a_deleted_readers_feed_is_gone(web: Harness, ada: str) -> None:
    person = web.subscriber("ada@example.org")
    assert person is not None
    client = web.client()
    path = web.manage_path(person)
    done = client.submit(f"{path}/delete", {"confirm_delete": "yes"}, page=path)
    assert done.status_code == 200
    gone = client.get(ada)
    assert gone.status_code == 410 and "deleted" in gone.text


@pytest.mark.parametrize(
    "path",
    [
        "/feed/garbage.atom",
        "/feed/WyJhYmMiLDFd.Zm9v.atom",
        "/feed/" + "x" * 2000 + ".atom",
    ],
)
def test_garbage_is_404(web: Harness, path: str) -> None:
    answer = web.client().get(path)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/plain")


def test_a_token_of_another_purpose_is_404(web: Harness) -> None:
    person = web.add("ada@example.org")
    manage = web.tokens.make("manage", person.public_id, person.token_version)
    assert web.client().get(f"/feed/{manage}.atom").status_code == 404


def test_a_hostile_title_still_gives_well_formed_xml(web: Harness, ada: str) -> None:
    hostile = '<script>&"\x01\ufffe</script> ]]> x'
    with web.store.transaction() as session:
        first = session.scalar(select(DeliveryItem.paper_id).order_by(DeliveryItem.position))
        paper = session.get(Paper, first)
        assert paper is not None
        paper.title = hostile
        paper.authors = ["Eve <eve@x>", "\x07Mallory & co"]
        paper.abstract = "a < b && c > d \x0b" * 5
    answer = web.client().get(ada)
    assert answer.status_code == 200
    feed = ET.fromstring(answer.content)  # raises on anything ill-formed
    titles = [e.findtext(f"{ATOM}title") for e in feed.findall(f"{ATOM}entry")]
    assert '<script>&" ]]> x' in " ".join(t or "" for t in titles) or any(
        t and t.startswith("<script>&") for t in titles
    )
    assert b"\x01" not in answer.content and b"<script>" not in answer.content


def test_a_digest_older_than_30_days_leaves_the_feed(web: Harness, ada: str) -> None:
    web.clock.advance(days=31)
    feed = ET.fromstring(web.client().get(ada).content)
    assert feed.findall(f"{ATOM}entry") == []
    assert feed.findtext(f"{ATOM}updated")


def test_the_archive_page_hands_out_no_feed_link(web: Harness, ada: str) -> None:
    archive = web.last_link("ada@example.org", "/archive/")
    page = web.client().get(archive)
    assert page.status_code == 200 and "/feed/" not in page.text


def test_a_paper_back_for_another_look_gets_an_entry_id_of_its_own() -> None:
    from digest.app.feed import entry_id

    first = entry_id("digest.example.org", "r1", "arxiv:2401.00001")
    again = entry_id("digest.example.org", "r1", "arxiv:2401.00001", again=True)
    assert first != again and again.startswith(first)
    assert first == entry_id("digest.example.org", "r1", "arxiv:2401.00001")
