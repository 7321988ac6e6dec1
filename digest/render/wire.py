"""A message's bytes, assembled directly: headers folded as ``EmailMessage`` with
:data:`POLICY` would fold them, parts quoted-printable encoded by ``binascii``."""

from __future__ import annotations

import binascii
import re
from datetime import datetime
from email import policy as email_policy
from email.utils import format_datetime
from functools import lru_cache

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
    lines every digest shares (the template's, a paper's authors, links and wrapped
    abstract) are encoded once and looked up after.
    """
    return b"".join(_QP_LINES.encoded(text.encode("utf-8")))
