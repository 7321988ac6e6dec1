"""Addresses as people type them: internationalised domains are delivered (as IDNA in the
envelope), a non-ASCII part before the @ goes with SMTPUTF8 or fails clearly, a part before
the @ over 64 octets is refused; invisible characters in topics are dropped at input."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from cli_support import run_cli
from delivery_helpers import fetch_sample, smtp_settings
from smtp_server import smtp_server
from sqlalchemy import select
from web_support import SUBSCRIBE_FORM, Harness, web_settings

from digest.app import digests, sending
from digest.config import Settings
from digest.domain import addresses
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.domain.tokens import SignedLinks, Tokens
from digest.errors import ValidationError
from digest.models import Bounce, Delivery, Subscriber
from digest.store import Store, subscribers

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def test_the_part_before_the_at_may_have_64_octets_not_65() -> None:
    assert addresses.normalise("a" * 64 + "@example.org")[0] == "a" * 64 + "@example.org"
    with pytest.raises(ValidationError) as info:
        addresses.normalise("a" * 65 + "@example.org")
    assert "the part before the @ is 65 octets long" in str(info.value)
    assert "at most 64 (RFC 5321)" in str(info.value)
    # Octets, not characters: 33 two-octet letters are 66 octets.
    with pytest.raises(ValidationError, match="is 66 octets long"):
        addresses.normalise("ö" * 33 + "@example.org")


def test_wire_forms() -> None:
    assert addresses.wire_form("reader@example.org") == ("reader@example.org", False)
    assert addresses.wire_form("user@bücher.de") == ("user@xn--bcher-kva.de", False)
    assert addresses.wire_form("jörg@bücher.de") == ("jörg@xn--bcher-kva.de", True)


def digest_for(settings: Settings, store: Store, address: str) -> None:
    fetch_sample(settings, store, NOW)
    with store.transaction() as session:
        subscribers.upsert(
            session,
            address,
            build_profile(),
            Schedule.checked("UTC", 0),
            confirmed=True,
            now=NOW,
        )
    assert digests.plan_and_rank(settings, store, NOW).planned == 1


def send(settings: Settings, store: Store):  # type: ignore[no-untyped-def]
    links = SignedLinks(settings.web.base_url, Tokens(settings.web.secret_key))
    return sending.send_all(settings, store, links=links, clock=lambda: NOW)


@pytest.mark.parametrize("smtputf8", [False, True], ids=["plain server", "SMTPUTF8 server"])
def test_an_idn_domain_is_delivered_with_its_ascii_form(
    settings: Settings, store: Store, smtputf8: bool
) -> None:
    with smtp_server(smtputf8=smtputf8) as (host, port, recorder):
        mail = smtp_settings(settings, host, port)
        digest_for(mail, store, "user@bücher.de")
        assert send(mail, store).sent == 1
    [received] = recorder.messages
    assert received.recipients == ["user@xn--bcher-kva.de"]
    assert "SMTPUTF8" not in received.options
    assert b"\r\nTo: user@xn--bcher-kva.de\r\n" in received.data
    assert received.data.partition(b"\r\n\r\n")[0].isascii()  # the headers
    assert received.message["To"] == "user@xn--bcher-kva.de"  # parses under policy.strict


def test_a_non_ascii_local_part_goes_with_smtputf8(settings: Settings, store: Store) -> None:
    with smtp_server(smtputf8=True) as (host, port, recorder):
        mail = smtp_settings(settings, host, port)
        digest_for(mail, store, "jörg@bücher.de")
        assert send(mail, store).sent == 1
    [received] = recorder.messages
    assert received.recipients == ["jörg@xn--bcher-kva.de"]
    assert "SMTPUTF8" in received.options
    assert "\r\nTo: jörg@xn--bcher-kva.de\r\n".encode() in received.data  # UTF-8, RFC 6532
    assert b"=?utf-8?" not in received.data.split(b"\r\n\r\n")[0].lower().replace(b"subject", b"")
    parsed = email.message_from_bytes(received.data, policy=policy.SMTPUTF8)
    assert parsed["To"] == "jörg@xn--bcher-kva.de"


def test_without_smtputf8_that_address_fails_clearly_and_is_not_a_bounce(
    settings: Settings, store: Store
) -> None:
    with smtp_server(smtputf8=False) as (host, port, recorder):
        mail = smtp_settings(settings, host, port)
        digest_for(mail, store, "jörg@bücher.de")
        assert send(mail, store).failed == 1
    assert recorder.messages == []
    with store.transaction() as session:
        [row] = session.scalars(select(Delivery))
        assert row.status == "failed"
        assert row.last_error == (
            f"{host}:{port} does not offer SMTPUTF8, which <jörg@bücher.de> needs (the part "
            "before the @ is not ASCII); this message cannot go through that server"
        )
        assert session.scalars(select(Bounce)).all() == []  # says nothing about the address


def test_the_file_mailer_writes_the_address_not_an_encoded_word(
    settings: Settings, store: Store
) -> None:
    digest_for(settings, store, "user@bücher.de")
    summary = send(settings, store)
    [written] = summary.files
    data = Path(written).read_bytes()
    assert b"\r\nTo: user@xn--bcher-kva.de\r\n" in data and b"=?utf-8?" not in data.lower()


def test_an_idn_reader_gets_the_web_confirmation(settings: Settings, store: Store) -> None:
    with smtp_server() as (host, port, recorder):
        web = Harness(web_settings(settings, host, port), store, recorder)
        try:
            page = web.client().submit("/", {**SUBSCRIBE_FORM, "email": "user@bücher.de"})
            assert page.status_code == 200 and "Check your inbox" in page.text
        finally:
            web.close()
    [received] = recorder.messages
    assert received.recipients == ["user@xn--bcher-kva.de"]
    assert received.message["To"] == "user@xn--bcher-kva.de"
    assert "/confirm/" in received.message.get_body(("plain",)).get_content()


def test_the_web_form_refuses_a_65_octet_local_part(settings: Settings, store: Store) -> None:
    with smtp_server() as (host, port, recorder):
        web = Harness(web_settings(settings, host, port), store, recorder)
        try:
            address = "a" * 65 + "@example.org"
            page = web.client().submit("/", {**SUBSCRIBE_FORM, "email": address})
        finally:
            web.close()
    assert page.status_code == 400
    assert "the part before the @ is 65 octets long" in page.text
    assert recorder.messages == []
    with store.transaction() as session:
        assert session.scalars(select(Subscriber)).all() == []


def test_the_cli_refuses_a_65_octet_local_part_in_one_line(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "subscribe", "a" * 65 + "@example.org", "--include", "diffusion")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "the part before the @ is 65 octets long" in line


def test_digest_send_reports_an_undeliverable_address_in_one_line(tmp_path: Path) -> None:
    with smtp_server(smtputf8=False) as (host, port, _recorder):
        env = {
            "DIGEST_MAIL__TRANSPORT": "smtp",
            "DIGEST_SMTP__HOST": host,
            "DIGEST_SMTP__PORT": str(port),
            "DIGEST_SMTP__SECURITY": "none",
        }
        assert run_cli(tmp_path, "fetch", "--source", "sample", **env).returncode == 0
        made = run_cli(tmp_path, "subscribe", "jörg@bücher.de", "--hour", "0", **env)
        assert made.returncode == 0, made.stderr
        done = run_cli(tmp_path, "send", "--date", "2026-12-04", **env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "failed 1" in done.stdout
    assert "does not offer SMTPUTF8, which <jörg@bücher.de> needs" in done.stderr


def test_invisible_characters_in_topics_are_dropped_at_input(tmp_path: Path) -> None:
    sneaky = "lan\u200bguage \u202emodels\u202c, diff\x07usion"
    done = run_cli(
        tmp_path,
        "subscribe",
        "ada@example.org",
        "--include",
        sneaky,
        "--author",
        "Yann\u200f LeCun",
    )
    assert done.returncode == 0, done.stderr
    listed = run_cli(tmp_path, "subscribers", "--json")
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert "language models" in row["topics"] and "diff usion" in row["topics"]
    assert not any(ch in listed.stdout for ch in "\u200b\u202e\u202c\u200f\x07")
    table = run_cli(tmp_path, "subscribers")
    assert not any(ch in table.stdout for ch in "\u200b\u202e\u202c\u200f\x07")
