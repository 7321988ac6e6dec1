"""One subscriber's digest as a ready-to-send message: subject, text and HTML parts, headers.

A pure function of its input (no clock, no randomness, no I/O beyond loading the templates
once), so rendering the same delivery twice gives byte-identical ``message.as_bytes()``.

Feed text is hostile until shown otherwise: it is cleaned again here (controls, bidi
overrides, CR/LF, NUL), HTML-escaped by Jinja's autoescape, and never becomes a link. Only
URLs built by :mod:`digest.links` from validated ids, a validated GitHub repo URL and the
caller's own manage/unsubscribe/archive URLs become ``href`` values, and each must be
http(s) with no characters that could break out of an attribute or a header.

CSS is inlined once per template, when the :class:`Renderer` loads it: the Jinja source is
handed to premailer with every Jinja tag swapped for an inert placeholder (``{{ }}`` for a
plain token, ``{% %}``/``{# #}`` for an HTML comment), then the tags are put back and the
result compiled. Per message only Jinja runs. The ``@media`` rules (phones, dark mode) stay
in a ``<style>`` block. Highlights carry their own inline style, computed here.

Speed (see docs/benchmarks.md): what depends only on a paper is worked out once per day
(:func:`paper_view`, the text part's wrapped paragraphs, the words of titles and abstracts
for highlighting); the templates mark the blocks that are the same in every mail showing a
paper with ``{% cache key… %}`` (:class:`~digest.render.templates.FragmentCache`: rendered
once per key, byte-identical), and the message's bytes are assembled directly
(:meth:`Renderer._wire`): headers folded by the same ``email`` policy as before (the fixed
ones once per renderer), each part sent as it is (7bit) when it can be: the HTML with its
non-ASCII characters as character references (already so as rendered: the HTML template
writes its values with :func:`~digest.render.templates.escape_ascii_output`)
and its tags broken between attributes, so no line nears 998 octets, the plain text as 8bit
when it is not ASCII (:mod:`digest.delivery.mailers` re-encodes it where 8bit cannot go);
quoted-printable (``binascii``) otherwise. The Subject is folded by the email package's
rules without the package for the shapes real subjects have (:func:`wire._subject_line`).
``Rendered.message`` parses those bytes back for callers that want an ``EmailMessage``;
tests/render/test_render_fast.py checks the bytes against a straightforward rendering
(premailer over the whole page, ``EmailMessage`` assembly).
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
from markupsafe import Markup

import digest
from digest.config import MailSettings
from digest.domain import paper_links
from digest.domain.items import PaperCard, RankedItem
from digest.domain.text import valid_github
from digest.render.templates import (
    FragmentCache,
    TemplateError,
    _InliningLoader,
    write_values_as_text,
)
from digest.render.text import (
    _MESSAGE_ID,
    MAX_ABSTRACT,
    MAX_HEADER_URL,
    MAX_LINE,
    MAX_SUMMARY,
    MAX_TITLE,
    _format_reasons,
    _papers,
    _shorten,
    checked_url,
    format_authors,
    highlight_html,
    long_date,
    make_subject,
    one_line,
    trim_abstract,
    wrap,
)
from digest.render.wire import (
    _BOUNDARY_SLOT,
    _CONTENT_TYPE,
    POLICY,
    Octets,
    _date_line,
    _fold,
    _raw_line,
    _subject_line,
    _to_line,
    html_octets,
    measured,
    part,
)

__all__ = [
    "GMAIL_CLIP_BYTES",
    "DigestInput",
    "Rendered",
    "Renderer",
    "TemplateError",
    "default_templates_dir",
]

HTML_TEMPLATE = "email/digest.html"
TEXT_TEMPLATE = "email/digest.txt"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestInput:
    to_address: str  # already validated and normalised
    local_date: date  # the subscriber's date the digest is for
    # picks first, then section="revisit" ("worth another look"), then section="trending"
    items: Sequence[tuple[RankedItem, PaperCard]]
    profile_summary: str  # one line on what was matched
    message_id: str  # full, e.g. "<d.3f9a...@example.org>"
    date_header: datetime  # aware; the Date header
    manage_url: str  # https URL with an opaque signed token (preferences page)
    unsubscribe_url: str  # https URL for List-Unsubscribe and the footer link
    archive_url: str | None = None  # "view in browser"
    return_path: str | None = None  # envelope sender, set by the delivery layer; ignored here
    # Per item, in order: its "more like this" and "fewer like this" URLs (signed tokens);
    # empty: no feedback links (a caller without a web app).
    feedback_urls: Sequence[tuple[str, str]] = ()
    feed_url: str | None = None  # the reader's private Atom feed, in the footer


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    raw: bytes  # the whole message as it goes on the wire (CRLF line ends)
    # Fitting under Gmail's clip: the abstract length used, and how many papers (the last
    # ones) did not fit and are only behind the "view in the browser" link.
    abstract_chars: int = 0
    moved: int = 0

    @cached_property
    def html_size(self) -> int:
        """The HTML part's size as sent (its non-ASCII as character references): what
        Gmail's clip is measured against."""
        return html_octets(self.html).sent_size

    @cached_property
    def message(self) -> EmailMessage:
        """The message as an ``EmailMessage`` (parsed from :attr:`raw`)."""
        parsed = email.message_from_bytes(self.raw, policy=POLICY)
        assert isinstance(parsed, EmailMessage)
        return parsed


def default_templates_dir() -> Path:
    """``templates/`` beside the ``digest`` package directory (the repository root)."""
    return Path(digest.__file__).resolve().parent.parent / "templates"


# --------------------------------------------------------------------------------------------
# View models handed to the templates


class _Link(NamedTuple):  # a tuple: hashed in C as part of the links' fragment key
    label: str
    url: str


class _Card(NamedTuple):  # a tuple: made for every card of every mail, cheaply
    number: int
    title: str
    title_html: Markup
    abs_url: str | None
    authors: str
    tldr: str | None
    abstract: str
    abstract_html: Markup
    reason: str
    upvotes: str | None
    category: str | None
    links: tuple[_Link, ...]
    more_url: str | None = None  # "more like this"
    fewer_url: str | None = None  # "fewer like this"


@dataclass(frozen=True)
class _PaperView:
    """What a paper looks like in any subscriber's mail: cleaned, trimmed, linked."""

    title: str
    abs_url: str | None
    authors: str
    tldr: str | None
    abstract: str
    upvotes: str | None
    category: str | None
    links: tuple[_Link, ...]


@lru_cache(maxsize=2048)
def paper_view(card: PaperCard, abstract_chars: int, authors_shown: int) -> _PaperView:
    """The per-paper part of a card, computed once per day per paper, not once per mail."""
    title = one_line(card.title, MAX_TITLE) or "(untitled)"
    abstract = one_line(card.abstract, MAX_ABSTRACT)
    abstract = trim_abstract(abstract, abstract_chars) if abstract_chars else ""
    abs_url = paper_links.arxiv_abs(card.arxiv_id)
    found: list[_Link] = []
    if abs_url:
        found.append(_Link("arXiv", abs_url))
        pdf = paper_links.arxiv_pdf(card.arxiv_id)
        if pdf:
            found.append(_Link("PDF", pdf))
        if "huggingface" in card.sources:
            page = paper_links.huggingface_page(card.arxiv_id)
            if page:
                found.append(_Link("Hugging Face", page))
    elif title != "(untitled)":
        # A listing row without an arXiv id: every paper a reader sees must open, so the
        # title and the buttons search by title, and say that they search.
        abs_url = paper_links.arxiv_title_search(card.title)
        if abs_url:
            found.append(_Link("Search arXiv by title", abs_url))
        search = paper_links.huggingface_search(card.title)
        if search:
            found.append(_Link("Search Hugging Face", search))
    repo = valid_github(card.github_repo)
    if repo:
        found.append(_Link("Code", repo))
    for link in found:
        checked_url(link.url, "paper link")
    upvotes = card.upvotes
    return _PaperView(
        title=title,
        abs_url=abs_url,
        authors=format_authors(card.authors, authors_shown) or "Authors unknown",
        tldr=one_line(card.ai_summary, MAX_SUMMARY) or None,
        abstract=abstract,
        upvotes=(
            f"{upvotes} upvote{'' if upvotes == 1 else 's'}"  # read as words, not "▲ 24"
            if isinstance(upvotes, int) and upvotes >= 0
            else None
        ),
        category=(one_line(card.categories[0], 40) or None) if card.categories else None,
        links=tuple(found),
    )


@dataclass(frozen=True)
class _Section:
    heading: str | None
    note: str | None
    cards: list[_Card] = field(default_factory=list)


TRENDING_HEADING = "Also trending today"
TRENDING_NOTE = "Popular on Hugging Face today, beyond what you follow."
REVISIT_HEADING = "Worth another look"
REVISIT_NOTE = "Papers you were sent before, with news since: each comes back once."
PREHEADER_PAD = Markup("&#847;&zwnj;&nbsp;" * 40)  # keeps body text out of the inbox preview
GMAIL_CLIP_BYTES = 102 * 1024  # Gmail clips an HTML part over 102 KB ("[Message clipped]")
HTML_BUDGET = 100 * 1024  # a little under Gmail's clip
MIN_ABSTRACT = 120  # the shortest abstract shortened to fit; no shorter, and never none


def _abstract_budgets(chars: int) -> list[int]:
    """Abstract lengths to try, longest first; never none at all (a digest of titles alone
    tells a reader too little: papers that still do not fit move behind a link instead)."""
    budgets = [chars]
    while budgets[-1] // 2 >= MIN_ABSTRACT:
        budgets.append(budgets[-1] // 2)
    return budgets


def _moved_line(moved: int) -> str:
    return f"{moved} more {'paper' if moved == 1 else 'papers'} did not fit in this mail."


class Renderer:
    """Renders digests; load once (templates compiled, CSS inlined) and reuse."""

    def __init__(
        self,
        settings: MailSettings,
        templates_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where inlined templates are kept for the next process
        (:class:`~digest.render.templates._InliningLoader`); None: inlined every time."""
        self.settings = settings
        folder = Path(templates_dir) if templates_dir is not None else default_templates_dir()
        missing = [n for n in (HTML_TEMPLATE, TEXT_TEMPLATE) if not (folder / n).is_file()]
        if missing:
            raise TemplateError(
                f"email templates not found: {', '.join(str(folder / n) for n in missing)} "
                "(pass templates_dir, or run from a checkout with templates/ beside digest/)"
            )
        self.templates_dir = folder
        self.env = jinja2.Environment(
            loader=_InliningLoader(str(folder), cache_dir),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "xml"),
                disabled_extensions=("txt",),
                default_for_string=True,
                default=True,
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=-1,
            # No ``finalize``: Jinja would call it for every value of both templates. The
            # HTML template's values are made ASCII where they are escaped instead.
            extensions=[FragmentCache],
        )
        self.env.filters["wrap"] = wrap
        self._html = write_values_as_text(self.env.get_template(HTML_TEMPLATE))
        self._text = self.env.get_template(TEXT_TEMPLATE)
        self._from = Address(
            display_name=one_line(settings.from_name, 120), addr_spec=settings.from_address
        )
        self._reply_to = settings.reply_to.strip() or None
        domain = settings.from_address.rpartition("@")[2] or "localhost"
        list_label = re.sub(r"[^A-Za-z0-9.-]", "", f"digest.{domain}")
        list_name = re.sub(r'["\\]', "", one_line(settings.from_name, 80)) or "Digest"
        self._list_id = f'"{list_name}" <{list_label}>'
        # The headers every digest shares, folded once as the email policy folds them.
        self._head = _fold("From", self._from)
        self._reply_to_line = _fold("Reply-To", self._reply_to) if self._reply_to else b""
        self._list_lines = _fold("List-Id", self._list_id)
        self._tail = (
            _fold("Auto-Submitted", "auto-generated")
            + _fold("Precedence", "bulk")
            + _fold("X-Auto-Response-Suppress", "OOF, AutoReply")
            + b"MIME-Version: 1.0\r\n"
        )

    # ----------------------------------------------------------------------------------------

    def render(self, data: DigestInput, *, fit: bool = True) -> Rendered:
        """The digest as subject, text, HTML and the full message; raises ValueError on a bad
        URL, Message-ID or naive Date (caller bugs, never feed text).

        ``fit``: keep the HTML under Gmail's clip (a mail); without it every paper is shown
        in full (the archive's web page)."""
        manage_url = checked_url(data.manage_url, "manage_url")
        unsubscribe_url = checked_url(data.unsubscribe_url, "unsubscribe_url")
        if len(unsubscribe_url) > MAX_HEADER_URL:
            raise ValueError("unsubscribe_url is too long for a header line")
        archive_url = checked_url(data.archive_url, "archive_url") if data.archive_url else None
        message_id = data.message_id.strip() if isinstance(data.message_id, str) else ""
        if len(message_id) > MAX_HEADER_URL or not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"message_id must look like <left@right>: {data.message_id!r:.80}")
        if data.date_header.tzinfo is None or data.date_header.utcoffset() is None:
            raise ValueError("date_header must be timezone-aware")
        urls = {"manage_url": manage_url, "unsubscribe_url": unsubscribe_url}
        urls["archive_url"] = archive_url
        urls["feed_url"] = checked_url(data.feed_url, "feed_url") if data.feed_url else None
        if data.feedback_urls and len(data.feedback_urls) != len(data.items):
            raise ValueError("feedback_urls must have one pair per item")
        for more, fewer in data.feedback_urls:
            checked_url(more, "feedback URL")
            checked_url(fewer, "feedback URL")

        # Gmail clips an HTML part over 102 KB, and what it hides is the end: the footer with
        # its unsubscribe link. A digest that would be larger is rendered again with shorter
        # abstracts; if the shortest still do not fit, the last papers move behind a "view in
        # the browser" line (the archive page shows them all), as few as need to.
        full = self.settings.abstract_chars
        for abstract_chars in _abstract_budgets(full) if fit else [full]:
            html, context = self._page(data, abstract_chars, urls, len(data.items))
            octets = html_octets(html)
            if not fit or octets.sent_size <= HTML_BUDGET:
                break
            log.warning("%s: HTML is %d bytes; shortening abstracts", message_id, octets.sent_size)
        kept = len(data.items)
        if fit and octets.sent_size > HTML_BUDGET:
            kept = self._most_that_fit(data, abstract_chars, urls)
            html, context = self._page(data, abstract_chars, urls, kept)
            octets = html_octets(html)
            log.warning(
                "%s: %d of %d papers fit under the clip; the rest are behind the browser link",
                message_id,
                kept,
                len(data.items),
            )
        text = self._text.render(context)
        subject = context["subject"]
        raw = self._wire(data, subject, text, octets, message_id, unsubscribe_url)
        moved = len(data.items) - kept
        return Rendered(subject, text, html, raw, abstract_chars, moved)

    def _page(
        self, data: DigestInput, abstract_chars: int, urls: dict[str, str | None], kept: int
    ) -> tuple[str, dict[str, Any]]:
        """The HTML with the first ``kept`` papers (the rest named as moved), and its
        context."""
        context = self._context(data, abstract_chars, urls, kept)
        return self._html.render(context).rstrip("\n") + "\n", context

    def _most_that_fit(
        self, data: DigestInput, abstract_chars: int, urls: dict[str, str | None]
    ) -> int:
        """The most papers whose page fits (bisection; 0 when even none fit: the frame and
        the footer are then all that can be sent)."""
        low, high = 0, len(data.items)  # the first is taken to fit, the last does not
        while high - low > 1:
            middle = (low + high) // 2
            html, _ = self._page(data, abstract_chars, urls, middle)
            fits = html_octets(html).sent_size <= HTML_BUDGET
            low, high = (middle, high) if fits else (low, middle)
        return low

    def _context(
        self,
        data: DigestInput,
        abstract_chars: int,
        urls: dict[str, str | None],
        kept: int | None = None,
    ) -> dict[str, Any]:
        shown = data.items if kept is None else data.items[:kept]
        sections = self._sections(shown, abstract_chars, data.feedback_urls[: len(shown)])
        moved = len(data.items) - len(shown)
        cards = [card for section in sections for card in section.cards]
        # Counted over every paper of the digest, those moved behind the link included.
        kinds = [item.section for item, _ in data.items]
        revisit, trending = kinds.count("revisit"), kinds.count("trending")
        picks = len(kinds) - revisit - trending
        if not kinds:
            count_line = "No new papers for you today"
        elif trending and picks:
            count_line = f"{_papers(picks)} for you, plus {trending} trending"
        elif trending:
            count_line = f"{trending} trending {'paper' if trending == 1 else 'papers'} today"
        else:
            count_line = f"{_papers(picks)} for you today"
        if revisit and not (picks or trending):
            count_line = f"{_papers(revisit)} worth another look"
        elif revisit:
            count_line += f" · {revisit} worth another look"
        profile = one_line(data.profile_summary, MAX_LINE)
        label = "Matched" if kinds else "Following"
        matched_line = f"{label}: {profile}" if profile else ""
        first = None
        if data.items:
            first = cards[0].title if cards else paper_view(data.items[0][1], 0, 1).title
            more = f" — and {len(kinds) - 1} more" if len(kinds) > 1 else ""
            preheader = _shorten(first, 140 - len(more)) + more
        else:
            preheader = "Nothing new matched your interests today."
        to_address = one_line(data.to_address, 320)
        brand = self._from.display_name or "Trending Papers"
        why_text = (
            f"You get this mail because {to_address} subscribed to the {brand} daily digest: "
            "new papers from arXiv and Hugging Face, ranked against your interests."
        )
        return {
            "subject": make_subject(data.local_date, first, len(kinds) - 1),
            "brand": brand,
            "long_date": long_date(data.local_date),
            "count_line": count_line,
            "matched_line": matched_line,
            "preheader": preheader,
            "preheader_pad": PREHEADER_PAD,
            "sections": sections,
            "moved": moved,
            "moved_line": _moved_line(moved) if moved else "",
            "why_text": why_text,
            **urls,
        }

    def _sections(
        self,
        items: Sequence[tuple[RankedItem, PaperCard]],
        abstract_chars: int,
        feedback: Sequence[tuple[str, str]] = (),
    ) -> list[_Section]:
        picks = _Section(None, None)
        trending = _Section(TRENDING_HEADING, TRENDING_NOTE)
        revisit = _Section(REVISIT_HEADING, REVISIT_NOTE)
        named = {"trending": trending, "revisit": revisit}
        for number, (item, card) in enumerate(items, start=1):
            section = named.get(item.section, picks)
            urls = feedback[number - 1] if feedback else None
            section.cards.append(self._card(number, item, card, abstract_chars, urls))
        return [s for s in (picks, revisit, trending) if s.cards]

    def _card(
        self,
        number: int,
        item: RankedItem,
        card: PaperCard,
        abstract_chars: int,
        feedback: tuple[str, str] | None = None,
    ) -> _Card:
        paper = paper_view(card, abstract_chars, self.settings.authors_shown)
        terms = tuple(item.highlight)
        # Positional, in _Card's order: a NamedTuple made with keywords costs twice as much.
        return _Card(
            number,
            paper.title,
            highlight_html(paper.title, terms),
            paper.abs_url,
            paper.authors,
            paper.tldr,
            paper.abstract,
            highlight_html(paper.abstract, terms),
            _format_reasons(tuple(item.reasons)),
            paper.upvotes,
            paper.category,
            paper.links,
            feedback[0] if feedback else None,
            feedback[1] if feedback else None,
        )

    def _wire(
        self,
        data: DigestInput,
        subject: str,
        text: str,
        html: Octets,
        message_id: str,
        unsubscribe_url: str,
    ) -> bytes:
        """The message's bytes: the headers, in this order, as ``EmailMessage`` with
        :data:`POLICY` writes them (From, To, Reply-To, Subject, Date, Message-ID, List-Id,
        List-Unsubscribe, List-Unsubscribe-Post, Auto-Submitted, Precedence,
        X-Auto-Response-Suppress, MIME-Version, Content-Type), then a multipart/alternative
        body: the text part, then the HTML part (:func:`html_octets`), each UTF-8, 7bit when
        it can go as it is and quoted-printable when not (:func:`~digest.render.wire.part`);
        the text part 8bit when only its non-ASCII keeps it from 7bit (the mailer re-encodes
        it for a server without 8BITMIME, and before DKIM signing)."""
        digest_of_id = hashlib.sha256(message_id.encode()).hexdigest()[:32]
        # "=_" never occurs in quoted-printable output, and a 7bit part that holds the
        # boundary goes quoted-printable, so the boundary cannot collide.
        boundary = f"=_digest_{digest_of_id}".encode("ascii")
        head = b"".join(
            (
                self._head,
                _to_line(data.to_address.strip()),
                self._reply_to_line,
                _subject_line(subject),
                _date_line(data.date_header),
                _raw_line("Message-ID", message_id),
                self._list_lines,
                _raw_line("List-Unsubscribe", f"<{unsubscribe_url}>"),
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                self._tail,
                _CONTENT_TYPE.replace(_BOUNDARY_SLOT, boundary),
            )
        )
        delimiter = b"--" + boundary
        return b"".join(
            (
                head,
                b"\r\n",
                delimiter,
                b"\r\n",
                part(b"plain", measured(text.encode("utf-8")), boundary, eight_bit=True),
                b"\r\n",
                delimiter,
                b"\r\n",
                part(b"html", html, boundary),
                b"\r\n",
                delimiter,
                b"--\r\n",
            )
        )
