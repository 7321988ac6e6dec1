"""The fast rendering path against a straightforward one, on the same digests.

Fast (what is sent): CSS inlined once per template, per-paper work cached, the message's
bytes assembled directly (headers folded by the email policy, binascii quoted-printable).
Straightforward (written out here): Jinja over the template as written, premailer over the
whole page, then ``EmailMessage`` with ``set_content``/``add_alternative`` and ``as_bytes``.

They must be the same mail: the same elements, attributes, inline styles (highlights
included) and text; the same phone and dark-mode ``@media`` rules; byte-identical headers;
the same decoded parts with the same part headers; both strictly parseable.
"""

from __future__ import annotations

import binascii
import email
import hashlib
import logging
import quopri
import random
import re
import textwrap
from dataclasses import replace
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html.parser import HTMLParser

import jinja2
import pytest
import test_render as base
from markupsafe import Markup, escape
from premailer import Premailer

from digest.config import MailSettings
from digest.delivery.mailers import seven_bit
from digest.domain.analysis import match_spans
from digest.domain.items import PaperCard, Reason
from digest.render import HTML_TEMPLATE, DigestInput, Renderer, wire
from digest.render.templates import FragmentCache, escape_ascii_output
from digest.render.text import (
    HIGHLIGHT_STYLE,
    TEXTWRAP,
    _wrap,
    highlight_html,
    highlight_spans,
    wrap,
)
from digest.render.wire import POLICY, _LineCache, quoted_printable
from digest.sources.huggingface import parse_daily_papers
from digest.sources.sample import read_listing

# -- the straightforward rendering ----------------------------------------------------------


def straightforward_html(renderer: Renderer, data: DigestInput) -> str:
    """Jinja over the template as written (its <style> block intact), then premailer over
    the whole page, with the options the renderer gives premailer."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(renderer.templates_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=[FragmentCache],  # new for this page: nothing comes from another digest
    )
    env.filters["wrap"] = wrap
    urls = {
        "manage_url": data.manage_url,
        "unsubscribe_url": data.unsubscribe_url,
        "archive_url": data.archive_url,
        "feed_url": data.feed_url,
    }
    context = renderer._context(data, renderer.settings.abstract_chars, urls)
    page = env.get_template(HTML_TEMPLATE).render(context)
    return Premailer(
        page,
        keep_style_tags=False,
        strip_important=False,
        disable_validation=True,
        remove_classes=False,
        allow_network=False,
        disable_link_rewrites=True,
        align_floating_images=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)


def transfer_encoding(text: str, eight_bit: bool = False) -> str:
    lines = text.encode().splitlines()
    as_is = (eight_bit or text.isascii()) and "\0" not in text
    if not (as_is and all(len(line) <= 998 for line in lines)):
        return "quoted-printable"
    return "7bit" if text.isascii() else "8bit"


def straightforward_message(
    renderer: Renderer, data: DigestInput, subject: str, text: str, html: str
) -> EmailMessage:
    """The message as the email package assembles it (the renderer's previous way)."""
    message = EmailMessage(policy=POLICY)
    message["From"] = renderer._from
    message["To"] = data.to_address.strip()
    if renderer._reply_to:
        message["Reply-To"] = renderer._reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(data.date_header)
    message.set_raw("Message-ID", data.message_id)
    message["List-Id"] = renderer._list_id
    message.set_raw("List-Unsubscribe", f"<{data.unsubscribe_url}>")
    message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "bulk"
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    # The HTML's non-ASCII as character references; each part 7bit when RFC 2045 and 5322
    # allow it as it is (ASCII, no NUL, no line over 998 octets), the plain text 8bit when
    # only its non-ASCII stands in the way, else quoted-printable.
    html = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
    text_cte = transfer_encoding(text, eight_bit=True)
    message.set_content(text, subtype="plain", charset="utf-8", cte=text_cte)
    message.add_alternative(html, subtype="html", charset="utf-8", cte=transfer_encoding(html))
    for part in message.iter_parts():
        del part["MIME-Version"]
    digest_of_id = hashlib.sha256(data.message_id.encode()).hexdigest()[:32]
    message.set_boundary(f"=_digest_{digest_of_id}")
    return message


# -- comparing ------------------------------------------------------------------------------


class Dom(HTMLParser):
    """Start tags with their attributes (style as a set of declarations), text, and the
    <style> block's rules, each whitespace-normalised."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[tuple[str, object], ...]]] = []
        self.text: list[str] = []
        self.css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        normal: dict[str, object] = {}
        for name, value in attrs:
            if name == "style" and value is not None:
                normal[name] = frozenset(" ".join(d.split()) for d in value.split(";") if d.strip())
            else:
                normal[name] = value
        self.tags.append((tag, tuple(sorted(normal.items()))))
        self._in_style = tag == "style"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        words = " ".join(data.split())
        if not words:
            return
        (self.css if self._in_style else self.text).append(words)

    def handle_comment(self, data: str) -> None:
        self.text.append(f"<!--{' '.join(data.split())}-->")


def dom(html: str) -> Dom:
    parsed = Dom()
    parsed.feed(html)
    parsed.close()
    return parsed


def hf_cards() -> list[PaperCard]:
    body = (base.SAMPLE / "huggingface_daily_papers_2026-08-13.json").read_bytes()
    cards = [base._card(i + 1, r) for i, r in enumerate(parse_daily_papers(body, base.HF_DAY))]
    return [replace(c, categories=("cs.LG",)) if i % 2 else c for i, c in enumerate(cards)]


def listing_cards() -> list[PaperCard]:
    records = read_listing((base.SAMPLE / "listing.jsonl").read_bytes(), "listing.jsonl")
    return [base._card(1000 + i, r) for i, r in enumerate(records[:12])]


def digests() -> list[tuple[str, DigestInput]]:
    hf = hf_cards()
    listing = listing_cards()
    ten = [(base.pick(c), c) for c in hf[:7]] + [(base.trending(c), c) for c in hf[7:10]]
    long = [replace(c, abstract=(c.abstract + " ") * 3) for c in hf[:10]]
    hostile_card = replace(
        hf[0],
        title=base.HOSTILE_TITLE[:300],
        abstract='See <a href="javascript:alert(2)">x</a> & "quotes" \'too\' {% raw %}',
        authors=('"><img src=x onerror=alert(1)>',),
    )
    return [
        ("ten papers", base.make_input(ten)),
        ("only trending", base.make_input(ten[7:], n=2)),
        (
            "highlights",
            base.make_input([(base.pick(c, terms=("transformer",)), c) for c in listing]),
        ),
        ("long abstracts", base.make_input([(base.pick(c), c) for c in long], n=3)),
        (
            "hostile text",
            base.make_input(
                [(base.pick(hostile_card, terms=("script", "quotes")), hostile_card)],
                profile_summary="x <b>bold</b> & more",
            ),
        ),
        ("empty", base.make_input([], n=4)),
        (
            "non-ASCII subject and odd address",
            base.make_input(
                [(base.pick(c), c) for c in hf[:2]],
                to='"odd name"@example.com',
                n=5,
            ),
        ),
    ]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(
        MailSettings(
            from_address="digest@papers.example.org",
            from_name="Trending Papers — Ünïcode",
            reply_to="help@papers.example.org",
        )
    )


@pytest.mark.parametrize("name", [name for name, _ in digests()])
def test_fast_html_is_the_straightforward_html(renderer: Renderer, name: str) -> None:
    data = dict(digests())[name]
    fast = dom(renderer.render(data).html)
    plain = dom(straightforward_html(renderer, data))
    assert fast.tags == plain.tags
    assert fast.text == plain.text
    assert fast.css == plain.css
    css = " ".join(fast.css)
    assert "@media (max-width: 600px)" in css and "@media (prefers-color-scheme: dark)" in css
    assert ".hl {" in css  # dark-mode highlight override
    # Inline styles everywhere a class is styled, highlights included.
    for tag, attrs in fast.tags:
        names = dict(attrs)
        if tag == "mark":
            assert "style" in names and "hl" in str(names["class"])
        if tag in ("td", "p", "h1", "h2", "h3", "a", "div") and names.get("class"):
            assert "style" in names, (tag, names)


@pytest.mark.parametrize("name", [name for name, _ in digests()])
def test_fast_message_is_the_straightforward_message(renderer: Renderer, name: str) -> None:
    data = dict(digests())[name]
    out = renderer.render(data)
    plain = straightforward_message(renderer, data, out.subject, out.text, out.html).as_bytes()
    fast = out.raw
    # Headers: byte for byte.
    assert fast.split(b"\r\n\r\n", 1)[0] == plain.split(b"\r\n\r\n", 1)[0]
    a = email.message_from_bytes(fast, policy=policy.strict)
    b = email.message_from_bytes(plain, policy=policy.strict)
    assert a.defects == [] and all(part.defects == [] for part in a.walk())
    assert a.get_boundary() == b.get_boundary()
    fast_parts, plain_parts = list(a.iter_parts()), list(b.iter_parts())
    assert len(fast_parts) == len(plain_parts) == 2
    for x, y in zip(fast_parts, plain_parts, strict=True):
        assert list(x.items()) == list(y.items())  # the part headers
        assert x.get_content() == y.get_content()  # the decoded text
    # Every line CRLF; within RFC 2045's 76 characters in a quoted-printable part, RFC 5322's
    # 998 in a 7bit one.
    assert b"\n" not in fast.replace(b"\r\n", b"")
    for encoded in fast.split(b"\r\n--=_digest_")[1:-1]:
        headers, body = encoded.split(b"\r\n\r\n", 1)
        longest = max(len(line) for line in body.split(b"\r\n"))
        assert longest <= (76 if b"quoted-printable" in headers else 998)
    # The HTML goes as it is: its tags are broken between attributes, so no line is too long
    # (tests/render/test_render.py has the case that is).
    assert fast_parts[1]["Content-Transfer-Encoding"] == "7bit"
    # ``Rendered.message`` is those bytes, parsed.
    assert [(k, str(v)) for k, v in out.message.items()] == [(k, str(v)) for k, v in a.items()]


def test_re_encoding_an_8bit_part_gives_the_renderers_quoted_printable(
    renderer: Renderer,
) -> None:
    """For a server without 8BITMIME (and before DKIM signing) the mailer re-encodes the
    8bit text part: byte for byte what the renderer writes when 8bit is not allowed."""
    re_encoded = 0
    for _name, data in digests():
        out = renderer.render(data)
        boundary = out.message.get_boundary().encode()
        text = wire.measured(out.text.encode())
        eight = wire.part(b"plain", text, boundary, eight_bit=True)
        quoted = wire.part(b"plain", text, boundary)
        assert out.raw.count(eight) == 1
        assert seven_bit(out.raw) == out.raw.replace(eight, quoted)
        re_encoded += eight != quoted
    assert re_encoded  # some digests had an 8bit part


def test_highlight_spans_are_the_rankings_match_spans() -> None:
    rng = random.Random(3)
    hf = hf_cards() + listing_cards()
    texts = [c.title for c in hf] + [c.abstract for c in hf]
    vocabulary = sorted({w for t in texts for w in re.findall(r"[A-Za-z][\w-]+", t)})
    for text in texts:
        for _ in range(8):
            words = rng.sample(vocabulary, rng.randint(1, 6))
            phrase = " ".join(text.split()[3:5]) if len(text.split()) > 5 else "a b"
            terms = tuple([*words, phrase, "LLMs", "transformers"])
            assert highlight_spans(text, terms) == match_spans(text, terms), (text[:40], terms)


def test_highlighting_escapes_as_before() -> None:
    text = "A <b>\"quoted\"</b> & 'single' transformer, <transformers>"
    mark = f'<mark class="hl"\nstyle="{HIGHLIGHT_STYLE}">'
    assert str(highlight_html(text, ("transformer",))) == (
        "A &lt;b&gt;&#34;quoted&#34;&lt;/b&gt; &amp; &#39;single&#39; "
        f"{mark}transformer</mark>, &lt;{mark}transformers</mark>&gt;"
    )
    assert str(highlight_html(text, ())) == str(escape(text))


@pytest.mark.parametrize(
    "text",
    [
        "plain\n",
        ".\nalone dot\n.\n",
        "trailing space \nand tab\t\n",
        "x" * 75 + "=" + "y" * 10 + "\n",
        "x" * 74 + "é" + "y" * 200 + "\n",
        "= " * 100 + "\n",
        "no newline at the end",
        "crlf\r\nlines\rmixed\n",
        "",
    ],
)
def test_quoted_printable_decodes_to_the_text(text: str) -> None:
    encoded = quoted_printable(text)
    lines = text.encode().splitlines()
    normal = b"\n".join(lines) + b"\n" if lines else b""
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")) == normal
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    # Line by line (cached) is the same as all at once.
    whole = binascii.b2a_qp(normal, istext=True).replace(b"\n", b"\r\n")
    assert encoded == whole


BOUNDARY = b"=_digest_" + b"5" * 32


@pytest.mark.parametrize(
    ("body", "cte"),
    [
        (b"plain\nlines\n", b"7bit"),
        (b"x" * 998 + b"\n", b"7bit"),  # RFC 5322's limit, exactly
        (b"x" * 999 + b"\n", b"quoted-printable"),
        (b"a\n" + b"x" * 999 + b"\nb\n", b"quoted-printable"),
        (b"a\n" + b"x" * 999, b"quoted-printable"),
        (b"a\n" + b"x" * 998, b"7bit"),
        (b"short\r" + b"x" * 999, b"quoted-printable"),  # a lone CR ends a line too
        (b"crlf\r\nlines\rmixed\n", b"7bit"),
        (b"\n\n", b"7bit"),
        (b"nul \x00 inside\n", b"quoted-printable"),  # RFC 2045: no NUL in 7bit
        ("caf\u00e9\n".encode(), b"quoted-printable"),
        (b"--" + BOUNDARY + b"--\n", b"quoted-printable"),  # would end the part early
        (b"", b"7bit"),
    ],
)
def test_a_part_goes_7bit_only_when_it_can(body: bytes, cte: bytes) -> None:
    check_part(wire.part(b"plain", wire.measured(body), BOUNDARY), body, cte)


@pytest.mark.parametrize(
    ("body", "cte"),
    [
        ("caf\u00e9 \u00b7 r\u00e9sum\u00e9\u2026\n".encode(), b"8bit"),
        (b"plain\nlines\n", b"7bit"),  # ASCII stays 7bit
        ("\u00e9".encode() * 499 + b"\n", b"8bit"),  # 998 octets, exactly
        ("\u00e9".encode() * 499 + b"x\n", b"quoted-printable"),  # 999: too long for 8bit too
        ("caf\u00e9\r\nmixed\rends\n".encode(), b"8bit"),
        ("caf\u00e9 \x00\n".encode(), b"quoted-printable"),  # no NUL in 8bit either
        ("caf\u00e9\n--".encode() + BOUNDARY + b"--\n", b"quoted-printable"),
    ],
)
def test_a_text_part_goes_8bit_when_only_its_characters_keep_it_from_7bit(
    body: bytes, cte: bytes
) -> None:
    check_part(wire.part(b"plain", wire.measured(body), BOUNDARY, eight_bit=True), body, cte)


def check_part(made: bytes, body: bytes, cte: bytes) -> None:
    headers, encoded = made.split(b"\r\n\r\n", 1)
    assert headers.endswith(b"Content-Transfer-Encoding: " + cte)
    assert b"\n" not in encoded.replace(b"\r\n", b"")  # CRLF line ends only
    assert BOUNDARY not in encoded
    lines = body.splitlines()
    normal = b"\n".join(lines) + b"\n"
    decoded = encoded.replace(b"\r\n", b"\n")
    assert (quopri.decodestring(decoded) if cte == b"quoted-printable" else decoded) == normal


def test_quoted_printable_line_by_line_equals_whole_on_random_text() -> None:
    rng = random.Random(5)
    alphabet = ["a"] * 20 + [" "] * 5 + ["="] * 2 + ["."] * 2 + ["é", "\t", "\n", "\n", "—"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        lines = text.encode().splitlines()
        normal = b"\n".join(lines) + b"\n" if lines else b""
        whole = binascii.b2a_qp(normal, istext=True).replace(b"\n", b"\r\n")
        assert quoted_printable(text) == whole


def test_the_line_cache_keeps_shared_lines_and_stays_right_across_generations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[bytes] = []

    class Counting:
        @staticmethod
        def b2a_qp(data: bytes, istext: bool) -> bytes:
            encoded.append(data)
            return binascii.b2a_qp(data, istext=istext)

    monkeypatch.setattr("digest.render.wire.binascii", Counting)
    cache = _LineCache(size=40)
    shared = [b"shared line %d = same in every mail" % n for n in range(10)]
    rng = random.Random(7)
    for round_ in range(200):
        own = [b"reader %d line %d \xc3\xa9" % (round_, n) for n in range(rng.randint(0, 15))]
        lines = shared + own
        rng.shuffle(lines)
        text = b"\n".join(lines)
        expected = binascii.b2a_qp(text + b"\n", istext=True).replace(b"\n", b"\r\n")
        encoded.clear()
        assert b"".join(cache.encoded(text)) == expected
        if round_:  # after the first, only a reader's own lines are encoded, never a shared one
            assert sorted(encoded) == sorted(line + b"\n" for line in own)
        assert len(cache.new) <= cache.size + len(lines)  # bounded: one text over at most
    # The lines every text had survived the generations the readers' own lines aged out of.
    kept = {**cache.old, **cache.new}
    assert all(line in kept for line in shared)
    assert not any(line.startswith(b"reader 1 ") for line in kept)


def test_wrap_of_short_text_is_what_textwrap_makes() -> None:
    # wrap() returns a text that fits on one line without asking textwrap; _wrap always asks.
    rng = random.Random(76)
    alphabet = ["a"] * 12 + [" "] * 4 + ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85"]
    alphabet += [
        "\u00a0",
        "\u2003",
        "\u2028",
        "\u200b",
        "-",
        "é",
        "http://x.org/" + "p" * 70,
        "https://e.org/a",
        ".",
    ]
    texts = ["", " ", "a", " a", "a ", "a  b", "x" * 76, "x" * 77, "x" * 72, "\u2003a\u2003"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(0, 90))) for _ in range(20_000)]
    for text in texts:
        for indent, first in [("", None), ("    ", None), ("    ", "12. "), ("  ", "Why: ")]:
            assert wrap(text, indent, first) == _wrap(text, indent, first), (text, indent, first)


def test_reason_and_wrap_caches_do_not_change_results(renderer: Renderer) -> None:
    data = dict(digests())["ten papers"]
    first = renderer.render(data).raw
    reasons = (Reason("term", "agents"), Reason("phrase", "reinforcement learning"))
    again = renderer.render(
        replace(data, items=[(replace(i, reasons=reasons), c) for i, c in data.items])
    ).raw
    assert renderer.render(data).raw == first
    assert again != first


def test_fragments_cached_from_other_digests_change_no_byte(renderer: Renderer) -> None:
    """A paper's byline, links and text block are made once and reused in every mail that
    shows it: each digest rendered after the others (the cache warm with their papers, in
    other positions and other readers' mails) is byte for byte the digest rendered with the
    cache empty."""
    [cache] = [e for e in renderer.env.extensions.values() if isinstance(e, FragmentCache)]
    inputs = [data for _, data in digests()]
    # The same papers for a second reader: other numbers, no feedback links, other reasons.
    inputs += [
        replace(
            data,
            items=[(replace(item, reasons=()), card) for item, card in reversed(data.items)],
            feedback_urls=(),
        )
        for data in inputs
    ]
    cold = []
    for data in inputs:
        cache.fragments.clear()
        cold.append(renderer.render(data).raw)
    for data in inputs:
        renderer.render(data)
    stored = len(cache.fragments)
    assert stored > 20
    warm = [renderer.render(data).raw for data in reversed(inputs)][::-1]
    assert len(cache.fragments) == stored  # all from the cache this time
    assert warm == cold


def test_plain_words_wrap_as_textwrap_wraps_them() -> None:
    """The fast fill for words between single spaces gives textwrap's lines, whatever the
    words (hyphens, punctuation, Unicode white space inside a word, words as long as a line
    or longer) and indents; other text (tabs, double spaces, a word of white space alone)
    goes to textwrap itself, so every text wraps as textwrap wraps it."""
    rng = random.Random(76)
    pieces = ["a", "state-of-the-art", "(LLMs),", "x" * 30, "y" * 72, "z" * 76, "é", "\u00a0"]
    pieces += ["\t", "  ", "\u2003", "https://arxiv.org/abs/2401.00001", ""]
    for _ in range(8_000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        indent = rng.choice(["", "    "])
        first = rng.choice([None, "12. ", "Why: "])
        lead = indent if first is None else first
        expected = textwrap.fill(text, initial_indent=lead, subsequent_indent=indent, **TEXTWRAP)
        assert _wrap.__wrapped__(text, indent, first) == expected, (text, indent, first)


class _Html:
    def __html__(self) -> str:
        return "<b>already markup</b>"


class _Text(str):
    pass


ESCAPED_VALUES = [
    "",
    "plain words",
    base.HOSTILE_TITLE,
    "\"><img src=x onerror=alert(1)> & 'too' &amp; &#34;",
    "Ünïcode — ≤ ≥ “quotes” <mark>",
    Markup("<b>safe</b> & kept"),
    _Html(),
    _Text("a <str> subclass & co"),
    12,
    -3.5,
    None,
    True,
]


@pytest.mark.parametrize("value", ESCAPED_VALUES, ids=lambda v: type(v).__name__)
def test_a_value_is_written_as_ascii_as_markupsafe_escapes_it(value: object) -> None:
    written = escape_ascii_output(value)
    assert written == str(escape(value)).encode("ascii", "xmlcharrefreplace").decode("ascii")
    assert type(written) is str and written.isascii()


def test_random_text_is_written_as_ascii_as_markupsafe_escapes_it() -> None:
    rng = random.Random(15)
    alphabet = "ab &<>\"'\u00e9\u2014\U0001f600;#x0123456789"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        expected = str(escape(text)).encode("ascii", "xmlcharrefreplace").decode("ascii")
        assert escape_ascii_output(text) == expected


def test_the_digest_writes_values_as_ascii_text_and_the_bytes_do_not_change(
    renderer: Renderer,
) -> None:
    """The HTML template writes its values through ``escape_ascii_output``, so the page is
    ASCII as rendered; a renderer whose template uses Jinja's own ``escape`` (its other
    characters made references only when the page is measured for the wire) makes the same
    bytes for every digest above."""
    namespace = renderer._html.root_render_func.__globals__
    assert namespace["escape"] is escape_ascii_output
    plain = Renderer(renderer.settings)
    plain._html.root_render_func.__globals__["escape"] = escape
    for name, data in digests():
        fast = renderer.render(data)
        assert fast.html.isascii(), name
        assert fast.raw == plain.render(data).raw, name
    # The case that tells the two apart: a value with characters outside ASCII.
    data = dict(digests())["non-ASCII subject and odd address"]
    assert not plain.render(data).html.isascii()


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"\n", b"\n\n", b"ab\n", b"\nab", b"a\n\nbcd\n", b"a" * 1200 + b"\nb", b"a\n" * 5],
)
def test_a_part_is_measured_as_its_lines_are(data: bytes) -> None:
    lines = data.split(b"\n")
    assert wire.measured(data) == wire.Octets(data, len(lines) - 1, max(map(len, lines)))


def test_random_parts_are_measured_as_their_lines_are() -> None:
    rng = random.Random(7)
    for _ in range(500):
        data = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 3000)))
        lines = data.split(b"\n")
        assert wire.measured(data) == wire.Octets(data, len(lines) - 1, max(map(len, lines)))
