"""The mailer over real TLS: STARTTLS (the default security) and implicit TLS against aiosmtpd
with a certificate made here (and a login after STARTTLS); an untrusted certificate defers the
message with the reason and sends nothing in plain text; a plain relay never loads the CAs."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from doctor_support import needs_openssl, relay, server_context
from smtp_server import Recorder

from digest.config import load_settings
from digest.delivery.mailers import Envelope, SendError, SmtpMailer

pytestmark = needs_openssl


def message() -> EmailMessage:
    made = EmailMessage()
    made["From"] = "digest@example.org"
    made["To"] = "reader@example.org"
    made["Subject"] = "over TLS"
    made.set_content("hello")
    return made


def mailer(port: int, security: str, trust: Path | None) -> Iterator[SmtpMailer]:
    environ = {
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": security,
    }
    if security == "starttls":
        # aiosmtpd offers AUTH only after its own STARTTLS, not on an implicit-TLS port.
        environ.update(DIGEST_SMTP__USERNAME="digest", DIGEST_SMTP__PASSWORD="pw")
    smtp = load_settings(environ=environ).smtp
    context = ssl.create_default_context(cafile=str(trust)) if trust else None
    made = SmtpMailer(smtp, ssl_context=context)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_message_goes_over_tls(certificate: tuple[Path, Path], security: str) -> None:
    received = Recorder()
    with relay(server_context(certificate), security == "tls", received) as port:
        for sender in mailer(port, security, trust=certificate[0]):
            reply = sender.send(message(), Envelope("b@example.org", "reader@example.org", "t"))
        assert reply.startswith("2")
        [got] = received.to("reader@example.org")
        assert got.message["Subject"] == "over TLS"


def test_an_untrusted_certificate_defers_and_sends_nothing(
    certificate: tuple[Path, Path],
) -> None:
    received = Recorder()
    with relay(server_context(certificate), recorder=received) as port:
        for sender in mailer(port, "starttls", trust=None):  # the system's CAs only
            with pytest.raises(SendError) as info:
                sender.send(message(), Envelope("b@example.org", "reader@example.org", "t"))
        assert info.value.temporary
        assert "certificate verify failed" in str(info.value)
        assert received.messages == []


def test_a_plain_relay_never_loads_the_certificate_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading the system's CAs costs ~40 ms a mailer: a plain relay (security none, as on
    # localhost or in the benchmark) must not pay it, and must not need a CA store at all.
    def no_store() -> ssl.SSLContext:
        raise AssertionError("a plain relay loaded the certificate store")

    monkeypatch.setattr("digest.delivery.mailers.tls_context", no_store)
    received = Recorder()
    with relay(recorder=received) as port:
        for sender in mailer(port, "none", trust=None):
            reply = sender.send(message(), Envelope("b@example.org", "reader@example.org", "t"))
    assert reply.startswith("2")
    [got] = received.to("reader@example.org")
    assert got.message["Subject"] == "over TLS"
