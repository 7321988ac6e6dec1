"""Rendering a digest: content, escaping, MIME structure, headers and the bulk-mail rules.

Inputs are real papers: the recorded Hugging Face daily-papers response and the bundled
listing, read through the same parsers and cleaning as the live pipeline.
"""

from __future__ import annotations

import email
import re
import unicodedata
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from digest.config import MailSettings
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.ingest import clean
from digest.render import DigestInput, Rendered, Renderer, TemplateError
from digest.render.text import highlight_html, trim_abstract
from digest.sources.huggingface import parse_daily_papers
from digest.sources.records import PaperIn
from digest.sources.sample import read_listing

SAMPLE = resources.files("digest") / "data" / "sample"
HF_DAY = date(2026, 8, 13)
TERMS = ("agents", "reinforcement learning", "diffusion", "transformers")
MANAGE = "https://papers.example.org/preferences/eyJzIjo0Mn0.Zk3xQ"
UNSUBSCRIBE = "https://papers.example.org/unsubscribe/eyJzIjo0Mn0.Zk3xQ?list=daily&one=1"
ARCHIVE = "https://papers.example.org/archive/eyJkIjo5OX0.a8Qw"
FEED = "https://papers.example.org/feed/WyJhYmMiLDFd.Q2xm.atom"
REQUIRED_ONCE = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Auto-Submitted",
    "MIME-Version",
)


def _card(paper_id: int, record: PaperIn) -> PaperCard:
    cleaned = clean(record)
    assert cleaned is not None
    rec = cleaned.record
    return PaperCard(
        paper_id=paper_id,
        canonical_id=cleaned.key,
        arxiv_id=cleaned.arxiv_id,
        title=rec.title,
        abstract=rec.abstract,
        authors=tuple(rec.authors),
        categories=tuple(rec.categories),
        upvotes=rec.upvotes,
        ai_summary=rec.ai_summary,
        github_repo=rec.github_repo,
        sources=tuple(cleaned.sources),
        announced_on=rec.announced_on,
    )


@pytest.fixture(scope="module")
def hf_cards() -> list[PaperCard]:
    body = (SAMPLE / "huggingface_daily_papers_2026-08-13.json").read_bytes()
    records = parse_daily_papers(body, HF_DAY)
    cards = [_card(i + 1, r) for i, r in enumerate(records)]
    # Categories come from arXiv, not Hugging Face; give a few so the meta line shows.
    return [replace(c, categories=("cs.LG",)) if i % 2 else c for i, c in enumerate(cards)]


@pytest.fixture(scope="module")
def listing_cards() -> list[PaperCard]:
    records = read_listing((SAMPLE / "listing.jsonl").read_bytes(), "listing.jsonl")
    wanted = [r for r in records if r.title.startswith("RPT: Relational Pre-trained Transformer")]
    wanted += records[:1]
    return [_card(1000 + i, r) for i, r in enumerate(wanted)]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(
        MailSettings(
            from_address="digest@papers.example.org",
            from_name="Trending Papers",
            reply_to="help@papers.example.org",
        )
    )


def pick(card: PaperCard, *reasons: Reason, terms: tuple[str, ...] = TERMS) -> RankedItem:
    reasons = reasons or (
        Reason("phrase", "reinforcement learning"),
        Reason("term", "agents"),
        Reason("category", "cs.LG"),
    )
    return RankedItem(card.paper_id, 3.0, 2.5, reasons, "picks", terms)


def trending(card: PaperCard) -> RankedItem:
    reasons = (Reason("trending", str(card.upvotes)),)
    return RankedItem(card.paper_id, 1.0, 0.0, reasons, "trending", ())


def make_input(items, *, to: str = "ada@example.com", n: int = 1, **changes) -> DigestInput:
    data = DigestInput(
        to_address=to,
        local_date=HF_DAY,
        items=items,
        profile_summary='"reinforcement learning", agents, diffusion, category cs.LG',
        message_id=f"<d.3f9a{n:04d}c1e2@papers.example.org>",
        date_header=datetime(2026, 8, 13, 7, 0, tzinfo=timezone(timedelta(hours=2))),
        manage_url=MANAGE,
        unsubscribe_url=UNSUBSCRIBE,
        archive_url=ARCHIVE,
        feed_url=FEED,
    )
    return replace(data, **changes)


@pytest.fixture(scope="module")
def ten(hf_cards: list[PaperCard]) -> list[tuple[RankedItem, PaperCard]]:
    """Seven picks then three trending papers, as ranking hands them over."""
    items = [(pick(c), c) for c in hf_cards[:7]]
    items += [(trending(c), c) for c in hf_cards[7:10]]
    return items


@pytest.fixture(scope="module")
def rendered(renderer: Renderer, ten) -> Rendered:
    return renderer.render(make_input(ten))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.strict)
    assert isinstance(message, EmailMessage)
    return message


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def tags_of(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    parser.close()
    return parser


def check_outbox(folder: Path) -> list[str]:
    """The checks a receiver runs on our mail (the same rules as shared/tools/check_mail.py)."""
    files = sorted(folder.rglob("*.eml"))
    problems: list[str] = []
    bodies: set[str] = set()
    for path in files:
        raw = path.read_bytes()
        name = path.name
        message = parse(raw)
        if message.defects or any(part.defects for part in message.walk()):
            problems.append(f"{name}: defects")
        for header in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        ):
            if len(message.get_all(header, [])) != 1:
                problems.append(f"{name}: {header} not present exactly once")
        unsubscribe = str(message.get("List-Unsubscribe", ""))
        if "<https://" not in unsubscribe and "<http://" not in unsubscribe:
            problems.append(f"{name}: List-Unsubscribe has no http(s) URI")
        if str(message.get("List-Unsubscribe-Post", "")).strip() != "List-Unsubscribe=One-Click":
            problems.append(f"{name}: bad List-Unsubscribe-Post")
        mid = str(message.get("Message-ID", ""))
        if not (mid.startswith("<") and mid.endswith(">") and "@" in mid):
            problems.append(f"{name}: Message-ID malformed")
        if message.get_content_type() != "multipart/alternative":
            problems.append(f"{name}: top type {message.get_content_type()}")
        parts = [p.get_content_type() for p in message.iter_parts()]
        if parts[:2] != ["text/plain", "text/html"]:
            problems.append(f"{name}: parts {parts}")
        html_part = message.get_body(("html",))
        if html_part is None:
            problems.append(f"{name}: no HTML part")
        else:
            html = html_part.get_content()
            if len(html.encode()) > 102 * 1024:
                problems.append(f"{name}: HTML over 102 KB")
            if "<style" in html.lower() and 'style="' not in html:
                problems.append(f"{name}: CSS not inlined")
            bodies.add(html)
        if any(len(line) > 998 for line in raw.split(b"\r\n") + raw.split(b"\n")):
            problems.append(f"{name}: line over 998 octets")
    if len(files) < 3:
        problems.append(f"only {len(files)} .eml files")
    if len(bodies) < min(3, len(files)):
        problems.append("digests are not distinct per subscriber")
    return problems


# --------------------------------------------------------------------------------------------
# The message


def test_message_parses_strictly_with_each_header_once(rendered: Rendered) -> None:
    raw = rendered.message.as_bytes()
    message = parse(raw)
    assert message.defects == []
    assert all(part.defects == [] for part in message.walk())
    for header in REQUIRED_ONCE:
        assert len(message.get_all(header, [])) == 1, header
    assert message["From"].addresses[0].display_name == "Trending Papers"
    assert message["From"].addresses[0].addr_spec == "digest@papers.example.org"
    assert str(message["To"]) == "ada@example.com"
    assert str(message["Reply-To"]) == "help@papers.example.org"
    assert str(message["Auto-Submitted"]) == "auto-generated"
    assert str(message["List-Id"]) == '"Trending Papers" <digest.papers.example.org>'
    assert str(message["Subject"]) == rendered.subject
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_one_click_unsubscribe_headers(rendered: Rendered) -> None:
    message = parse(rendered.message.as_bytes())
    assert str(message["List-Unsubscribe"]) == f"<{UNSUBSCRIBE}>"
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    # The raw header is the URL itself, never an RFC 2047 encoded word.
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in rendered.message.as_bytes()


def test_long_unsubscribe_url_is_not_encoded(renderer: Renderer, ten) -> None:
    url = "https://papers.example.org/unsubscribe/" + "t0k3n" * 60
    raw = renderer.render(make_input(ten, unsubscribe_url=url)).message.as_bytes()
    assert f"List-Unsubscribe: <{url}>\r\n".encode() in raw
    assert str(parse(raw)["List-Unsubscribe"]) == f"<{url}>"


def test_text_part_comes_before_html_both_utf8_and_encoded(rendered: Rendered) -> None:
    message = parse(rendered.message.as_bytes())
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert "MIME-Version" not in part
    # The fixture's text has non-ASCII (an ellipsis, names): 8bit (the mailer re-encodes it
    # where 8bit cannot go). The HTML writes such characters as references: it goes as it is.
    assert not rendered.text.isascii()
    assert parts[0]["Content-Transfer-Encoding"] == "8bit"
    assert parts[1]["Content-Transfer-Encoding"] == "7bit"
    assert parts[0].get_content().replace("\r\n", "\n") == rendered.text
    html = parts[1].get_content().replace("\r\n", "\n")
    # The page is rendered as ASCII (its other characters as references) and sent as it is;
    # read as HTML, its text has the characters themselves.
    assert rendered.html.isascii() and html == rendered.html
    assert "…" in "".join(tags_of(html).text)


def test_each_part_goes_as_it_is_when_it_can_and_quoted_printable_when_not(
    renderer: Renderer, ten
) -> None:
    """7bit is only for ASCII with no NUL and no line over 998 octets (RFC 2045, 5322); the
    plain text may go 8bit when only its characters are not ASCII; whatever breaks one of
    those goes quoted-printable, and reads back the same."""
    ascii_card = replace(
        ten[0][1], title="Plain title", authors=("Ada Lovelace",), abstract="Short. " * 30
    )
    cases = {
        "ascii": (ascii_card, "7bit", "7bit"),
        # A 480-character title with no space: the text part wraps it; escaped for HTML
        # ("&amp;") it is 1,120 characters, a line over 998 octets.
        "long word": (replace(ascii_card, title="R&D" * 160), "7bit", "quoted-printable"),
        "accent": (replace(ascii_card, title="Café models"), "8bit", "7bit"),
    }
    for name, (card, text_cte, html_cte) in cases.items():
        item = pick(card, Reason("term", "agents"))  # one reason: no "·" in the Why line
        out = renderer.render(make_input([(item, card)], profile_summary="plain"))
        text, html = list(parse(out.raw).iter_parts())
        assert (text["Content-Transfer-Encoding"], html["Content-Transfer-Encoding"]) == (
            text_cte,
            html_cte,
        ), name
        assert text.get_content().replace("\r\n", "\n") == out.text, name
        sent = html.get_content().replace("\r\n", "\n")
        assert tags_of(sent).text == tags_of(out.html).text, name
        body = out.raw.split(b"\r\n\r\n", 1)[1]
        assert max(len(line) for line in body.split(b"\r\n")) <= 998, name


def test_message_id_and_date_are_as_given(rendered: Rendered) -> None:
    data = make_input([])
    message = parse(rendered.message.as_bytes())
    assert str(message["Message-ID"]) == data.message_id
    assert str(message["Date"]) == format_datetime(data.date_header)
    assert str(message["Date"]) == "Thu, 13 Aug 2026 07:00:00 +0200"


def test_rerendering_gives_identical_bytes(renderer: Renderer, ten) -> None:
    first = renderer.render(make_input(ten)).message.as_bytes()
    again = renderer.render(make_input(ten)).message.as_bytes()
    fresh = Renderer(renderer.settings).render(make_input(ten)).message.as_bytes()
    assert first == again == fresh
    boundary = parse(first).get_boundary()
    assert boundary and boundary.startswith("=_")
    other = renderer.render(make_input(ten, n=2)).message.as_bytes()
    assert parse(other).get_boundary() != boundary


def test_no_line_over_998_octets(renderer: Renderer, hf_cards) -> None:
    wide = replace(hf_cards[0], abstract=" ".join(["supercalifragilistic" * 30] * 20))
    raw = renderer.render(make_input([(pick(wide), wide)])).message.as_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


# --------------------------------------------------------------------------------------------
# Content


def test_header_has_date_count_and_profile(rendered: Rendered) -> None:
    assert "Thursday, 13 August 2026" in rendered.html
    assert "7 papers for you, plus 3 trending" in rendered.html
    assert "Matched: &#34;reinforcement learning&#34;, agents, diffusion" in rendered.html
    assert "Thursday, 13 August 2026" in rendered.text
    assert 'Matched: "reinforcement learning", agents, diffusion, category cs.LG' in rendered.text


def test_subject_names_the_top_paper_and_the_rest(rendered: Rendered, hf_cards) -> None:
    assert rendered.subject.startswith("Your papers for Thu 13 Aug: OpenART")
    assert rendered.subject.endswith("(+9 more)")
    assert len(rendered.subject) <= 120
    assert hf_cards[0].title in rendered.subject


def test_links_come_only_from_validated_ids(rendered: Rendered, hf_cards) -> None:
    top = hf_cards[0]
    html = rendered.html
    assert f'href="https://arxiv.org/abs/{top.arxiv_id}"' in html
    assert f'href="https://arxiv.org/pdf/{top.arxiv_id}"' in html
    assert f'href="https://huggingface.co/papers/{top.arxiv_id}"' in html
    assert top.github_repo and f'href="{top.github_repo}"' in html
    assert f"https://arxiv.org/abs/{top.arxiv_id}" in rendered.text
    assert top.github_repo in rendered.text


def test_paper_without_arxiv_id_opens_by_a_title_search(renderer: Renderer, listing_cards) -> None:
    """A listing row without an arXiv id still opens: its title and two buttons search arXiv
    and Hugging Face by title, and their labels say so; no abs/pdf link is made up."""
    from urllib.parse import parse_qs, urlsplit

    card = replace(listing_cards[1], authors=())
    assert card.arxiv_id is None
    out = renderer.render(make_input([(pick(card), card)]))
    hrefs = [a.get("href") for tag, a in tags_of(out.html).tags if tag == "a"]
    searches = [h for h in hrefs if h not in (MANAGE, UNSUBSCRIBE, ARCHIVE, FEED)]
    assert hrefs[-4:] == [MANAGE, UNSUBSCRIBE, ARCHIVE, FEED]
    arxiv = [h for h in searches if h and h.startswith("https://arxiv.org/search/?")]
    hf = [h for h in searches if h and h.startswith("https://huggingface.co/papers?")]
    assert len(arxiv) == 2 and len(set(arxiv)) == 1  # the title link and its button
    assert len(hf) == 1 and len(searches) == 3
    title = " ".join(card.title.split())
    query = parse_qs(urlsplit(arxiv[0]).query)
    assert query["query"] == [title] and query["searchtype"] == ["title"]
    assert parse_qs(urlsplit(hf[0]).query)["q"] == [title]
    assert 'class="title-link"' in out.html
    assert "Search arXiv by title" in out.html and "Search Hugging Face" in out.html
    assert "/abs/" not in out.html and "/pdf/" not in out.html
    # The text part has the same links, and says the authors are unknown.
    assert arxiv[0] in out.text and hf[0] in out.text
    assert "Authors unknown" in out.html and "Authors unknown" in out.text


def test_hugging_face_link_only_for_papers_seen_there(renderer: Renderer, hf_cards) -> None:
    card = replace(hf_cards[0], sources=("arxiv_rss",))
    out = renderer.render(make_input([(pick(card), card)]))
    assert "huggingface.co/papers" not in out.html
    assert f"https://arxiv.org/pdf/{card.arxiv_id}" in out.html


def test_highlights_are_stemmed_and_inline_styled(renderer: Renderer, listing_cards) -> None:
    card = listing_cards[0]
    assert "Pre-trained Transformer" in card.title
    out = renderer.render(make_input([(pick(card, terms=("transformers",)), card)]))
    marks = re.findall(r'<mark class="hl"\sstyle="([^"]+)">([^<]+)</mark>', out.html)
    assert [word for _, word in marks] == ["Transformer"]
    assert all("background-color:#fff3b0" in style for style, _ in marks)
    assert "<mark" not in out.text


def test_highlight_spans_phrases_and_cover_the_abstract(rendered: Rendered) -> None:
    words = re.findall(r"<mark[^>]*>([^<]+)</mark>", rendered.html)
    assert {"agents", "Agents", "agent"} & set(words)
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z -]*", w) for w in words)


def test_highlighting_never_marks_up_escaped_entities() -> None:
    html = str(highlight_html('Agents & <agents> "lt" amp', ("agents", "amp", "lt", "quot")))
    assert html == (
        '<mark class="hl"\nstyle="background-color:#fff3b0;color:inherit;padding:0 2px;'
        'border-radius:3px">Agents</mark> &amp; &lt;<mark class="hl"\nstyle="background-color:'
        '#fff3b0;color:inherit;padding:0 2px;border-radius:3px">agents</mark>&gt; &#34;<mark '
        'class="hl"\nstyle="background-color:#fff3b0;color:inherit;padding:0 2px;border-radius:'
        '3px">lt</mark>&#34; <mark class="hl"\nstyle="background-color:#fff3b0;color:inherit;'
        'padding:0 2px;border-radius:3px">amp</mark>'
    )
    assert str(highlight_html("a < b & c", ("lt", "amp"))) == "a &lt; b &amp; c"


def test_abstract_is_trimmed_at_a_sentence_boundary(rendered: Rendered, hf_cards) -> None:
    full = hf_cards[0].abstract
    trimmed = trim_abstract(full, 480)
    assert len(full) > 1000
    assert trimmed.endswith(". …")
    assert full.startswith(trimmed[:-2])
    assert 480 * 0.6 <= len(trimmed) <= 480 * 1.15 + 2
    assert trimmed[:-2] in rendered.text.replace("\n    ", " ")
    assert "environment evolution. &#8230;</p>" in rendered.html  # the page is ASCII


def test_trim_skips_abbreviations_and_falls_back_to_words() -> None:
    text = "We test many things, e.g. Transformers and more. " * 3 + "Final words here. " * 20
    out = trim_abstract(text, 100)
    assert not out.endswith("e.g. …")
    assert out.endswith(". …")
    assert text.startswith(out[:-2])
    long_sentence = "word " * 200
    cut = trim_abstract(long_sentence.strip(), 100)
    assert cut.endswith("word…") and len(cut) <= 101
    short = "One sentence. Two sentences."
    assert trim_abstract(short, 100) == short


def test_authors_are_shortened_with_et_al(rendered: Rendered, hf_cards) -> None:
    top = hf_cards[0]
    assert len(top.authors) == 9
    shown = ", ".join(top.authors[:4]) + " et al."
    assert shown in rendered.html
    assert shown in rendered.text
    assert top.authors[4] not in rendered.text.split("TL;DR")[0]


def test_tldr_upvotes_and_reasons_are_shown(rendered: Rendered, hf_cards) -> None:
    top = hf_cards[0]
    assert top.ai_summary and top.upvotes == 98
    assert "TL;DR" in rendered.html and top.ai_summary in rendered.html
    assert f"TL;DR: {top.ai_summary[:40]}" in rendered.text
    # Words a screen reader reads as they are, not "black up-pointing triangle 98".
    assert "98 upvotes" in rendered.html and "98 upvotes" in rendered.text
    assert "&#9650;" not in rendered.html and "▲" not in rendered.text
    reason = "Matched &#34;reinforcement learning&#34;, agents &#183; cs.LG"
    assert reason in rendered.html
    assert 'Why: Matched "reinforcement learning", agents · cs.LG' in rendered.text
    assert f"Trending: {hf_cards[7].upvotes} upvotes" in rendered.html


def test_reasons_read_naturally(renderer: Renderer, hf_cards) -> None:
    card = hf_cards[1]
    reasons = (
        Reason("phrase", "graph neural network"),
        Reason("term", "diffusion"),
        Reason("author", "Yann LeCun"),
        Reason("category", "cs.LG"),
    )
    out = renderer.render(make_input([(pick(card, *reasons), card)]))
    assert 'Why: Matched "graph neural network", diffusion · author Yann LeCun · cs.LG' in (
        out.text.replace("\n    ", " ")
    )
    one = renderer.render(make_input([(trending(replace(card, upvotes=1)), card)]))
    assert "Trending: 1 upvote" in one.text and not re.search(r"\b1 upvotes", one.text)
    # The card's own count says what it counts, singular or plural, in both parts.
    single = replace(card, upvotes=1)
    out = renderer.render(make_input([(pick(single, *reasons), single)]))
    assert "· 1 upvote" in out.text and not re.search(r"\b1 upvotes", out.text)
    assert "71 upvotes" in rendered_text_of(renderer, card, reasons)


def rendered_text_of(renderer: Renderer, card: PaperCard, reasons: tuple[Reason, ...]) -> str:
    return renderer.render(make_input([(pick(card, *reasons), card)])).text


def test_trending_section_heading_comes_before_trending_papers(rendered, hf_cards) -> None:
    html, text = rendered.html, rendered.text
    assert html.count("Also trending today") == 1
    heading = html.index("Also trending today")
    last_pick = html.index(f"arxiv.org/abs/{hf_cards[6].arxiv_id}")
    assert last_pick < heading < html.index(f"arxiv.org/abs/{hf_cards[7].arxiv_id}")
    assert text.index(hf_cards[6].title[:30]) < text.index("ALSO TRENDING TODAY")
    assert text.index("ALSO TRENDING TODAY") < text.index("8.  ")


def test_no_trending_heading_without_trending_papers(renderer: Renderer, ten) -> None:
    out = renderer.render(make_input(ten[:3]))
    assert "Also trending" not in out.html and "ALSO TRENDING" not in out.text
    assert "3 papers for you today" in out.html


def test_footer_has_manage_unsubscribe_why_and_browser_link(rendered: Rendered) -> None:
    anchors = {a.get("href"): tag for tag, a in tags_of(rendered.html).tags if tag == "a"}
    assert {MANAGE, UNSUBSCRIBE, ARCHIVE, FEED} <= set(anchors)
    assert "View in browser" in rendered.html
    assert "You get this mail because ada@example.com subscribed" in rendered.html
    assert f"Manage your preferences: {MANAGE}" in rendered.text
    assert UNSUBSCRIBE in rendered.text and ARCHIVE in rendered.text


def test_no_browser_link_without_archive_url(renderer: Renderer, ten) -> None:
    out = renderer.render(make_input(ten[:2], archive_url=None))
    assert "View in browser" not in out.html and "browser" not in out.text


def test_the_footer_links_the_readers_feed(rendered: Rendered, renderer: Renderer, ten) -> None:
    assert re.search(f'href="{re.escape(FEED)}"[^>]*>Subscribe in a feed reader</a>', rendered.html)
    assert f"Your feed (Atom):        {FEED}" in rendered.text
    out = renderer.render(make_input(ten[:2], feed_url=None))
    assert "feed reader" not in out.html and "/feed/" not in out.text


# --------------------------------------------------------------------------------------------
# HTML for mail clients


def test_css_is_inlined_and_media_queries_kept(rendered: Rendered) -> None:
    html = rendered.html
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert len(styles) == 1
    assert "@media (max-width: 600px)" in styles[0]
    assert "@media (prefers-color-scheme: dark)" in styles[0]
    assert "!important" in styles[0]
    # Tags are broken between their attributes, so that no line of the mail nears 998 octets.
    assert '<meta name="color-scheme"\ncontent="light dark">' in html
    assert max(len(line) for line in html.splitlines()) < 998
    cards = [a for tag, a in tags_of(html).tags if "card" in (a.get("class") or "").split()]
    assert len(cards) == 10
    assert all("border-radius:12px" in (a.get("style") or "") for a in cards)
    assert 'class="preheader"\nstyle="display:none' in html
    assert "max-width:640px" in html


def test_html_and_message_sizes_for_ten_long_papers(renderer: Renderer, hf_cards) -> None:
    long = [replace(c, abstract=(c.abstract + " ") * 3) for c in hf_cards[:10]]
    items = [(pick(c), c) for c in long]
    out = renderer.render(make_input(items))
    assert out.html_size < 102 * 1024
    assert len(out.message.as_bytes()) < 150 * 1024


def test_oversized_digest_shortens_abstracts_to_fit(hf_cards) -> None:
    wordy = Renderer(MailSettings(abstract_chars=5000, authors_shown=50))
    long = [replace(c, abstract=("Words here agents. " * 400)[:6000]) for c in hf_cards[:12]]
    out = wordy.render(make_input([(pick(c), c) for c in long]))
    assert out.html_size <= 100 * 1024
    assert out.html.count('class="card') == 12


def test_the_clip_is_measured_on_the_html_as_sent(hf_cards) -> None:
    """Non-ASCII goes as character references: a CJK character is 3 bytes of UTF-8 and 8 as
    "&#27880;". The fit is measured on what is sent, so such a digest is shortened further."""
    wordy = Renderer(MailSettings(abstract_chars=5000))
    text = "注意力 机制的 研究。 " * 500
    cjk = [replace(c, abstract=text[:5000]) for c in hf_cards[:10]]
    out = wordy.render(make_input([(pick(c), c) for c in cjk]))
    sent = parse(out.raw).get_body(("html",))
    # (Quoted-printable here: an abstract is one line of the HTML, over 998 octets.)
    assert sent is not None and sent["Content-Transfer-Encoding"] == "quoted-printable"
    assert len(sent.get_payload(decode=True)) == out.html_size <= 100 * 1024
    assert len(out.html.encode()) < out.html_size  # UTF-8 alone would have let more through
    assert out.abstract_chars < 5000 and "&#27880;" in sent.get_content()


# --------------------------------------------------------------------------------------------
# Hostile feed text

HOSTILE_TITLE = (
    "<script>alert(1)</script>\r\nBcc: victim@example.net\r\n\u202egnp.exe\u2066 \x00 {{ 7*7 }} "
    + "A" * 10_000
)


@pytest.fixture(scope="module")
def hostile(renderer: Renderer, hf_cards) -> Rendered:
    evil = replace(
        hf_cards[0],
        title=HOSTILE_TITLE,
        abstract='See javascript:alert(1) and <a href="javascript:alert(2)">x</a>. {% raw %}',
        authors=('"><img src=x onerror=alert(1)>', "Bob\x00\u202eEvil\r\nX-Injected: 1"),
        ai_summary="<iframe src=javascript:alert(1)></iframe>\x07",
        github_repo="javascript:alert(1)//https://github.com/a/b",
        categories=('cs.LG" onmouseover="alert(1)',),
    )
    items = [(pick(evil, terms=("script", "alert")), evil), *((pick(c), c) for c in hf_cards[1:3])]
    return renderer.render(make_input(items, profile_summary="x\r\nBcc: a@b.c <b>bold</b>"))


def test_hostile_text_never_becomes_live_html(hostile: Rendered) -> None:
    parsed = tags_of(hostile.html)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "img", "iframe", "object", "embed", "form", "svg", "b"}
    for tag, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "a":
            assert re.match(r"https://", attrs["href"] or ""), attrs
    hrefs = [a["href"] for tag, a in parsed.tags if tag == "a"]
    assert not [h for h in hrefs if "javascript" in h.lower()]
    page_text = "".join(parsed.text)
    assert "<script>alert(1)</script>" in page_text  # shown as text, harmless
    assert '"><img src=x onerror=alert(1)>' in page_text
    assert "{{ 7*7 }}" in page_text and "49" not in page_text


def test_hostile_text_cannot_inject_headers_or_controls(hostile: Rendered) -> None:
    raw = hostile.message.as_bytes()
    message = parse(raw)
    assert message.defects == []
    assert message.get_all("Bcc") is None and message.get_all("X-Injected") is None
    subject = str(message["Subject"])
    assert subject == hostile.subject
    assert "\r" not in subject and "\n" not in subject and len(subject) <= 120
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in subject)
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert not [ch for ch in text if unicodedata.category(ch) == "Cc" and ch != "\n"]
    assert "\u202e" not in text and "\u2066" not in text and "\x00" not in text
    assert "\u202e" not in hostile.html and "\x00" not in hostile.html
    for line in text.splitlines():
        assert len(line) <= 78 or re.search(r"https?://", line), line


def test_text_part_reads_on_its_own(rendered: Rendered) -> None:
    text = rendered.text
    assert not re.search(r"&(?:[a-z]+|#\d+);", text)
    assert "<" not in text.replace("<-", "")
    assert re.search(r"^1\.  OpenART", text, re.M)
    assert re.search(r"^10\. ", text, re.M)
    for line in text.splitlines():
        assert len(line) <= 78 or re.search(r"https?://", line), line


# --------------------------------------------------------------------------------------------
# Empty digests, caller mistakes, and the outbox rules


def test_empty_digest_is_a_kind_note(renderer: Renderer) -> None:
    out = renderer.render(make_input([]))
    assert "Nothing matched your interests today" in out.html
    assert "Nothing matched your interests today" in out.text
    assert "nothing new matched today" in out.subject
    assert "Following: " in out.text and MANAGE in out.text
    assert "Also trending" not in out.html
    assert parse(out.message.as_bytes()).defects == []


def test_caller_urls_must_be_http(renderer: Renderer, ten) -> None:
    for field, bad in (
        ("manage_url", "javascript:alert(1)"),
        ("unsubscribe_url", "mailto:x@example.org"),
        ("unsubscribe_url", 'https://x.example/"><script>'),
        ("archive_url", "https://x.example/a b"),
        ("unsubscribe_url", "https://x.example/\r\nBcc: y@z"),
    ):
        with pytest.raises(ValueError, match=field):
            renderer.render(make_input(ten[:1], **{field: bad}))
    with pytest.raises(ValueError, match="message_id"):
        renderer.render(make_input(ten[:1], message_id="d.1@example.org\r\nBcc: x@y"))
    with pytest.raises(ValueError, match="timezone"):
        renderer.render(make_input(ten[:1], date_header=datetime(2026, 8, 13, 7)))


def test_missing_templates_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="email templates not found"):
        Renderer(MailSettings(), templates_dir=tmp_path)


def test_a_non_ascii_character_in_the_style_block_is_a_clear_error(tmp_path: Path) -> None:
    """The HTML part goes as ASCII with character references, which <style> would show
    literally: a template that puts non-ASCII there is refused when it is loaded."""
    source = Renderer(MailSettings()).templates_dir
    for name in ("email/digest.html", "email/digest.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((source / name).read_text())
    page = tmp_path / "email/digest.html"
    page.write_text(
        page.read_text().replace("</style>", '.x::before { content: "→"; }\n</style>', 1)
    )
    with pytest.raises(TemplateError, match=r"digest\.html: a non-ASCII character in <style>"):
        Renderer(MailSettings(), templates_dir=tmp_path)


def test_rendered_outbox_passes_receiver_checks(
    renderer: Renderer, ten, hf_cards, listing_cards, tmp_path: Path
) -> None:
    listing_items = [(pick(c), c) for c in listing_cards]
    batches = [
        ("ada@example.com", ten),
        ("bo@example.org", listing_items + [(trending(c), c) for c in hf_cards[10:13]]),
        ("cy@example.net", []),
    ]
    for n, (to, items) in enumerate(batches, start=1):
        out = renderer.render(make_input(items, to=to, n=n))
        (tmp_path / f"{n:03d}.eml").write_bytes(out.message.as_bytes())
    assert check_outbox(tmp_path) == []


def test_date_header_in_utc_is_kept(renderer: Renderer, ten) -> None:
    when = datetime(2026, 8, 13, 5, 0, tzinfo=UTC)
    message = parse(renderer.render(make_input(ten[:1], date_header=when)).message.as_bytes())
    assert str(message["Date"]) == format_datetime(when)


def test_the_largest_digest_the_settings_allow_stays_under_the_clip(hf_cards) -> None:
    """50 picks (the most a reader may choose), 3 "worth another look", 10 trending (the
    most the settings allow), abstracts of up to 5,000 characters, 50 authors each, every
    feedback link: the HTML stays under Gmail's clip with the footer whole, by moving the
    last papers behind the browser link, never by dropping every abstract."""
    from html import escape as html_escape

    from digest.domain.schedules import MAX_PAPERS
    from digest.render import HTML_BUDGET, MIN_ABSTRACT

    wordy = Renderer(MailSettings(abstract_chars=5000, authors_shown=50))
    authors = tuple(f"Author Number{n} Surname" for n in range(60))

    def card(n: int) -> PaperCard:
        base = hf_cards[n % len(hf_cards)]
        text = (base.abstract + " ") * 8
        return replace(base, paper_id=1000 + n, abstract=text[:6000], authors=authors)

    items = [(pick(card(n)), card(n)) for n in range(MAX_PAPERS)]
    items += [
        (RankedItem(1100 + n, 0.0, 0.0, (Reason("second_look", "Code released"),), "revisit"),
         card(100 + n))
        for n in range(3)
    ]  # fmt: skip
    items += [(trending(card(200 + n)), card(200 + n)) for n in range(10)]
    feedback = [(f"{MANAGE}/more/{n}", f"{MANAGE}/fewer/{n}") for n in range(len(items))]
    data = make_input(items, feedback_urls=feedback)

    out = wordy.render(data)
    html = out.html
    assert out.html_size <= HTML_BUDGET
    kept = len(items) - out.moved
    assert 0 < out.moved < len(items) and kept > 10
    assert out.abstract_chars >= MIN_ABSTRACT
    # The first papers stay, in order, each with its abstract; the rest are named.
    assert html.count('class="card') == kept
    assert html.count('class="abstract"') == kept
    assert f"{out.moved} more papers did not fit in this mail." in html
    assert f'href="{ARCHIVE}"' in html.split("did not fit in this mail.")[1]
    # The footer is whole, after the last card.
    footer = html[html.rindex('class="card') :]
    for url in (MANAGE, UNSUBSCRIBE, FEED):
        assert f'href="{html_escape(url)}"' in footer
    text = out.message.get_body(("plain",)).get_content()
    assert f"{out.moved} more papers did not fit in this mail." in text and ARCHIVE in text
    # The count line still counts the whole digest.
    assert "50 papers for you, plus 10 trending &#183; 3 worth another look" in html

    # The archive page (not a mail) shows every paper in full.
    page = wordy.render(data, fit=False)
    assert page.moved == 0 and page.html.count('class="card') == len(items)
    assert "did not fit" not in page.html


def test_a_usual_digest_moves_nothing(renderer: Renderer, ten) -> None:
    out = renderer.render(make_input(ten))
    assert out.moved == 0 and "did not fit" not in out.html and "did not fit" not in out.text
