"""Signed, opaque tokens for the links in mails and on pages.

One salt per purpose, so a token made for one cannot be used for another. Manage tokens
carry the subscriber's token version, so raising it revokes every manage link sent so far;
unsubscribe tokens do not, so the link in an old mail keeps working. Mail tokens are not
timed (re-rendering a delivery must give the same message); confirmation tokens are.

Feedback tokens ("more like this" / "fewer like this" under each paper of a digest) name the
subscriber's public id, the paper's canonical id and the direction (+1 or -1): never a row
id or an address. Like unsubscribe tokens they are neither timed nor revoked.

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

PURPOSES = ("manage", "unsubscribe", "archive", "confirm", "feedback", "feed")


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
    public_id: str  # the subscriber's
    paper: str  # the paper's canonical id
    value: int  # +1 more like this, -1 fewer like this


_COMPRESS_FROM = 100  # payload bytes; below this a token is never compressed


class _PreKeyed:
    """Makes the tokens ``URLSafeSerializer(secret, salt=salt).dumps`` makes (its defaults:
    compact JSON, zlib when that is shorter, URL-safe base64, HMAC-SHA1 over a key derived
    as sha1(salt + "signer" + secret)), with the key derived and the HMAC keyed once instead
    of per token (a digest signs some twenty links), and zlib tried only on payloads over
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


# Text that JSON (ensure_ascii off) writes as it is, between quotes: no quote, backslash or
# control character. A digest signs two feedback tokens a paper, some forty: their JSON made
# with an f-string is the encoder's to the byte, in a third of the time.
_PLAIN_JSON_TEXT = re.compile(r'[^"\\\x00-\x1f]*')
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _feedback_json(public_id: str, paper: str, value: int) -> bytes:
    if _PLAIN_JSON_TEXT.fullmatch(public_id) and _PLAIN_JSON_TEXT.fullmatch(paper):
        return f'["{public_id}","{paper}",{value}]'.encode()
    return _COMPACT_JSON([public_id, paper, value]).encode()


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
        if value not in (1, -1):
            raise ValueError("feedback is +1 or -1")
        return self._makers["feedback"].sign(_feedback_json(public_id, paper, value))

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

    def feedback(self, public_id: str, paper: str, value: int) -> str:
        """A "more like this" (+1) or "fewer like this" (-1) link for one paper of a digest."""
        return f"{self.base}/feedback/{self.tokens.make_feedback(public_id, paper, value)}"
