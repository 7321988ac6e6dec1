"""DKIM: a digest sent over SMTP verifies with dkimpy against the public key (DNS injected),
covers the headers receivers check, and breaks when one of them is changed."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from delivery_helpers import add_subscribers, fetch_sample, smtp_settings
from smtp_server import smtp_server

from digest.app import digests, sending
from digest.config import Settings
from digest.delivery.dkim import DkimSigner
from digest.domain.tokens import SignedLinks, Tokens
from digest.errors import ConfigError
from digest.store import Store

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl makes the test key")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh RSA key (never a committed one) and its DNS TXT record."""
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_signed_digest_verifies_and_covers_the_list_headers(
    settings: Settings, store: Store, key
) -> None:
    private, record = key
    with smtp_server() as (host, port, recorder):
        mail = smtp_settings(
            settings,
            host,
            port,
            DELIVERY__DKIM__ENABLED="true",
            DELIVERY__DKIM__SELECTOR="digest2026",
            DELIVERY__DKIM__PRIVATE_KEY_PATH=str(private),
        )
        fetch_sample(mail, store, NOW)
        add_subscribers(store, 1, now=NOW)
        digests.plan_and_rank(mail, store, NOW)
        links = SignedLinks(mail.web.base_url, Tokens(mail.web.secret_key))
        summary = sending.send_all(mail, store, links=links)
        assert summary.sent == 1
    [received] = recorder.messages
    data = received.data
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert asked == [b"digest2026._domainkey.digest.example.org."]
    # Signed as 7bit (RFC 6376 5.3): a relay that re-encoded an 8bit part would break it.
    plain = received.message.get_body(("plain",))
    assert not plain.get_content().isascii()  # "…", "·": it would have gone 8bit unsigned
    assert data.isascii() and received.options == []
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    signature = received.message["DKIM-Signature"]
    signed = re.search(r"h=([^;]+);", " ".join(signature.split())).group(1)
    names = [h.strip() for h in signed.split(":")]
    for header in (
        "from",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert header in names
    assert "d=digest.example.org" in signature and "s=digest2026" in signature
    tampered = data.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <http://", 1)
    assert tampered != data and not dkim.verify(tampered, dnsfunc=dns)


def test_off_by_default_and_a_bad_key_is_a_config_error(settings: Settings, tmp_path: Path) -> None:
    assert settings.delivery.dkim.enabled is False
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    dkim_settings = settings.delivery.dkim.model_copy(
        update={"enabled": True, "selector": "s", "private_key_path": str(bad)}
    )
    with pytest.raises(ConfigError, match=r"delivery\.dkim"):
        DkimSigner.from_settings(dkim_settings, "papers@example.org")
    missing = dkim_settings.model_copy(update={"private_key_path": str(tmp_path / "none.pem")})
    with pytest.raises(ConfigError, match="cannot read"):
        DkimSigner.from_settings(missing, "papers@example.org")
