"""A message's bytes, assembled directly: headers folded as ``EmailMessage`` with
:data:`POLICY` would fold them; each part sent as it is (7bit) when it can be, else
quoted-printable encoded by ``binascii``."""

from __future__ import annotations

import binascii
import re
from datetime import datetime
from email import policy as email_policy
from email.utils import format_datetime
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from digest.domain.addresses import wire_form

# The message policy: CRLF, RFC 5322 folding at 78, and raw headers (set_raw) left as given,
# so a long List-Unsubscribe URL is never turned into an RFC 2047 encoded word.
POLICY = email_policy.SMTP.clone(refold_source="none")
# For a message to an address that needs SMTPUTF8: headers in UTF-8, not encoded words.
UTF8_POLICY = POLICY.clone(utf8=True)


def _fold(name: str, value: object) -> bytes:
    """One header as ``EmailMessage`` (with :data:`POLICY`) writes it: parsed by the header
    registry, folded at 78 columns, RFC 2047 words for non-ASCII text, CRLF."""
    return POLICY.header_factory(name, value).fold(policy=POLICY).encode("ascii")


@lru_cache(maxsize=4096)
def _fold_cached(name: str, value: str) -> bytes:
    return _fold(name, value)


# A subject the email package folds simply: printable ASCII words between single spaces, at
# most one of them ending in "…" (a title shortened to fit) and otherwise holding only what
# an RFC 2047 "Q" word writes as it is.
_PLAIN_WORDS = re.compile(r"[!-~]+(?: [!-~]+)*")
_Q_LITERAL = re.compile(r"[-!*+/A-Za-z0-9]*")
_ELLIPSIS = "\u2026"
_HEADER_WIDTH = 78  # POLICY.max_line_length


@lru_cache(maxsize=4096)
def _subject_line(subject: str) -> bytes:
    """The Subject header as ``EmailMessage`` with :data:`POLICY` writes it. Most subjects
    are a top paper's title and a count, so two in three were new to the cache, and the
    email package's folding took ~200 µs each: the shapes real subjects have are folded here
    by the same rules, anything else by the package (tests/render/test_wire_subject.py holds
    the two equal over real titles and generated ones)."""
    return _fold_simple_subject(subject) or _fold("Subject", subject)


def _fold_simple_subject(subject: str) -> bytes | None:
    if "=?" in subject:  # could read as an encoded word
        return None
    ascii_ = subject.isascii()
    if ascii_:
        if not _PLAIN_WORDS.fullmatch(subject):
            return None
        # A value that fits on a line of its own goes there whole, after "Subject:".
        if len(subject) + 1 <= _HEADER_WIDTH:
            head = "Subject: " if len(subject) + 9 <= _HEADER_WIDTH else "Subject:\r\n "
            return f"{head}{subject}\r\n".encode("ascii")
    words = subject.split(" ")
    if not ascii_:
        # One word ending in "…" becomes an encoded word (its UTF-8 as =E2=80=A6); the rest
        # must be plain.
        if subject.count(_ELLIPSIS) != 1:
            return None
        index = next(i for i, word in enumerate(words) if _ELLIPSIS in word)
        stem = words[index][:-1]
        if not words[index].endswith(_ELLIPSIS) or not _Q_LITERAL.fullmatch(stem):
            return None
        # The package writes "Q" unless it is five or more characters longer than "B" (a
        # lone "…": =E2=80=A6 against 4oCm).
        if len(stem) + 9 - 4 * -(-(len(stem) + 3) // 3) >= 5:
            return None
        others = " ".join(words[:index] + words[index + 1 :])
        if others and not _PLAIN_WORDS.fullmatch(others):
            return None
        words[index] = f"=?utf-8?q?{stem}=E2=80=A6?="
    else:
        index = -1
    # Greedy: a word that does not fit starts the next line, its space in front of it.
    lines: list[str] = []
    line = "Subject:"
    for position, word in enumerate(words):
        if len(word) + 1 > _HEADER_WIDTH:
            return None  # the package breaks it up
        if len(line) + 1 + len(word) <= _HEADER_WIDTH:
            line += " " + word
            continue
        if position == index and len(line) + 1 <= _HEADER_WIDTH:
            return None  # the package splits an encoded word where the line ends
        lines.append(line)
        line = " " + word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


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
_PART_HEADERS = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n\r\n'
MAX_7BIT_LINE = 998  # octets (RFC 5322 2.1.1)


class _LineCache:
    """Encoded lines in two generations: a line found in the older one moves to the newer,
    and when the newer is full the older is dropped. The lines every digest shares (the
    template's, today's papers') stay; the ones a single reader's mail had (highlights,
    links) age out, instead of everything going at once when a single dict fills up (which
    threw away the shared lines every few hundred digests). Shared by the sending threads:
    a lost race costs one encoding again, never a wrong line."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.new: dict[bytes, bytes] = {}
        self.old: dict[bytes, bytes] = {}

    def encoded(self, text: bytes) -> list[bytes]:
        new, old = self.new, self.old
        out = []
        for line in text.splitlines():
            encoded = new.get(line)
            if encoded is None:
                encoded = old.get(line)
                if encoded is None:
                    encoded = binascii.b2a_qp(line + b"\n", istext=True).replace(b"\n", b"\r\n")
                new[line] = encoded
            out.append(encoded)
        if len(new) > self.size:
            self.old, self.new = new, {}
        return out


_QP_LINES = _LineCache(15_000)


def quoted_printable(text: str) -> bytes:
    """``text`` as a UTF-8, quoted-printable body with CRLF line ends (RFC 2045: lines of at
    most 76 characters, soft breaks, trailing white space encoded); its lines normalised as
    ``EmailMessage.set_content`` normalises them, ending with a line break.

    The encoding is line by line (a line's encoding never depends on its neighbours), so the
    lines many digests share (the template's, a paper's authors, links and wrapped abstract)
    are encoded once and looked up after.
    """
    return b"".join(_QP_LINES.encoded(text.encode("utf-8")))


class Octets(NamedTuple):
    """A part's text as bytes, measured once: for the fit to Gmail's clip and for the choice
    of its transfer encoding."""

    data: bytes
    line_ends: int  # LF
    longest: int  # the longest LF-separated line, in octets

    @property
    def sent_size(self) -> int:
        """The size once decoded, as a mail client sees it: with CRLF line ends."""
        return len(self.data) + self.line_ends


def measured(data: bytes) -> Octets:
    """``data`` with its line ends counted and its longest line found, by numpy, in C (a
    regular expression for the long line took 2.8 ms on a 65 KB page, splitting it into
    lines and measuring each 0.3 ms, this 0.024). Array methods and slices rather than
    ``np.flatnonzero``/``np.diff``, whose Python wrappers cost a third of it."""
    ends = (np.frombuffer(data, dtype=np.uint8) == 10).nonzero()[0]
    count = len(ends)
    if not count:
        return Octets(data, 0, len(data))
    inner = int((ends[1:] - ends[:-1]).max()) - 1 if count > 1 else 0
    return Octets(data, count, max(int(ends[0]), inner, len(data) - 1 - int(ends[-1])))


def html_octets(html: str) -> Octets:
    """The HTML as ASCII: every other character as a numeric character reference
    (``&#233;``), which HTML reads as the character in text and in attribute values alike.
    The templates keep non-ASCII out of ``<style>``, where a reference would stay literal
    (:func:`digest.render.templates.inline_template_css` checks). This is what the HTML part
    holds, and so what Gmail's clip is measured against."""
    return measured(html.encode("ascii", "xmlcharrefreplace"))


def part(subtype: bytes, octets: Octets, boundary: bytes, *, eight_bit: bool = False) -> bytes:
    """A text part (``subtype`` plain or html, ``octets`` UTF-8): its two headers and body.

    7bit, the text as it is with CRLF line ends, when it can go so: ASCII, no NUL, no line
    over 998 octets, and no run that could read as the ``boundary``. With ``eight_bit``, the
    same but not ASCII goes as it is too, labelled 8bit (RFC 2045, 6152): the mailer sends it
    so to a server that offers 8BITMIME and re-encodes it for one that does not
    (:func:`digest.delivery.mailers.seven_bit`). Otherwise quoted-printable, which costs far
    more (it was a fifth of a sending worker's time, docs/benchmarks.md) and writes every
    ``=`` of the HTML's attributes as ``=3D`` and breaks every line at 76. Either way the
    body ends with a line break, as ``EmailMessage.set_content`` ends it.
    """
    data = octets.data
    ascii_ = data.isascii()
    if (ascii_ or eight_bit) and b"\x00" not in data and boundary not in data:
        label = b"7bit" if ascii_ else b"8bit"
        if b"\r" not in data:  # the templates' output: LF line ends only
            if octets.longest <= MAX_7BIT_LINE:
                body = data.replace(b"\n", b"\r\n")
                return b"".join((_PART_HEADERS % (subtype, label), body, _final_break(body)))
        else:
            lines = data.splitlines()  # at CRLF, LF or a lone CR, as set_content splits
            if max(map(len, lines), default=0) <= MAX_7BIT_LINE:
                body = b"\r\n".join(lines)
                return b"".join((_PART_HEADERS % (subtype, label), body, b"\r\n"))
    return _PART_HEADERS % (subtype, b"quoted-printable") + b"".join(_QP_LINES.encoded(data))


def _final_break(body: bytes) -> bytes:
    # The body ends with a line break, as set_content ends it (and an empty one is just it).
    return b"" if body.endswith(b"\r\n") else b"\r\n"
