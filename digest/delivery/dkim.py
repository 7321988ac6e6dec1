"""Optional DKIM signing (dkimpy), applied to the exact bytes that go on the wire.

Signed: From (twice, so no second From can be added), To, Subject, Date, Message-ID,
List-Id, List-Unsubscribe, List-Unsubscribe-Post, MIME-Version and Content-Type; the body
with relaxed canonicalisation. Gmail and Yahoo require List-Unsubscribe(-Post) to be
signed for one-click unsubscribe to count.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from digest.config import DkimSettings
from digest.errors import ConfigError

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
    b"from",  # over-signed: a From added in transit breaks the signature
)


class DkimSigner:
    """Signs with one RSA key for one domain and selector."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.private_key = private_key
        self(b"From: a@" + self.domain + b"\r\n\r\nkey check\r\n")  # a bad key fails here

    @classmethod
    def from_settings(cls, settings: DkimSettings, from_address: str) -> DkimSigner:
        domain = settings.domain or from_address.rpartition("@")[2]
        path = Path(settings.private_key_path)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"delivery.dkim.private_key_path: cannot read {path}: {exc.strerror}"
            ) from None
        try:
            return cls(settings.selector, domain, key)
        except (dkim.DKIMException, ValueError, UnicodeError) as exc:
            raise ConfigError(f"delivery.dkim: cannot sign with {path}: {exc}") from None

    def __call__(self, payload: bytes) -> bytes:
        signature = dkim.sign(
            payload,
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
            linesep=b"\r\n",
        )
        return signature + payload
