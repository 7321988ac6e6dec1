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
for highlighting), and the message's bytes are assembled directly (:meth:`Renderer._wire`):
headers folded by the same ``email`` policy as before (the fixed ones once per renderer),
parts quoted-printable encoded by ``binascii``. ``Rendered.message`` parses those bytes back
for callers that want an ``EmailMessage``; tests/test_render_fast.py checks the bytes against
a straightforward rendering (premailer over the whole page, ``EmailMessage`` assembly).
"""

from __future__ import annotations

import binascii
import email
import hashlib
import logging
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
from markupsafe import Markup, escape
from premailer import Premailer

import digest
from digest.config import MailSettings
from digest.domain import paper_links
from digest.domain.addresses import wire_form
from digest.domain.analysis import term_key, words
from digest.domain.items import PaperCard, RankedItem, Reason
from digest.domain.text import clean_text, valid_github
from digest.errors import ConfigError

__all__ = ["DigestInput", "Rendered", "Renderer", "TemplateError", "default_templates_dir"]

HTML_TEMPLATE = "email/digest.html"
TEXT_TEMPLATE = "email/digest.txt"

# The message policy: CRLF, RFC 5322 folding at 78, and raw headers (set_raw) left as given,
# so a long List-Unsubscribe URL is never turned into an RFC 2047 encoded word.
POLICY = email_policy.SMTP.clone(refold_source="none")
# For a message to an address that needs SMTPUTF8: headers in UTF-8, not encoded words.
UTF8_POLICY = POLICY.clone(utf8=True)

# Highlight style, inline because Gmail drops classes in some views; dark mode overrides it
# through the .hl class and !important.
HIGHLIGHT_STYLE = "background-color:#fff3b0;color:inherit;padding:0 2px;border-radius:3px"

SUBJECT_MAX = 118
TEXT_WIDTH = 76
MAX_TITLE = 500  # the same caps as ingest: feed text is not trusted to be reasonable
MAX_ABSTRACT = 6000
MAX_AUTHOR = 200
MAX_SUMMARY = 600
MAX_LINE = 300  # profile summary and other one-liners
MAX_HEADER_URL = 900  # a raw header line must stay under 998 octets

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

log = logging.getLogger(__name__)


class TemplateError(ConfigError):
    """The email templates are missing or cannot be prepared."""


@dataclass(frozen=True)
class DigestInput:
    to_address: str  # already validated and normalised
    local_date: date  # the subscriber's date the digest is for
    items: Sequence[tuple[RankedItem, PaperCard]]  # picks first, then section="trending"
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


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    raw: bytes  # the whole message as it goes on the wire (CRLF line ends)

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
# Text helpers (pure)


def one_line(value: str | None, limit: int) -> str:
    """Feed or caller text as one clean line: no controls, bidi overrides or CR/LF."""
    return clean_text(value, limit)


_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"“'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|approx|resp|Fig|Figs|Eq|Eqs|Sec|Ref|Refs|No|Dr|Prof|"
    r"Mr|Ms|St|Inc|Ltd|Jr)|(?<![\w.])[A-Z])\.$"
)


@lru_cache(maxsize=4096)
def trim_abstract(text: str, limit: int) -> str:
    """``text`` cut at the sentence end nearest ``limit`` (never mid-word), "…" when cut.

    Kept whole when at most 15% over ``limit``. Otherwise the last sentence end between 60%
    and 115% of ``limit`` wins; with none there, the cut falls on the last space before
    ``limit``.
    """
    high = int(limit * 1.15)
    if len(text) <= high:
        return text
    best = None
    for match in _SENTENCE_END.finditer(text, 0, high + 1):
        end = match.end()
        if end < limit * 0.6 or end > high:
            continue
        if _ABBREVIATION.search(text[max(0, end - 8) : end]):
            continue
        best = end
    if best is not None:
        return text[:best] + " …"
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    # One enormous word has no boundary to respect: cut it.
    cut = cut[:space] if space > limit * 0.5 else cut[:limit]
    return cut.rstrip(" ,;:-–—(") + "…"


@lru_cache(maxsize=8192)
def _words(
    text: str,
) -> tuple[tuple[str, ...], tuple[tuple[str, int, int], ...], dict[str, list[int]]]:
    """The stems of ``text``, each word's (stem, start, end), and where each stem occurs:
    worked out once per title or abstract, not once per mail."""
    found = tuple(words(text))
    where: dict[str, list[int]] = {}
    for index, (stem, _, _) in enumerate(found):
        where.setdefault(stem, []).append(index)
    return tuple(w[0] for w in found), found, where


@lru_cache(maxsize=4096)
def _term_keys(terms: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted({key for key in map(_term_key, terms) if key}))


_term_key = lru_cache(maxsize=16384)(term_key)


def highlight_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """``digest.analysis.match_spans`` (the ranking's own definition of a match), with the
    text's words and the terms' stems worked out once rather than per mail."""
    keys = _term_keys(tuple(terms))
    if not keys or not text:
        return []
    stems, tokens, where = _words(text)
    spans: list[tuple[int, int]] = []
    for key in keys:
        for index in where.get(key[0], ()):
            end = index + len(key)
            if stems[index:end] == key:
                spans.append((tokens[index][1], tokens[end - 1][2]))
    if not spans:
        return spans
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@lru_cache(maxsize=16384)
def highlight_html(text: str, terms: tuple[str, ...]) -> Markup:
    """``text`` escaped, with the spans where ``terms`` match wrapped in an inline <mark>.

    The raw text is split at the spans first and each piece escaped on its own, so an entity
    is never cut or marked up.
    """
    spans = highlight_spans(text, terms) if terms else []
    escaped, where = _escaped(text)
    if not spans:
        return Markup(escaped)
    parts: list[str] = []
    position = 0
    for start, end in spans:
        # Escaping is character by character, so a slice of the escaped text at the
        # characters' own positions is the escaped slice.
        a, b = (start, end) if where is None else (where[start], where[end])
        parts += (escaped[position:a], _MARK_OPEN, escaped[a:b], "</mark>")
        position = b
    parts.append(escaped[position:])
    return Markup("".join(parts))


_MARK_OPEN = f'<mark class="hl" style="{HIGHLIGHT_STYLE}">'
_ESCAPED_LENGTH = {"&": 5, "<": 4, ">": 4, '"': 5, "'": 5}  # &amp; &lt; &gt; &#34; &#39;


@lru_cache(maxsize=8192)
def _escaped(text: str) -> tuple[str, list[int] | None]:
    """``text`` HTML-escaped, and where each of its characters starts in the escaped text
    (None when nothing needed escaping, so positions are the same); once per text."""
    escaped = str(escape(text))
    if len(escaped) == len(text):
        return escaped, None
    where = [0]
    for ch in text:
        where.append(where[-1] + _ESCAPED_LENGTH.get(ch, 1))
    return escaped, where


def format_authors(authors: Sequence[str], shown: int) -> str:
    names = [one_line(name, MAX_AUTHOR) for name in authors]
    names = [name for name in names if name]
    if len(names) > shown:
        return ", ".join(names[:shown]) + " et al."
    return ", ".join(names)


@lru_cache(maxsize=16384)
def _label(text: str) -> str:
    return one_line(text, 120)


def format_reasons(reasons: Sequence[Reason]) -> str:
    """'Matched "graph neural network", diffusion · author Yann LeCun · cs.LG'."""
    return _format_reasons(tuple(reasons))


@lru_cache(maxsize=16384)
def _format_reasons(reasons: tuple[Reason, ...]) -> str:
    """'Matched "graph neural network", diffusion · author Yann LeCun · cs.LG'."""
    terms: list[str] = []
    authors: list[str] = []
    categories: list[str] = []
    similar: list[str] = []
    learned: list[str] = []
    trending: list[str] = []
    for reason in reasons:
        label = _label(reason.label)
        if not label:
            continue
        if reason.kind == "phrase" or (reason.kind == "term" and " " in label):
            terms.append(f"“{label}”" if '"' in label else f'"{label}"')
        elif reason.kind == "term":
            terms.append(label)
        elif reason.kind == "author":
            authors.append(label)
        elif reason.kind == "category":
            categories.append(label)
        elif reason.kind == "semantic":
            similar.append(f'"{label}"')
        elif reason.kind == "learned":
            learned.append(label)
        elif reason.kind == "trending":
            trending.append(label)
    parts: list[str] = []
    if terms:
        parts.append("Matched " + ", ".join(dict.fromkeys(terms)))
    for name in dict.fromkeys(authors):
        parts.append(f"author {name}")
    if categories:
        parts.append(", ".join(dict.fromkeys(categories)))
    if similar:
        parts.append("close to " + ", ".join(dict.fromkeys(similar)))
    if learned:
        parts.append("from your feedback: " + ", ".join(dict.fromkeys(learned)))
    for count in dict.fromkeys(trending):
        unit = "upvote" if count == "1" else "upvotes"
        parts.append(f"Trending: {count} {unit}" if count.isdigit() else f"Trending: {count}")
    return " · ".join(parts)


def short_date(day: date) -> str:
    return f"{_DAYS[day.weekday()][:3]} {day.day} {_MONTHS[day.month - 1][:3]}"


def long_date(day: date) -> str:
    return f"{_DAYS[day.weekday()]}, {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word when possible, "…" when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.5:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—(") + "…"


def make_subject(day: date, top_title: str | None, more: int) -> str:
    if top_title is None:
        return f"Your papers for {short_date(day)}: nothing new matched today"
    prefix = f"Your papers for {short_date(day)}: "
    suffix = f" (+{more} more)" if more > 0 else ""
    room = max(SUBJECT_MAX - len(prefix) - len(suffix), 20)
    return prefix + _shorten(one_line(top_title, MAX_TITLE), room) + suffix


def _papers(n: int) -> str:
    return f"{n} paper" if n == 1 else f"{n} papers"


_LONG_WORD = re.compile(rf"\S{{{TEXT_WIDTH + 1},}}")


@lru_cache(maxsize=16384)
def wrap(text: str, indent: str = "", first: str | None = None) -> str:
    """Plain text wrapped at ~78 columns; URLs are never broken, other giant words are."""

    def split_word(match: re.Match[str]) -> str:
        word = match.group()
        if re.match(r"https?://", word):
            return word
        size = TEXT_WIDTH - len(indent)
        return " ".join(word[i : i + size] for i in range(0, len(word), size))

    text = _LONG_WORD.sub(split_word, text)
    return textwrap.fill(
        text,
        width=TEXT_WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


# --------------------------------------------------------------------------------------------
# URL and header guards


_URL_OK = re.compile(r"https?://[^\s\"'<>\\`\x00-\x1f\x7f]+", re.ASCII)
_MESSAGE_ID = re.compile(r"<[!#-;=?-\[\]-~]+@[!#-;=?-\[\]-~]+>", re.ASCII)


def checked_url(url: str, what: str) -> str:
    """``url`` when it is an http(s) URL that cannot break out of an attribute or header."""
    if not isinstance(url, str) or not _URL_OK.fullmatch(url):
        raise ValueError(f"{what} must be an http(s) URL without spaces or quotes: {url!r:.80}")
    return url


# --------------------------------------------------------------------------------------------
# CSS inlining of a Jinja template's source, once

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"<!--JJB(\d{5})Q-->|JJV(\d{5})Q")


def inline_template_css(source: str, name: str = "template") -> str:
    """The Jinja ``source`` with its <style> rules inlined as style="" attributes.

    Jinja tags are swapped for inert placeholders around premailer and put back after; a tag
    that premailer moved or mangled (a block tag inside an attribute, say) is an error.
    """
    saved: list[str] = []

    def protect(match: re.Match[str]) -> str:
        saved.append(match.group())
        index = len(saved) - 1
        if match.group().startswith("{{"):
            return f"JJV{index:05d}Q"
        return f"<!--JJB{index:05d}Q-->"

    protected = _JINJA_TAG.sub(protect, source)
    premailer = Premailer(
        protected,
        keep_style_tags=False,  # drop the inlined rules; leftovers (@media) stay in <style>
        strip_important=False,  # the @media overrides need their !important
        disable_validation=True,  # cssutils does not know mso-* or color-scheme properties
        remove_classes=False,  # the @media rules select by class
        allow_network=False,
        disable_link_rewrites=True,
        align_floating_images=False,
        cssutils_logging_level=logging.CRITICAL,
    )
    inlined = premailer.transform(pretty_print=False)
    if "{{" in inlined or "{%" in inlined:
        raise TemplateError(f"{name}: a Jinja tag survived outside a placeholder")
    restored = [0] * len(saved)

    def restore(match: re.Match[str]) -> str:
        index = int(match.group(1) or match.group(2))
        if index >= len(saved):
            raise TemplateError(f"{name}: unknown placeholder {match.group()}")
        restored[index] += 1
        return saved[index]

    result = _PLACEHOLDER.sub(restore, inlined)
    lost = [saved[i] for i, count in enumerate(restored) if count != 1]
    if lost:
        raise TemplateError(
            f"{name}: CSS inlining moved or mangled Jinja tags {lost[:3]}; block tags must "
            "sit between elements or in text, never inside attributes or <style>"
        )
    return result


class _InliningLoader(jinja2.FileSystemLoader):
    """Loads templates from disk; ``.html`` ones come back with their CSS inlined."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html"):
            source = inline_template_css(source, template)
        return source, filename, uptodate


# --------------------------------------------------------------------------------------------
# View models handed to the templates


@dataclass(frozen=True)
class _Link:
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
    repo = valid_github(card.github_repo)
    if repo:
        found.append(_Link("Code", repo))
    for link in found:
        checked_url(link.url, "paper link")
    upvotes = card.upvotes
    return _PaperView(
        title=title,
        abs_url=abs_url,
        authors=format_authors(card.authors, authors_shown),
        tldr=one_line(card.ai_summary, MAX_SUMMARY) or None,
        abstract=abstract,
        upvotes=f"▲ {upvotes}" if isinstance(upvotes, int) and upvotes >= 0 else None,
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
PREHEADER_PAD = Markup("&#847;&zwnj;&nbsp;" * 40)  # keeps body text out of the inbox preview
HTML_BUDGET = 100 * 1024  # Gmail clips an HTML part over 102 KB


def _abstract_budgets(chars: int) -> list[int]:
    """Abstract lengths to try, longest first, ending with 0 (no abstracts)."""
    budgets = [chars]
    while budgets[-1] // 2 >= 120:
        budgets.append(budgets[-1] // 2)
    return [*budgets, 0]


class Renderer:
    """Renders digests; load once (templates compiled, CSS inlined) and reuse."""

    def __init__(self, settings: MailSettings, templates_dir: Path | None = None) -> None:
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
            loader=_InliningLoader(str(folder)),
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
        )
        self.env.filters["wrap"] = wrap
        self._html = self.env.get_template(HTML_TEMPLATE)
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

    def render(self, data: DigestInput) -> Rendered:
        """The digest as subject, text, HTML and the full message; raises ValueError on a bad
        URL, Message-ID or naive Date (caller bugs, never feed text)."""
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
        if data.feedback_urls and len(data.feedback_urls) != len(data.items):
            raise ValueError("feedback_urls must have one pair per item")
        for more, fewer in data.feedback_urls:
            checked_url(more, "feedback URL")
            checked_url(fewer, "feedback URL")

        # Gmail clips an HTML part over 102 KB; a digest that would be larger is rendered again
        # with shorter abstracts (then none), keeping every paper and every link.
        for abstract_chars in _abstract_budgets(self.settings.abstract_chars):
            context = self._context(data, abstract_chars, urls)
            html = self._html.render(context).rstrip("\n") + "\n"
            size = len(html.encode())
            if size <= HTML_BUDGET:
                break
            log.warning("%s: HTML is %d bytes; shortening abstracts", message_id, size)
        text = self._text.render(context)
        subject = context["subject"]
        raw = self._wire(data, subject, text, html, message_id, unsubscribe_url)
        return Rendered(subject=subject, text=text, html=html, raw=raw)

    def _context(
        self, data: DigestInput, abstract_chars: int, urls: dict[str, str | None]
    ) -> dict[str, Any]:
        sections = self._sections(data.items, abstract_chars, data.feedback_urls)
        cards = [card for section in sections for card in section.cards]
        picks = sum(len(s.cards) for s in sections if s.heading is None)
        trending = len(cards) - picks
        if not cards:
            count_line = "No new papers for you today"
        elif trending and picks:
            count_line = f"{_papers(picks)} for you, plus {trending} trending"
        elif trending:
            count_line = f"{trending} trending {'paper' if trending == 1 else 'papers'} today"
        else:
            count_line = f"{_papers(picks)} for you today"
        profile = one_line(data.profile_summary, MAX_LINE)
        label = "Matched" if cards else "Following"
        matched_line = f"{label}: {profile}" if profile else ""
        if cards:
            more = f" — and {len(cards) - 1} more" if len(cards) > 1 else ""
            preheader = _shorten(cards[0].title, 140 - len(more)) + more
        else:
            preheader = "Nothing new matched your interests today."
        to_address = one_line(data.to_address, 320)
        brand = self._from.display_name or "Trending Papers"
        why_text = (
            f"You get this mail because {to_address} subscribed to the {brand} daily digest: "
            "new papers from arXiv and Hugging Face, ranked against your interests."
        )
        return {
            "subject": make_subject(
                data.local_date, cards[0].title if cards else None, len(cards) - 1
            ),
            "brand": brand,
            "long_date": long_date(data.local_date),
            "count_line": count_line,
            "matched_line": matched_line,
            "preheader": preheader,
            "preheader_pad": PREHEADER_PAD,
            "sections": sections,
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
        for number, (item, card) in enumerate(items, start=1):
            section = trending if item.section == "trending" else picks
            urls = feedback[number - 1] if feedback else None
            section.cards.append(self._card(number, item, card, abstract_chars, urls))
        return [s for s in (picks, trending) if s.cards]

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
        return _Card(
            number=number,
            title=paper.title,
            title_html=highlight_html(paper.title, terms),
            abs_url=paper.abs_url,
            authors=paper.authors,
            tldr=paper.tldr,
            abstract=paper.abstract,
            abstract_html=highlight_html(paper.abstract, terms),
            reason=_format_reasons(tuple(item.reasons)),
            upvotes=paper.upvotes,
            category=paper.category,
            links=paper.links,
            more_url=feedback[0] if feedback else None,
            fewer_url=feedback[1] if feedback else None,
        )

    def _wire(
        self,
        data: DigestInput,
        subject: str,
        text: str,
        html: str,
        message_id: str,
        unsubscribe_url: str,
    ) -> bytes:
        """The message's bytes: the headers, in this order, as ``EmailMessage`` with
        :data:`POLICY` writes them (From, To, Reply-To, Subject, Date, Message-ID, List-Id,
        List-Unsubscribe, List-Unsubscribe-Post, Auto-Submitted, Precedence,
        X-Auto-Response-Suppress, MIME-Version, Content-Type), then a multipart/alternative
        body: the text part, then the HTML part, each UTF-8 and quoted-printable."""
        digest_of_id = hashlib.sha256(message_id.encode()).hexdigest()[:32]
        # "=_" never occurs in quoted-printable output, so the boundary cannot collide.
        boundary = f"=_digest_{digest_of_id}".encode("ascii")
        head = b"".join(
            (
                self._head,
                _to_line(data.to_address.strip()),
                self._reply_to_line,
                _fold_cached("Subject", subject),
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
                _PART_HEADERS % b"plain",
                quoted_printable(text),
                b"\r\n",
                delimiter,
                b"\r\n",
                _PART_HEADERS % b"html",
                quoted_printable(html),
                b"\r\n",
                delimiter,
                b"--\r\n",
            )
        )


# --------------------------------------------------------------------------------------------
# Message bytes


def _fold(name: str, value: object) -> bytes:
    """One header as ``EmailMessage`` (with :data:`POLICY`) writes it: parsed by the header
    registry, folded at 78 columns, RFC 2047 words for non-ASCII text, CRLF."""
    return POLICY.header_factory(name, value).fold(policy=POLICY).encode("ascii")


@lru_cache(maxsize=4096)
def _fold_cached(name: str, value: str) -> bytes:
    # Subjects repeat: everyone whose top paper and count are the same shares one.
    return _fold(name, value)


def _date_line(when: datetime) -> bytes:
    # Keyed by the text: equal datetimes in two zones are different headers. One planning
    # round gives a whole batch the same Date.
    return _fold_cached("Date", format_datetime(when))


# A plain address the header registry leaves as it is: dot-atoms, ASCII, short enough that
# nothing is folded. Anything else goes through the registry.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+",
    re.ASCII,
)


def _to_line(address: str) -> bytes:
    wire, utf8 = wire_form(address)  # an IDN domain as its ASCII form
    if len(wire) <= 70 and _PLAIN_ADDRESS.fullmatch(wire):
        return f"To: {wire}\r\n".encode("ascii")
    if utf8:  # a non-ASCII local part: the header in UTF-8 (RFC 6532), sent with SMTPUTF8
        return UTF8_POLICY.header_factory("To", wire).fold(policy=UTF8_POLICY).encode()
    return _fold("To", wire)


def _raw_line(name: str, value: str) -> bytes:
    # As ``EmailMessage.set_raw`` stores it: written as given (already checked to be one
    # ASCII line under 998 octets).
    return f"{name}: {value}\r\n".encode("ascii")


_BOUNDARY_SLOT = b"=_digest_" + b"0" * 32
_CONTENT_TYPE = _fold(
    "Content-Type", f'multipart/alternative; boundary="{_BOUNDARY_SLOT.decode()}"'
)
_PART_HEADERS = (
    b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
)


_QP_LINES: dict[bytes, bytes] = {}
_QP_CACHE_LINES = 30_000


def quoted_printable(text: str) -> bytes:
    """``text`` as a UTF-8, quoted-printable body with CRLF line ends (RFC 2045: lines of at
    most 76 characters, soft breaks, trailing white space encoded); its lines normalised as
    ``EmailMessage.set_content`` normalises them, ending with a line break.

    The encoding is line by line (a line's encoding never depends on its neighbours), so the
    lines every digest shares (the template's, a paper's authors, links and wrapped
    abstract) are encoded once and looked up after.
    """
    cache = _QP_LINES
    if len(cache) > _QP_CACHE_LINES:
        cache.clear()
    out = []
    for line in text.encode("utf-8").splitlines():
        encoded = cache.get(line)
        if encoded is None:
            encoded = binascii.b2a_qp(line + b"\n", istext=True).replace(b"\n", b"\r\n")
            cache[line] = encoded
        out.append(encoded)
    return b"".join(out)
