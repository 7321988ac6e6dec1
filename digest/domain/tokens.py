"""Signed, opaque tokens for the links in mails and on pages.

One salt per purpose, so a token made for one cannot be used for another. Manage tokens
carry the subscriber's token version, so raising it revokes every manage link sent so far;
unsubscribe tokens do not, so the link in an old mail keeps working. Mail tokens are not
timed (re-rendering a delivery must give the same message); confirmation tokens are.

Feedback links ("more like this" / "fewer like this" under each paper of a digest) carry one
token for the whole digest, naming the delivery's public id (never a row id or an address),
then the paper's place in that digest and the direction: ``<token>~3~more``. A digest signs
once, not twice a paper; the place and the direction need no signature of their own, since
the holder of a digest's links may choose any of them. Links mailed before this form named
the subscriber's public id, the paper's canonical id and the direction in a token a link;
they are still read. Like unsubscribe tokens, neither kind is timed or revoked.

Feed tokens (a reader's private Atom feed) carry the token version like manage tokens, so
"sign out everywhere" revokes them; they are not timed, since feed readers poll for years.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

PURPOSES = ("manage", "unsubscribe", "archive", "confirm", "feedback", "digest-feedback", "feed")


class TokenError(Exception):
    """A token that is tampered, of the wrong purpose, expired or revoked."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # tampered, expired, revoked


@dataclass(frozen=True, slots=True)
class TokenData:
    public_id: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class FeedbackData:
    """A feedback link of the earlier form: one token a link."""

    public_id: str  # the subscriber's
    paper: str  # the paper's canonical id
    value: int  # +1 more like this, -1 fewer like this


@dataclass(frozen=True, slots=True)
class DigestFeedbackData:
    """A feedback link of a digest's own token: ``<token>~<place>~<more|fewer>``."""

    delivery: str  # the delivery's public id
    place: int  # the paper's place among the digest's chosen papers, from 1
    value: int  # +1 more like this, -1 fewer like this


# The words a digest's feedback links end in, and the direction each means.
FEEDBACK_WORDS = {1: "more", -1: "fewer"}
_FEEDBACK_VALUES = {word: value for value, word in FEEDBACK_WORDS.items()}
# A place is a positive number (a digest holds at most a few dozen papers), ASCII digits only.
_PLACE = re.compile(r"[1-9][0-9]{0,3}")


_COMPRESS_FROM = 100  # payload bytes; below this a token is never compressed


class _PreKeyed:
    """Makes the tokens ``URLSafeSerializer(secret, salt=salt).dumps`` makes (its defaults:
    compact JSON, zlib when that is shorter, URL-safe base64, HMAC-SHA1 over a key derived
    as sha1(salt + "signer" + secret)), with the key derived and the HMAC keyed once instead
    of per token (a digest signs five links), and zlib tried only on payloads over
    ``_COMPRESS_FROM`` bytes. itsdangerous reads them all; for any payload it would not
    compress (every real one: a random id does not shrink) the two are byte for byte equal."""

    def __init__(self, secret: str, salt: str) -> None:
        key = hashlib.sha1(salt.encode() + b"signer" + secret.encode()).digest()
        self._mac = hmac.new(key, digestmod=hashlib.sha1)

    def dumps(self, payload: Any) -> str:
        return self.sign(_COMPACT_JSON(payload).encode())

    def sign(self, data: bytes) -> str:
        """The token of ``data``, a payload's compact JSON."""
        body = _b64(data)
        # zlib (12 us, most of a token's cost) only where it can pay: a short payload of
        # random ids never shrinks. Either form reads back the same (a leading "." marks it).
        if len(data) > _COMPRESS_FROM:
            packed = zlib.compress(data)
            if len(packed) < len(data) - 1:
                body = b"." + _b64(packed)
        mac = self._mac.copy()
        mac.update(body)
        return (body + b"." + _b64(mac.digest())).decode("ascii")


# itsdangerous's compact JSON, the encoder made once (json.dumps with options makes one a call).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> bytes:
    # base64.urlsafe_b64encode, without its two Python layers.
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


class Tokens:
    def __init__(self, secret: str) -> None:
        self._plain = {p: URLSafeSerializer(secret, salt=f"digest.{p}") for p in PURPOSES}
        self._makers = {p: _PreKeyed(secret, f"digest.{p}") for p in PURPOSES}
        self._timed = URLSafeTimedSerializer(secret, salt="digest.confirm")

    def make(self, purpose: str, public_id: str, version: int | None = None) -> str:
        payload = [public_id] if version is None else [public_id, version]
        if purpose == "confirm":
            return self._timed.dumps(payload)
        return self._makers[purpose].dumps(payload)

    def make_feedback(self, public_id: str, paper: str, value: int) -> str:
        """A feedback token of the earlier form, one a link. Mails no longer carry them
        (:meth:`SignedLinks.feedback`), but the links in old mails are read for good."""
        if value not in (1, -1):
            raise ValueError("feedback is +1 or -1")
        return self._makers["feedback"].dumps([public_id, paper, value])

    def read_digest_feedback(self, link: str) -> DigestFeedbackData:
        """A feedback link's last part, ``<token>~<place>~<more|fewer>``, its token checked."""
        token, _, rest = link.partition("~")
        place, _, word = rest.partition("~")
        value = _FEEDBACK_VALUES.get(word)
        if value is None or not _PLACE.fullmatch(place):
            raise TokenError("tampered")
        return DigestFeedbackData(self.read("digest-feedback", token).public_id, int(place), value)

    def read_feedback(self, token: str) -> FeedbackData:
        try:
            payload = self._plain["feedback"].loads(token)
        except BadSignature:
            raise TokenError("tampered") from None
        if (
            not isinstance(payload, list)
            or len(payload) != 3
            or not all(isinstance(part, str) and part for part in payload[:2])
            or payload[2] not in (1, -1)
            or isinstance(payload[2], bool)
        ):
            raise TokenError("tampered")
        return FeedbackData(payload[0], payload[1], payload[2])

    def read(self, purpose: str, token: str, max_age: float | None = None) -> TokenData:
        try:
            if purpose == "confirm":
                payload = self._timed.loads(token, max_age=max_age)
            else:
                payload = self._plain[purpose].loads(token)
        except SignatureExpired:
            raise TokenError("expired") from None
        except BadSignature:
            raise TokenError("tampered") from None
        if not isinstance(payload, list) or not payload or not isinstance(payload[0], str):
            raise TokenError("tampered")
        version = payload[1] if len(payload) > 1 and isinstance(payload[1], int) else None
        return TokenData(payload[0], version)


class SignedLinks:
    """The public URLs in a mail for a subscriber or a delivery, each carrying a token."""

    def __init__(self, base_url: str, tokens: Tokens) -> None:
        self.base = base_url
        self.tokens = tokens

    def manage(self, public_id: str, version: int) -> str:
        return f"{self.base}/manage/{self.tokens.make('manage', public_id, version)}"

    def unsubscribe(self, public_id: str) -> str:
        return f"{self.base}/unsubscribe/{self.tokens.make('unsubscribe', public_id)}"

    def archive(self, delivery_public_id: str) -> str:
        return f"{self.base}/archive/{self.tokens.make('archive', delivery_public_id)}"

    def confirm(self, public_id: str, version: int) -> str:
        return f"{self.base}/confirm/{self.tokens.make('confirm', public_id, version)}"

    def feed(self, public_id: str, version: int) -> str:
        """The reader's private Atom feed of their recent digests."""
        return f"{self.base}/feed/{self.tokens.make('feed', public_id, version)}.atom"

    def feedback(self, delivery_public_id: str, places: int) -> list[tuple[str, str]]:
        """The "more like this" and "fewer like this" links of a digest's papers, its first
        ``places`` of them in order: one token signed for the digest, each link its place and
        direction appended (:meth:`Tokens.read_digest_feedback`)."""
        token = self.tokens.make("digest-feedback", delivery_public_id)
        start = f"{self.base}/feedback/{token}~"
        more, fewer = FEEDBACK_WORDS[1], FEEDBACK_WORDS[-1]
        return [(f"{start}{n}~{more}", f"{start}{n}~{fewer}") for n in range(1, places + 1)]
