"""`digest doctor`'s checks of what runs: the relay (aiosmtpd on 127.0.0.1: plain, STARTTLS
and implicit TLS with a certificate made here, logins accepted and refused) and the web app
(under uvicorn: /healthz, the one-click unsubscribe POST), then a full run of every check."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from dns_server import Zone, dns_server
from doctor_support import (
    Keys,
    good_records,
    needs_openssl,
    one,
    relay,
    server_context,
    settings_maker,
    web_app,
)
from smtp_server import free_port

from digest.app.doctor import run
from digest.app.web_checks import BAD_LINK_TITLE
from digest.config import Settings
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.store import Store, subscribers

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return server_context(certificate)


@pytest.fixture(scope="module")
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the test certificate (as SSL_CERT_FILE would)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture(scope="module")
def zone(keys: Keys) -> Iterator[tuple[Zone, str]]:
    """A DNS server whose zone passes every DNS check."""
    served = Zone()
    served.records = good_records(keys)
    with dns_server(served) as address:
        yield served, address


@pytest.fixture
def settings_for(tmp_path: Path, zone: tuple[Zone, str], keys: Keys) -> Any:
    return settings_maker(tmp_path, zone[1], keys)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    with web_app(tmp_path_factory.mktemp("web")) as served:
        yield served


def relay_settings(settings_for: Any, port: int, **extra: str) -> Settings:
    return settings_for(SMTP__HOST="127.0.0.1", SMTP__PORT=str(port), **extra)


# -- the relay ------------------------------------------------------------------------------


def test_relay_with_starttls_and_login(
    settings_for: Any, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    with relay(server_tls) as port:
        accepted = one(
            relay_settings(settings_for, port, SMTP__USERNAME="digest", SMTP__PASSWORD="pw"),
            "relay",
            trusting,
        )
        refused = one(
            relay_settings(settings_for, port, SMTP__USERNAME="digest", SMTP__PASSWORD="no"),
            "relay",
            trusting,
        )
        untrusted = one(relay_settings(settings_for, port), "relay")
    assert accepted.level == "ok", accepted
    assert accepted.message.startswith(f"127.0.0.1:{port} (127.0.0.1): STARTTLS (TLSv1.")
    assert "certificate verified), login as digest accepted; QUIT before any mail" in (
        accepted.message
    )
    assert refused.level == "fail"
    assert refused.message.startswith("the relay refused the login: 535 ")
    assert "smtp.password" in refused.advice
    # The mailer's own TLS context does not trust a self-signed certificate.
    assert untrusted.level == "fail"
    assert untrusted.message == (
        f"127.0.0.1:{port}: the TLS certificate was refused: self-signed certificate"
    )


def test_relay_with_implicit_tls(
    settings_for: Any, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    with relay(server_tls, implicit=True) as port:
        found = one(relay_settings(settings_for, port, SMTP__SECURITY="tls"), "relay", trusting)
    assert found.level == "ok" and ": TLS (TLSv1." in found.message and "no login" in found.message


def test_relay_without_starttls(settings_for: Any) -> None:
    with relay() as port:
        required = one(relay_settings(settings_for, port), "relay")
        plain = one(relay_settings(settings_for, port, SMTP__SECURITY="none"), "relay")
    assert required.level == "fail"
    assert required.message == f"127.0.0.1:{port} does not offer STARTTLS"
    assert plain.level == "ok"  # no TLS, but on this machine
    assert plain.message == f"127.0.0.1:{port} (127.0.0.1): no TLS, no login; QUIT before any mail"


def test_relay_that_is_not_there(settings_for: Any) -> None:
    port = free_port()
    found = one(relay_settings(settings_for, port, SMTP__SECURITY="none"), "relay")
    assert found.level == "fail"
    assert found.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    off = one(settings_for(MAIL__TRANSPORT="file"), "relay")
    assert off.level == "warn" and 'mail.transport is "file"' in off.message


# -- the web app ----------------------------------------------------------------------------


def test_web_app_answers_healthz_and_the_one_click_post_unsubscribing_nobody(
    settings_for: Any, web: tuple[str, Store]
) -> None:
    base, store = web
    with store.transaction() as session:
        subscribers.upsert(
            session,
            "reader@acme-research.org",
            build_profile(include=["agents"]),
            Schedule.checked("UTC", 7),
            confirmed=True,
            now=datetime.now(UTC),
        )
    found = run(settings_for(WEB__BASE_URL=base), only=["base-url", "healthz", "unsubscribe"])
    levels = {c.name: c.level for c in found}
    assert levels == {"base-url": "warn", "healthz": "ok", "unsubscribe": "ok"}, found
    assert found[1].message.startswith(f"{base}/healthz answered 200 (database ok, version ")
    assert found[2].message == (
        f'POST {base}/unsubscribe/<made-up token> answered 400 "{BAD_LINK_TITLE}": the '
        "one-click endpoint is there (nobody was unsubscribed)"
    )
    with store.transaction() as session:
        person = subscribers.find(session, "reader@acme-research.org")
        assert person is not None and person.status == "active"


def test_no_web_app_listening(settings_for: Any) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    found = run(settings_for(WEB__BASE_URL=base), only=["healthz", "unsubscribe"])
    assert [(c.name, c.level) for c in found] == [("healthz", "fail"), ("unsubscribe", "warn")]
    assert found[0].message == f"cannot reach {base}/healthz: Connection refused"
    assert found[1].message.startswith("not checked: the web app did not answer (healthz: ")


class _NotOurApp(BaseHTTPRequestHandler):
    """A server that is up but is not the digest's web app (a wrong base_url)."""

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 404)

    def do_POST(self) -> None:
        self._answer(404)

    def _answer(self, code: int) -> None:
        body = b'{"status": "ok"}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_an_address_without_the_unsubscribe_endpoint_fails(settings_for: Any) -> None:
    server = HTTPServer(("127.0.0.1", 0), _NotOurApp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        found = one(settings_for(WEB__BASE_URL=base), "unsubscribe")
    finally:
        server.shutdown()
        server.server_close()
    assert found.level == "fail"
    assert found.message.endswith("answered 404: there is no unsubscribe endpoint there")


# -- everything at once ---------------------------------------------------------------------


def test_a_full_run(
    settings_for: Any,
    web: tuple[str, Store],
    server_tls: ssl.SSLContext,
    trusting: ssl.SSLContext,
) -> None:
    base, _ = web
    with relay(server_tls) as port:
        settings = relay_settings(
            settings_for, port, WEB__BASE_URL=base, SMTP__USERNAME="digest", SMTP__PASSWORD="pw"
        )
        found = run(settings, tls=trusting)
    assert [(c.name, c.level) for c in found] == [
        ("base-url", "warn"),  # plain http, on this machine
        ("healthz", "ok"),
        ("spf", "warn"),  # the relay is 127.0.0.1: SPF cannot be judged for it from here
        ("spf", "warn"),
        ("dkim", "ok"),
        ("dmarc", "ok"),
        ("relay", "ok"),
        ("bounce-mx", "ok"),
        ("domains", "ok"),
        ("unsubscribe", "ok"),
        ("html-size", found[-1].level),
    ], found
    assert found[-1].level != "fail"
    assert all("the relay 127.0.0.1 is on this machine" in c.message for c in found[2:4])
    assert "STARTTLS (TLSv1." in found[6].message and "login as digest accepted" in (
        found[6].message
    )
