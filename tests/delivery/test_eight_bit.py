"""A digest's plain text goes 8bit (RFC 6152) to a server that offers 8BITMIME, and
quoted-printable to one that does not: the same text arrives either way, and nothing 8bit
reaches a server that did not say it takes it."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest
from delivery_helpers import add_subscribers, fetch_sample, smtp_settings
from smtp_server import Received, smtp_server

from digest.app import digests, sending
from digest.config import Settings
from digest.delivery.mailers import seven_bit
from digest.domain.tokens import SignedLinks, Tokens
from digest.store import Store

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def sent_to(settings: Settings, store: Store, *, eight_bit_mime: bool) -> Received:
    with smtp_server(eight_bit_mime=eight_bit_mime) as (host, port, recorder):
        mail = smtp_settings(settings, host, port)
        fetch_sample(mail, store, NOW)
        add_subscribers(store, 1, now=NOW, topics=True, max_papers=5)
        assert digests.plan_and_rank(mail, store, NOW).planned == 1
        links = SignedLinks(mail.web.base_url, Tokens(mail.web.secret_key))
        assert sending.send_all(mail, store, links=links, clock=lambda: NOW).sent == 1
    [received] = recorder.messages
    return received


@pytest.mark.parametrize("offered", [True, False], ids=["8BITMIME", "no 8BITMIME"])
def test_the_text_part_goes_8bit_only_where_the_server_takes_it(
    settings: Settings, store: Store, offered: bool
) -> None:
    received = sent_to(settings, store, eight_bit_mime=offered)
    text, html = received.message.iter_parts()  # parses under policy.strict
    assert not text.get_content().isascii()  # "…", "·": the case this is about
    assert html["Content-Transfer-Encoding"] == "7bit"
    if offered:
        assert received.options == ["BODY=8BITMIME"]
        assert text["Content-Transfer-Encoding"] == "8bit"
    else:
        assert received.options == []
        assert text["Content-Transfer-Encoding"] == "quoted-printable"
        assert received.data.isascii()
        assert seven_bit(received.data) == received.data  # nothing left to re-encode


def test_re_encoding_keeps_everything_but_the_8bit_part(settings: Settings, store: Store) -> None:
    received = sent_to(settings, store, eight_bit_mime=True)
    converted = seven_bit(received.data)
    assert converted.isascii() and b"Content-Transfer-Encoding: 8bit" not in converted
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert converted.split(b"\r\n\r\n", 1)[0] == head  # the headers, byte for byte
    before, after = received.message, Received("", [], converted).message
    for old, new in zip(before.walk(), after.walk(), strict=True):
        assert old.get_content_type() == new.get_content_type()
        if not old.is_multipart():
            assert old.get_content() == new.get_content()
    assert received.data.count(b"\r\n--=_digest_") == converted.count(b"\r\n--=_digest_") == 3


def made(content: EmailMessage) -> bytes:
    return content.as_bytes(policy=policy.SMTP)


def test_re_encoding_finds_8bit_parts_only_where_parts_have_headers() -> None:
    # A single part, 8bit.
    single = EmailMessage()
    single["Subject"] = "one part"
    single.set_content("café · résumé\n", cte="8bit")
    converted = seven_bit(made(single))
    assert converted.isascii() and b"Content-Transfer-Encoding: quoted-printable" in converted
    assert parsed(converted).get_content() == parsed(made(single)).get_content()
    assert "café · résumé" in parsed(converted).get_content()
    # Nested multiparts; an ASCII part whose text has the 8bit header line in it is left
    # alone, the 8bit part inside the inner multipart is re-encoded.
    outer = EmailMessage()
    outer["Subject"] = "nested"
    outer.set_content("Content-Transfer-Encoding: 8bit\n\nis only text here\n", cte="7bit")
    inner = EmailMessage()
    inner.set_content("plain ascii\n", cte="7bit")
    inner.add_alternative("<p>naïve</p>\n", subtype="html", cte="8bit")
    inner.get_payload()[1]["X-After"] = "the 8bit label is not this part's last header"
    outer.make_mixed()
    outer.attach(inner)
    data = made(outer)
    converted = seven_bit(data)
    assert converted.isascii() and b"\n" not in converted.replace(b"\r\n", b"")
    before, after = parsed(data), parsed(converted)
    assert [p.get_content() for p in before.walk() if not p.is_multipart()] == [
        p.get_content() for p in after.walk() if not p.is_multipart()
    ]
    assert [p["Content-Transfer-Encoding"] for p in after.walk() if not p.is_multipart()] == [
        "7bit",
        "7bit",
        "quoted-printable",
    ]
    # Nothing 8bit: the very same bytes.
    assert seven_bit(made(inner).replace(b"8bit", b"7bit")) == made(inner).replace(b"8bit", b"7bit")


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.strict)
    assert isinstance(message, EmailMessage)
    assert message.defects == [] and all(p.defects == [] for p in message.walk())
    return message
