"""Messages rendered ahead of their turn while the server takes one in, against a scripted
server on 127.0.0.1 that holds its reply to a final dot: the mailer tells, without blocking,
whether that reply has begun to arrive; while it has not, the lane renders the next messages
(a few, never more than ``RENDER_AHEAD``); each message still goes once and in order, and what
was rendered but not sent when the lane stops goes back to the queue."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from delivery_helpers import add_subscribers, eventually, fetch_sample, smtp_settings, states
from scripted_smtp import Script, scripted_smtp

from digest.app import digests, sending
from digest.config import Settings
from digest.delivery.mailers import Envelope, SmtpMailer
from digest.delivery.sender import RENDER_AHEAD
from digest.domain.tokens import SignedLinks, Tokens
from digest.render import Renderer
from digest.store import Store

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
PIPELINING_EHLO = ["250-scripted.test", "250-PIPELINING", "250 8BITMIME"]
QUEUED = "250 2.0.0 Ok: queued"
TIMEOUTS = {"SMTP__TIMEOUT": "5", "SMTP__DATA_TIMEOUT": "5", "SMTP__CONNECT_TIMEOUT": "5"}


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each digest rendered from here on, by its recipient, in order."""
    seen: list[str] = []
    real = Renderer.render

    def counted(self: Renderer, data):  # type: ignore[no-untyped-def]
        seen.append(data.to_address)
        return real(self, data)

    monkeypatch.setattr(Renderer, "render", counted)
    return seen


def test_the_mailer_tells_whether_the_final_reply_has_begun_without_waiting_for_it(
    settings: Settings,
) -> None:
    held = threading.Event()

    def final(_to: str, _n: int) -> str:
        held.wait(10)
        return QUEUED

    with scripted_smtp(Script(ehlo=PIPELINING_EHLO, final=final)) as server:
        mailer = SmtpMailer(smtp_settings(settings, server.host, server.port, **TIMEOUTS).smtp)
        assert mailer.reply_waiting()  # nothing sent: nothing to wait for
        message = b"Subject: one\r\nFrom: papers@digest.example.org\r\n\r\none\r\n"
        finish = mailer.start(message, Envelope("papers@digest.example.org", "a@example.org", "a"))
        assert eventually(lambda: len(server.log.seen) == 1, 5)  # the data is in, the reply held
        asked = time.monotonic()
        assert not mailer.reply_waiting()
        assert time.monotonic() - asked < 0.5  # it looked; it did not wait
        held.set()
        assert eventually(mailer.reply_waiting, 5)
        assert finish().startswith("250")
        assert mailer.reply_waiting()  # read: none awaited any more
        mailer.close()
    assert [m.recipient for m in server.log.messages] == ["a@example.org"]


def _prepared(settings: Settings, store: Store, host: str, port: int, n: int) -> Settings:
    mail = smtp_settings(settings, host, port, **TIMEOUTS)
    fetch_sample(mail, store, NOW)
    add_subscribers(store, n, now=NOW)
    assert digests.plan_and_rank(mail, store, NOW).planned == n
    return mail


def _links(settings: Settings) -> SignedLinks:
    return SignedLinks(settings.web.base_url, Tokens(settings.web.secret_key))


def test_while_a_reply_is_held_the_next_messages_are_rendered_up_to_the_limit(
    settings: Settings, store: Store, rendered: list[str]
) -> None:
    when_first_answered: list[str] = []
    script = Script(ehlo=PIPELINING_EHLO)

    def final(_to: str, n: int) -> str:
        if n == 0:
            # Held until the lane has rendered as far ahead as it may, and a while more: a
            # render past the limit would show here.
            eventually(lambda: len(rendered) >= 1 + RENDER_AHEAD, 5)
            time.sleep(0.3)
            when_first_answered.extend(rendered)
        return QUEUED

    script.final = final
    with scripted_smtp(script) as server:
        mail = _prepared(settings, store, server.host, server.port, n=7)
        summary = sending.send_all(mail, store, links=_links(mail), clock=lambda: NOW)
    assert (summary.sent, summary.deferred, summary.failed) == (7, 0, 0)
    assert states(store) == {"sent": 7}
    # While the first message's reply was held: it and the next RENDER_AHEAD, no more.
    sent_order = [m.recipient for m in server.log.messages]
    assert when_first_answered == sent_order[: 1 + RENDER_AHEAD]
    # Every message rendered once, sent once, in the order it was rendered.
    assert rendered == sent_order and len(set(sent_order)) == 7
    assert [m.recipient for m in server.log.seen] == sent_order
    assert server.log.connections == 1


def test_messages_rendered_ahead_but_not_sent_when_the_lane_stops_go_back_to_the_queue(
    settings: Settings, store: Store, rendered: list[str]
) -> None:
    stop = threading.Event()
    script = Script(ehlo=PIPELINING_EHLO)

    def final(_to: str, n: int) -> str:
        if n == 0:  # the worker is told to stop while messages wait, rendered, behind this one
            eventually(lambda: len(rendered) >= 1 + RENDER_AHEAD, 5)
            stop.set()
        return QUEUED

    script.final = final
    with scripted_smtp(script) as server:
        mail = _prepared(settings, store, server.host, server.port, n=6)
        links = _links(mail)
        summary = sending.send_all(mail, store, links=links, clock=lambda: NOW, stop=stop)
        assert summary.sent == 1 and len(rendered) == 1 + RENDER_AHEAD
        assert [m.recipient for m in server.log.seen] == rendered[:1]
        left = states(store)
        # The rest are not lost: the next run sends them, each once.
        again = sending.send_all(mail, store, links=links, clock=lambda: NOW)
    assert left["sent"] == 1 and sum(left.values()) == 6 and "sending" not in left
    assert again.sent == 5 and states(store) == {"sent": 6}
    recipients = [m.recipient for m in server.log.messages]
    assert len(recipients) == 6 and len(set(recipients)) == 6
