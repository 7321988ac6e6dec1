"""Transactional mail goes through the durable outbox: a confirmation greylisted by the
relay (4xx) is retried and arrives; workers send it ahead of digests; a permanent refusal
fails it with its reason; the subscriber change and its mail are stored together."""

from __future__ import annotations

import email
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from delivery_helpers import add_subscribers, fetch_sample, smtp_settings
from scripted_smtp import Scripted, scripted_smtp
from smtp_server import Recorder, smtp_server
from sqlalchemy import select
from web_support import BASE, NOW, SUBSCRIBE_FORM, Harness, csrf_of, web_settings

from digest.app import digests, health, sending, transactional
from digest.config import Settings
from digest.delivery.mailers import make_mailer
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import TransactionalMail
from digest.store import Store, mail_outbox


def greylisting(address: str, count: int) -> str:
    """A relay that greylists: the first try of each recipient is told to come back later."""
    seen = greylisting.tried  # type: ignore[attr-defined]
    if address in seen:
        return "250 2.1.5 Ok"
    seen.add(address)
    return "451 4.7.1 Greylisted, please try again later"


@pytest.fixture
def relay() -> Iterator[Scripted]:
    greylisting.tried = set()  # type: ignore[attr-defined]
    with scripted_smtp() as running:
        running.script.rcpt = greylisting
        yield running


@pytest.fixture
def web(settings: Settings, store: Store, relay: Scripted) -> Iterator[Harness]:
    harness = Harness(web_settings(settings, relay.host, relay.port), store, Recorder())
    yield harness
    harness.close()


def mails(store: Store) -> list[TransactionalMail]:
    with store.transaction() as session:
        return list(session.scalars(select(TransactionalMail).order_by(TransactionalMail.id)))


def test_a_greylisted_confirmation_arrives_after_the_retry(
    web: Harness, relay: Scripted, store: Store
) -> None:
    page = web.client().submit("/", SUBSCRIBE_FORM)
    assert page.status_code == 200 and "Check your inbox" in page.text
    # The relay said 451: nothing delivered, and the mail waits in the outbox.
    assert relay.log.messages == []
    [waiting] = mails(store)
    assert (waiting.status, waiting.kind, waiting.attempts) == ("deferred", "confirm", 1)
    assert waiting.recipient == "reader@example.org"
    assert "451 4.7.1 Greylisted" in waiting.last_error
    assert waiting.next_attempt_at is not None and waiting.next_attempt_at > NOW
    sender = web.app.state.web.mail_sender
    assert sender.send_due().claimed == 0  # not due yet: the backoff is kept
    web.clock.now = waiting.next_attempt_at + timedelta(seconds=1)
    assert sender.send_due().sent == 1
    [arrived] = relay.log.messages
    message = email.message_from_bytes(arrived.data, policy=policy.default)
    assert message["To"] == "reader@example.org"
    assert f"{BASE}/confirm/" in message.get_body(("plain",)).get_content()
    [done] = mails(store)
    assert done.status == "sent" and done.payload == b""  # its signed link is not kept
    # The link works: the reader is confirmed.
    [link] = re.findall(
        re.escape(BASE) + r"(/confirm/[^\s<>\"]+)", message.get_body(("plain",)).get_content()
    )
    client = web.client()
    page = client.get(link)
    assert page.status_code == 200
    assert client.post(link, data={"csrf_token": csrf_of(page.text)}).status_code == 303
    person = web.subscriber("reader@example.org")
    assert person is not None and person.status == "active"


def test_the_web_apps_own_retry_thread_sends_it_when_its_time_comes(
    settings: Settings, store: Store, relay: Scripted
) -> None:
    """Served for real (the app's lifespan runs), nobody else needs to be running."""
    mail = web_settings(
        settings,
        relay.host,
        relay.port,
        delivery__retry_base_seconds="0.3",
        delivery__retry_jitter="0",
    )
    harness = Harness(mail, store, Recorder())
    harness.clock = lambda: datetime.now(UTC)  # type: ignore[assignment]
    harness.app.state.web.clock = harness.clock
    sender = harness.app.state.web.mail_sender
    sender.clock = harness.clock
    sender.start()
    try:
        harness.client().submit("/", SUBSCRIBE_FORM)
        deadline = time.monotonic() + 10
        # The relay has the message before the sender has its reply and records it: wait
        # for the record too.
        while time.monotonic() < deadline and not (
            relay.log.messages and [m.status for m in mails(store)] == ["sent"]
        ):
            time.sleep(0.05)
        assert len(relay.log.messages) == 1
        assert [m.status for m in mails(store)] == ["sent"]
    finally:
        sender.close()
        harness.close()


def test_a_worker_sends_transactional_mail_ahead_of_digests(
    settings: Settings, store: Store
) -> None:
    with smtp_server() as (host, port, recorder):
        mail = smtp_settings(settings, host, port)
        now = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
        fetch_sample(mail, store, now)
        add_subscribers(store, 3, now=now)
        assert digests.plan_and_rank(mail, store, now).planned == 3
        message = web_message(mail, "late@example.org")
        with store.transaction() as session:
            transactional.enqueue(
                session,
                message,
                kind="confirm",
                recipient="late@example.org",
                subscriber_id=None,
                now=now,
            )
        links = SignedLinks(mail.web.base_url, Tokens(mail.web.secret_key))
        summary = sending.send_all(mail, store, links=links, clock=lambda: now)
        assert summary.sent == 4
        assert recorder.messages[0].recipients == ["late@example.org"]
        assert [m.status for m in mails(store)] == ["sent"]


def test_a_permanent_refusal_fails_the_mail_with_its_reason(
    web: Harness, relay: Scripted, store: Store
) -> None:
    relay.script.rcpt = "550 5.1.1 no such user"
    web.client().submit("/", SUBSCRIBE_FORM)
    [failed] = mails(store)
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert failed.last_error == "server replied 550 5.1.1 no such user"
    # The operator hears of it.
    with store.transaction() as session:
        found = health.report(session, web.settings, NOW + timedelta(minutes=1))
    assert found.mails == {"failed": 1}
    assert any("confirmation or preferences-link mail(s)" in p for p in found.problems)


def test_the_mail_is_stored_with_the_change_that_asked_for_it(
    web: Harness, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the mail cannot be stored, the sign-up is not either (nothing half-written)."""

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the outbox is full")

    monkeypatch.setattr(mail_outbox, "enqueue", broken)
    with pytest.raises(RuntimeError, match="the outbox is full"):  # a 500 when served
        web.client().submit("/", SUBSCRIBE_FORM)
    assert web.subscriber("reader@example.org") is None
    assert mails(store) == []


def web_message(settings: Settings, to: str):  # type: ignore[no-untyped-def]
    from digest.render import default_templates_dir
    from digest.render.mails import Mails

    return Mails(settings, default_templates_dir(), lambda: NOW).confirm_subscription(
        to, f"{BASE}/confirm/x"
    )


def test_file_mailer_writes_transactional_mail_to_the_outbox_folder(
    settings: Settings, store: Store
) -> None:
    with store.transaction() as session:
        transactional.enqueue(
            session,
            web_message(settings, "reader@example.org"),
            kind="confirm",
            recipient="reader@example.org",
            subscriber_id=None,
            now=NOW,
        )
    sender = transactional.MailSender(settings, store, lambda: make_mailer(settings), lambda: NOW)
    summary = sender.send_due()
    assert summary.sent == 1
    [written] = summary.files
    assert "confirm-" in written and written.endswith(".eml")
