"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), recording every message."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    options: list[str] = field(default_factory=list)  # MAIL FROM's parameters (SMTPUTF8, ...)

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=policy.strict)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    offer_8bitmime: bool = True  # aiosmtpd offers it; a few old relays do not
    # aiosmtpd reads commands line by line from a buffer, so it takes them pipelined (RFC
    # 2920) though it does not say so; offering it, as Postfix and Exim do, makes the
    # client send the next message's commands behind each final dot.
    offer_pipelining: bool = True

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        if not self.offer_8bitmime:
            responses = [line for line in responses if "8BITMIME" not in line.upper()]
        if self.offer_pipelining:
            # Continuation lines ("250-") before the last ("250 ").
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    bytes(content),
                    list(envelope.mail_options),
                )
            )
        return "250 2.0.0 Ok: queued"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if address in m.recipients]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(
    *, smtputf8: bool = False, eight_bit_mime: bool = True, pipelining: bool = True
) -> Iterator[tuple[str, int, Recorder]]:
    """``smtputf8``: offer SMTPUTF8 (RFC 6531), as many real servers do; ``eight_bit_mime``:
    offer 8BITMIME (RFC 6152), as nearly all do; ``pipelining``: offer PIPELINING (RFC
    2920), as nearly all do."""
    recorder = Recorder(offer_8bitmime=eight_bit_mime, offer_pipelining=pipelining)
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield "127.0.0.1", port, recorder
    finally:
        controller.stop()
