"""SMTP faults against a scripted server: each lands the delivery in the right state, and a
mended server gets the deferred mail once the clock passes its next attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from delivery_helpers import add_subscribers, eventually, fetch_sample, smtp_settings, states
from scripted_smtp import DROP, HANG, Script, Scripted, port_refusing_connections, scripted_smtp
from sqlalchemy import select

from digest.app import digests, sending
from digest.config import Settings
from digest.delivery.limits import RateLimiter
from digest.delivery.mailers import Envelope, SendError, SmtpMailer
from digest.delivery.sender import SendSummary
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import Bounce, Delivery, Subscriber
from digest.render import Renderer
from digest.store import Store, outbox

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
FAST = {
    "SMTP__GREETING_TIMEOUT": "0.5",
    "SMTP__TIMEOUT": "1",
    "SMTP__DATA_TIMEOUT": "0.5",
    "SMTP__CONNECT_TIMEOUT": "1",
}


PIPELINING_EHLO = ["250-scripted.test", "250-PIPELINING", "250 8BITMIME"]


@pytest.fixture(params=["one by one", "pipelined"])
def server(request: pytest.FixtureRequest) -> Iterator[Scripted]:
    """The server, offering PIPELINING (MAIL, RCPT and DATA sent in one go) or not: every
    fault must land the same either way."""
    with scripted_smtp() as running:
        if request.param == "pipelined":
            running.script.ehlo = PIPELINING_EHLO
        yield running


def prepared(settings: Settings, store: Store, server: Scripted, n: int = 3, **extra) -> Settings:
    mail = smtp_settings(settings, server.host, server.port, **{**FAST, **extra})
    fetch_sample(mail, store, NOW)
    add_subscribers(store, n, now=NOW)
    planned = digests.plan_and_rank(mail, store, NOW)
    assert planned.planned == n
    return mail


def send(settings: Settings, store: Store, at: datetime = NOW) -> SendSummary:
    links = SignedLinks(settings.web.base_url, Tokens(settings.web.secret_key))
    return sending.send_all(settings, store, links=links, clock=lambda: at)


def mend(script: Script) -> None:
    """Every fault undone; whether the server offers PIPELINING stays."""
    pipelining = script.ehlo == PIPELINING_EHLO
    for f in fields(Script):
        setattr(script, f.name, getattr(Script(), f.name))
    if pipelining:
        script.ehlo = PIPELINING_EHLO


def deliveries(store: Store) -> list[Delivery]:
    with store.transaction() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


STARTTLS_EHLO = ["250-scripted.test", "250-STARTTLS", "250 8BITMIME"]

# name, script, settings, the state all three land in, whether mail reached the server's DATA
CASES = [
    ("421 at the greeting", {"greeting": "421 4.3.2 busy, try later"}, {}, "deferred", False),
    ("450 to RCPT", {"rcpt": "450 4.2.1 mailbox busy"}, {}, "deferred", False),
    ("451 after the dot", {"final": "451 4.3.0 local error"}, {}, "deferred", True),
    ("452 to RCPT", {"rcpt": "452 4.5.3 too many recipients"}, {}, "deferred", False),
    ("550 to RCPT", {"rcpt": "550 5.1.1 no such user"}, {}, "failed", False),
    ("553 to RCPT", {"rcpt": "553 5.1.3 bad address syntax"}, {}, "failed", False),
    ("554 after the dot", {"final": "554 5.7.1 message rejected"}, {}, "failed", True),
    ("hang at the greeting", {"greeting": HANG}, {}, "deferred", False),
    ("hang after the dot", {"final": HANG}, {}, "unknown", True),
    ("drop after the dot", {"final": DROP}, {}, "unknown", True),
    ("STARTTLS not offered", {}, {"SMTP__SECURITY": "starttls"}, "deferred", False),
    (
        "STARTTLS refused",
        {"ehlo": STARTTLS_EHLO, "starttls": "454 4.7.0 TLS not available"},
        {"SMTP__SECURITY": "starttls"},
        "deferred",
        False,
    ),
    ("sender refused", {"mail": "553 5.7.1 sender not allowed"}, {}, "deferred", False),
    ("421 to MAIL", {"mail": "421 4.7.0 closing"}, {}, "deferred", False),
]


@pytest.mark.parametrize(
    ("script", "extra", "expected", "reached_data"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_fault_lands_in_the_right_state_and_a_mended_server_gets_the_mail(
    settings: Settings,
    store: Store,
    server: Scripted,
    script: dict,
    extra: dict,
    expected: str,
    reached_data: bool,
) -> None:
    for key, value in script.items():
        setattr(server.script, key, value)
    mail = prepared(settings, store, server, **extra)
    started = time.monotonic()
    first = send(mail, store)
    assert time.monotonic() - started < 8  # every hang is cut short by its timeout
    assert states(store) == {expected: 3}, [d.last_error for d in deliveries(store)]
    assert server.log.messages == []
    assert bool(server.log.seen) == reached_data
    if "SECURITY" in str(extra):
        assert "MAIL" not in server.log.commands  # nothing went out in plain text
    rows = deliveries(store)
    for row in rows:
        assert row.last_error and row.lease_until is None
    with store.transaction() as session:
        kinds = session.scalars(select(Bounce.kind)).all()
        counts = session.scalars(select(Subscriber.bounce_count)).all()
    if expected == "failed":
        assert first.failed == 3 and kinds == ["failed"] * 3 and counts == [1, 1, 1]
        assert all(row.next_attempt_at is None for row in rows)
    else:
        assert kinds == [] and counts == [0, 0, 0]  # a server's trouble is nobody's bounce
    if expected == "deferred":
        for row in rows:
            # Backoff: the first retry after 60 s ± 20 % jitter.
            assert NOW + timedelta(seconds=47) < row.next_attempt_at < NOW + timedelta(seconds=73)
        if not script.get("rcpt") and not script.get("final"):
            # The server refused us: one attempt, the rest of the batch given back untried.
            assert sorted(row.attempts for row in rows) == [0, 0, 1]
    if expected == "unknown":
        assert first.unknown == 3  # the default policy resends them after a backoff
        assert all(row.next_attempt_at is not None for row in rows)

    if "SECURITY" in str(extra):
        return  # mending means offering TLS, which this plain server cannot
    # Mended: the retry comes once the clock passes the next attempt, not before.
    mend(server.script)
    assert send(mail, store, NOW + timedelta(seconds=30)).claimed == 0
    later = send(mail, store, NOW + timedelta(minutes=5))
    if expected == "failed":
        assert later.claimed == 0 and server.log.messages == []
        return
    assert later.sent == 3 and states(store) == {"sent": 3}
    got = sorted(m.recipient for m in server.log.messages)
    assert got == [f"reader{n:05d}@example.org" for n in range(3)]
    if reached_data:
        # The messages in flight went twice: the same Message-ID, the same bytes.
        for first_copy in server.log.seen[:3]:
            again = [m for m in server.log.messages if m.recipient == first_copy.recipient]
            assert again[0].data == first_copy.data


def test_a_refused_connection_defers_the_batch(settings: Settings, store: Store) -> None:
    with scripted_smtp() as server:
        mail = prepared(settings, store, server)
    closed = smtp_settings(settings, "127.0.0.1", port_refusing_connections(), **FAST)
    summary = send(closed, store)
    assert (summary.deferred, summary.released) == (1, 2)
    assert states(store) == {"deferred": 3}
    assert "cannot connect" in deliveries(store)[0].last_error
    assert mail  # the first server only planned


def test_one_refused_recipient_does_not_stop_the_others(
    settings: Settings, store: Store, server: Scripted
) -> None:
    server.script.rcpt = lambda to, n: "550 5.1.1 no such user" if "00001" in to else "250 Ok"
    mail = prepared(settings, store, server, n=4)
    summary = send(mail, store)
    assert (summary.sent, summary.failed) == (3, 1)
    assert len(server.log.messages) == 3 and server.log.connections == 1


def test_a_dropped_connection_is_reopened_and_nothing_is_deferred(
    settings: Settings, store: Store, server: Scripted
) -> None:
    server.script.drop_after = 2  # the server hangs up at the third MAIL of each connection
    mail = prepared(settings, store, server, n=5)
    summary = send(mail, store)
    assert summary.sent == 5 and states(store) == {"sent": 5}
    assert server.log.connections == 3


def test_messages_per_connection(settings: Settings, store: Store, server: Scripted) -> None:
    mail = prepared(settings, store, server, n=5, SMTP__MESSAGES_PER_CONNECTION="2")
    assert send(mail, store).sent == 5
    assert server.log.connections == 3 and server.log.commands.count("QUIT") == 3


def test_several_connections_at_once(settings: Settings, store: Store, server: Scripted) -> None:
    def slow(to: str, n: int) -> str:
        time.sleep(0.02)
        return "250 2.0.0 Ok"

    server.script.final = slow
    mail = prepared(
        settings, store, server, n=40, SMTP__MAX_CONNECTIONS="3", DELIVERY__BATCH_SIZE="4"
    )
    summary = send(mail, store)
    assert summary.sent == 40 and len(server.log.messages) == 40
    assert server.log.most_at_once == 3 and server.log.connections == 3


def test_giving_up_after_the_give_up_age(
    settings: Settings, store: Store, server: Scripted
) -> None:
    server.script.final = "451 4.3.0 try later"
    mail = prepared(settings, store, server, n=1, DELIVERY__GIVE_UP_HOURS="2")
    at = NOW
    for _ in range(12):
        send(mail, store, at)
        at += timedelta(minutes=30)
    [row] = deliveries(store)
    assert row.status == "failed" and row.last_error.startswith("gave up after")
    assert 1 < row.attempts <= 6


def test_hold_policy_keeps_unknown_mail_for_the_operator(
    settings: Settings, store: Store, server: Scripted
) -> None:
    server.script.final = HANG
    mail = prepared(settings, store, server, n=2, DELIVERY__UNKNOWN_POLICY="hold")
    send(mail, store)
    assert states(store) == {"unknown": 2}
    assert all(
        r.handed_over_at is not None and r.next_attempt_at is None for r in deliveries(store)
    )
    mend(server.script)
    assert send(mail, store, NOW + timedelta(days=1)).claimed == 0  # held: never by itself
    with store.transaction() as session:
        assert outbox.requeue(session, NOW, statuses=["unknown"]) == 2
    assert send(mail, store, NOW + timedelta(minutes=1)).sent == 2


def test_daily_cap(settings: Settings, store: Store, server: Scripted) -> None:
    mail = prepared(settings, store, server, n=5, DELIVERY__DAILY_CAP="2")
    first = send(mail, store)
    assert first.sent == 2 and first.capped
    assert send(mail, store, NOW + timedelta(hours=1)).sent == 0
    nxt = send(mail, store, NOW + timedelta(days=1))  # a new UTC day
    assert nxt.sent == 2 and states(store) == {"sent": 4, "planned": 1}


def test_subscribers_who_left_are_not_mailed(
    settings: Settings, store: Store, server: Scripted
) -> None:
    mail = prepared(settings, store, server, n=3)
    with store.transaction() as session:
        session.get(Subscriber, 1).status = "unsubscribed"
    assert send(mail, store).sent == 2
    assert states(store) == {"sent": 2, "cancelled": 1}


def test_verp_envelope_sender(settings: Settings, store: Store, server: Scripted) -> None:
    mail = prepared(settings, store, server, n=1, DELIVERY__RETURN_PATH="bounces+{id}@example.org")
    send(mail, store)
    [row] = deliveries(store)
    [message] = server.log.messages
    assert message.sender == f"bounces+{row.public_id}@example.org"


def test_rate_limiter_spaces_messages() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(12):
        limiter.acquire()
    # A burst of 4 goes at once, then one every 0.25 s: 8 more take 2 s.
    assert clock[0] == pytest.approx(2.0)
    assert RateLimiter(0).acquire() == 0.0


# -- the next message's commands behind this one's final dot (RFC 2920 §3.1) -----------------


def _mailer(settings: Settings, server: Scripted) -> SmtpMailer:
    return SmtpMailer(smtp_settings(settings, server.host, server.port, **FAST).smtp)


def _to(local: str) -> Envelope:
    return Envelope("papers@digest.example.org", f"{local}@example.org", local)


def _message(subject: str) -> bytes:
    return f"Subject: {subject}\r\nFrom: papers@digest.example.org\r\n\r\n{subject}\r\n".encode()


def test_the_next_messages_commands_go_out_before_this_ones_reply_is_read(
    settings: Settings,
) -> None:
    with scripted_smtp(Script(ehlo=PIPELINING_EHLO)) as server:
        mailer = _mailer(settings, server)
        finish = mailer.start(_message("one"), _to("a"), then=_to("b"))
        # The reply to the first final dot is not read yet, and the server has the second
        # message's MAIL, RCPT and DATA already (and has answered them).
        assert eventually(lambda: server.log.commands.count("DATA") == 2)
        assert finish().startswith("250")
        assert mailer.start(_message("two"), _to("b"))().startswith("250")
        mailer.close()
    assert [m.recipient for m in server.log.messages] == ["a@example.org", "b@example.org"]
    assert [m.data.splitlines()[0] for m in server.log.messages] == [
        b"Subject: one",
        b"Subject: two",
    ]
    assert server.log.commands == ["EHLO", *["MAIL", "RCPT", "DATA"] * 2, "QUIT"]
    assert server.log.connections == 1


def test_without_pipelining_nothing_goes_ahead(settings: Settings) -> None:
    with scripted_smtp() as server:
        mailer = _mailer(settings, server)
        assert mailer.start(_message("one"), _to("a"), then=_to("b"))().startswith("250")
        assert server.log.commands.count("MAIL") == 1
        assert mailer.start(_message("two"), _to("b"))().startswith("250")
        mailer.close()
    assert len(server.log.messages) == 2 and server.log.connections == 1


def test_commands_sent_ahead_for_a_message_that_does_not_follow_are_discarded(
    settings: Settings,
) -> None:
    with scripted_smtp(Script(ehlo=PIPELINING_EHLO)) as server:
        mailer = _mailer(settings, server)
        assert mailer.start(_message("one"), _to("a"), then=_to("b"))().startswith("250")
        # Not b's message (its rendering failed, say): the connection is ended and c's goes
        # on a new one; nothing reaches the server as b's data.
        assert mailer.start(_message("three"), _to("c"), then=_to("d"))().startswith("250")
        # The lane stops here, with d's commands out: the connection ends, d's never comes.
        mailer.close()
    assert [m.recipient for m in server.log.seen] == ["a@example.org", "c@example.org"]
    assert server.log.connections == 2 and "QUIT" not in server.log.commands


def test_a_refused_final_dot_leaves_the_next_message_that_went_ahead_intact(
    settings: Settings,
) -> None:
    script = Script(ehlo=PIPELINING_EHLO)
    script.final = lambda to, n: "554 5.7.1 rejected" if n == 0 else "250 2.0.0 Ok: queued"
    with scripted_smtp(script) as server:
        mailer = _mailer(settings, server)
        finish = mailer.start(_message("one"), _to("a"), then=_to("b"))
        with pytest.raises(SendError) as refused:
            finish()
        assert (refused.value.stage, refused.value.temporary) == ("recipient", False)
        assert mailer.start(_message("two"), _to("b"))().startswith("250")
        mailer.close()
    # No RSET after the refusal: the next transaction had begun, and it would be its data.
    assert "RSET" not in server.log.commands
    assert [m.recipient for m in server.log.messages] == ["b@example.org"]
    assert server.log.messages[0].data.startswith(b"Subject: two")


def test_a_reply_asked_for_twice_is_not_taken_for_another(settings: Settings) -> None:
    with scripted_smtp(Script(ehlo=PIPELINING_EHLO)) as server:
        mailer = _mailer(settings, server)
        finish = mailer.start(_message("one"), _to("a"))
        assert finish().startswith("250")
        with pytest.raises(SendError) as again:
            finish()
        assert again.value.stage == "unknown"
        # Nothing was read for it: the session goes on (reading would have waited for a
        # reply that never comes, then ended the connection).
        assert mailer.start(_message("two"), _to("b"))().startswith("250")
        mailer.close()
    assert len(server.log.messages) == 2 and server.log.connections == 1


def test_a_message_that_fails_to_render_after_its_commands_went_ahead(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scripted_smtp(Script(ehlo=PIPELINING_EHLO)) as server:
        mail = prepared(settings, store, server, n=3)
        real = Renderer.render
        calls = [0]

        def flaky(self: Renderer, data):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if calls[0] == 2:  # the second message, rendered while the first was taken in
                raise IndexError("string index out of range")
            return real(self, data)

        monkeypatch.setattr(Renderer, "render", flaky)
        summary = send(mail, store)
    assert (summary.sent, summary.deferred) == (2, 1)
    assert states(store) == {"sent": 2, "deferred": 1}
    # The second's MAIL, RCPT and DATA went out behind the first's dot; its data never did,
    # and the connection it waited on was ended: the server saw two messages, whole.
    assert len(server.log.seen) == 2 and server.log.connections == 2
    assert all(m.data.endswith(b"\r\n") and b"Subject:" in m.data for m in server.log.seen)
