"""Dot-stuffing (RFC 5321 §4.5.2): every line that starts with "." reaches the server with
another in front, and the server's un-stuffing gives back the message's own bytes."""

from __future__ import annotations

import random
import re
import smtplib

from smtp_server import smtp_server

from digest.config import SmtpSettings
from digest.delivery.mailers import Envelope, SmtpMailer, _dot_stuffed, _path


def _by_the_rule(payload: bytes) -> bytes:
    # The rule written out the slow, obvious way, one line at a time.
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    lines = payload.split(b"\r\n")[:-1]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def test_stuffing_matches_the_rule_on_awkward_payloads() -> None:
    rng = random.Random(5321)
    pieces = [b".", b"..", b"a", b"=2E", b" ", b".x", b"\r\n", b"\r\n.", b"\r\n.\r\n", b"end"]
    payloads = [b"", b".", b".\r\n", b"a\r\n.\r\nb", b"..\r\n...\r\n", b"no break at the end"]
    payloads += [b"".join(rng.choices(pieces, k=rng.randint(1, 40))) for _ in range(3000)]
    for payload in payloads:
        if b"\r" in payload.replace(b"\r\n", b""):
            continue  # a bare CR is not a line end; the rule above splits at CRLF only
        stuffed = _dot_stuffed(payload)
        assert stuffed == _by_the_rule(payload) + b".\r\n", payload
        assert not re.search(rb"\r\n\.\r\n", stuffed[:-3])  # never an early end of data


def test_lines_starting_with_a_dot_arrive_intact() -> None:
    body = b"\r\n".join([b".", b"..", b".hl{color:red}", b"a line", b"...", b"last."])
    message = b"Subject: dots\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\r\n" + body + b"\r\n"
    with smtp_server() as (host, port, recorder):
        mailer = SmtpMailer(SmtpSettings(host=host, port=port, security="none"))
        try:
            mailer.send(message, Envelope("a@example.org", "b@example.org", "dots"))
        finally:
            mailer.close()
    [received] = recorder.messages
    assert received.data == message


def test_plain_addresses_are_put_in_angle_brackets_as_smtplib_does() -> None:
    # The fast path for MAIL FROM and RCPT TO gives what smtplib.quoteaddr gives, on random
    # addresses of the characters it takes; anything else (brackets, quotes, spaces, a
    # display name, non-ASCII) goes through quoteaddr itself.
    rng = random.Random(2920)
    alphabet = "ab.+-_!#$%&'*/=?^`{|}~1.A"
    addresses = ["reader@example.org", "bounces+1f2e@example.org", ".a..b.@c", "a@", "@b"]
    for _ in range(20_000):
        left = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        addresses.append(left + "@" + "".join(rng.choice(alphabet) for _ in range(5)))
    addresses += ["a[b]@c", '"q r"@example.org', "A <a@b.org>", "jörg@b.de", "a@b@c", "<>"]
    for address in addresses:
        assert _path(address) == smtplib.quoteaddr(address), address
