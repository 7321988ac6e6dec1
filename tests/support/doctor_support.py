"""What the `digest doctor` tests share: keys and a certificate made with openssl, a zone
where every DNS check passes, settings pointing at it, SMTP relays (aiosmtpd) and the web
app under uvicorn, all on 127.0.0.1."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from dns_server import Records
from smtp_server import Recorder, free_port
from web_support import serving

from digest.app.doctor import Check, run
from digest.config import Settings, load_settings
from digest.store import Store

needs_openssl = pytest.mark.skipif(
    not shutil.which("openssl"), reason="openssl makes the test keys and certificate"
)

FROM = "papers@acme-research.org"
RETURN_PATH = "bounces+{id}@mail.acme-research.org"  # a subdomain: relaxed DMARC alignment
SELECTOR = "sel2026"
DKIM_NAME = f"{SELECTOR}._domainkey.acme-research.org"
DIGESTS = "mail.acme-research.org (delivery.return_path"  # how the digests' SPF line starts
CONFIRMATIONS = "acme-research.org (mail.from_address"  # the confirmation mails' SPF line

Keys = dict[str, tuple[Path, str]]  # "signing"/"other" -> (PEM file, p= as openssl derives it)


def openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def make_keys(folder: Path) -> Keys:
    """Two fresh RSA keys (never committed ones), each with the p= openssl derives."""
    made = {}
    for name in ("signing", "other"):
        private = folder / f"{name}.pem"
        openssl("genrsa", "-out", str(private), "2048")
        der = openssl("rsa", "-in", str(private), "-pubout", "-outform", "DER")
        made[name] = (private, base64.b64encode(der).decode())
    return made


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", str(key), "-out", str(cert),
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    )  # fmt: skip
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def good_records(keys: Keys) -> Records:
    """A zone where every DNS check passes: SPF through include: (and redirect= for the
    bounce subdomain), the DKIM key of ``keys["signing"]``, DMARC, an MX for bounces."""
    return {
        "acme-research.org": [
            ("TXT", "v=spf1 include:_spf.relay.test -all"),
            ("TXT", "google-site-verification=abc123"),  # other TXT records are ignored
        ],
        "_spf.relay.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all")],
        "relay.test": [("A", "192.0.2.10")],
        "mail.acme-research.org": [
            ("TXT", "v=spf1 redirect=acme-research.org"),
            ("MX", (10, "mx.acme-research.org")),
        ],
        "mx.acme-research.org": [("A", "192.0.2.25")],
        DKIM_NAME: [("TXT", f"v=DKIM1; k=rsa; p={keys['signing'][1]}")],
        "_dmarc.acme-research.org": [
            ("TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@acme-research.org")
        ],
    }


def environment(tmp_path: Path, nameserver: str, keys: Keys, **extra: str) -> dict[str, str]:
    """DIGEST_ variables for the test zone; ``extra`` adds more (without the prefix)."""
    environ = {
        "DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'doctor.db'}",
        "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": FROM,
        "DIGEST_DELIVERY__RETURN_PATH": RETURN_PATH,
        "DIGEST_DELIVERY__DKIM__ENABLED": "true",
        "DIGEST_DELIVERY__DKIM__SELECTOR": SELECTOR,
        "DIGEST_DELIVERY__DKIM__PRIVATE_KEY_PATH": str(keys["signing"][0]),
        "DIGEST_SMTP__HOST": "relay.test",
        "DIGEST_WEB__BASE_URL": "https://digest.acme-research.org",
        "DIGEST_WEB__SECRET_KEY": "doctor-test-secret-0123456789",
        "DIGEST_DOCTOR__NAMESERVERS": nameserver,
        "DIGEST_DOCTOR__TIMEOUT": "2",
        "DIGEST_RANKING__SEMANTIC": "false",
    }
    environ.update({f"DIGEST_{key}": value for key, value in extra.items()})
    return environ


def settings_maker(tmp_path: Path, nameserver: str, keys: Keys) -> Any:
    def make(**extra: str) -> Settings:
        return load_settings(environ=environment(tmp_path, nameserver, keys, **extra))

    return make


def checks(settings: Settings, name: str, tls: ssl.SSLContext | None = None) -> list[Check]:
    found = run(settings, only=[name], tls=tls)
    assert found and all(c.name == name for c in found), found
    return found


def one(settings: Settings, name: str, tls: ssl.SSLContext | None = None) -> Check:
    [found] = checks(settings, name, tls)
    return found


def accept_digest(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (b"digest", b"pw")
    return AuthResult(success=good, handled=False)  # not handled: aiosmtpd answers 535


@contextmanager
def relay(
    tls: ssl.SSLContext | None = None, implicit: bool = False, recorder: Recorder | None = None
) -> Iterator[int]:
    """aiosmtpd on 127.0.0.1: STARTTLS when given ``tls`` (TLS from the first byte with
    ``implicit``), and AUTH, once TLS is on, for digest/pw; what it receives goes to
    ``recorder``. Yields the port."""
    port = free_port()
    options: dict[str, Any] = {"authenticator": accept_digest}
    if tls and implicit:
        options["ssl_context"] = tls
    elif tls:
        options["tls_context"] = tls
    controller = Controller(recorder or Recorder(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def web_app(folder: Path) -> Iterator[tuple[str, Store]]:
    """The real web app under uvicorn on 127.0.0.1; yields its base URL and its store."""
    from digest.web.server import make_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served = load_settings(
        environ={
            "DIGEST_DATABASE__URL": f"sqlite:///{folder / 'web.db'}",
            "DIGEST_PATHS__VAR_DIR": str(folder / "var"),
            "DIGEST_WEB__BASE_URL": base,
            "DIGEST_WEB__SECRET_KEY": "doctor-web-secret-0123456789",
            "DIGEST_RANKING__SEMANTIC": "false",
        }
    )
    store = Store.open(served.database)
    server = make_server(served, "127.0.0.1", port, store=store)
    try:
        with serving(server):
            yield base, store
    finally:
        store.close()
