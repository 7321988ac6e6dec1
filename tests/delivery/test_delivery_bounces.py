"""Bounces: real-shaped delivery status notifications map to the subscriber and count toward
suppression; the command line and the web hook take them; an operator reactivates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from delivery_helpers import add_subscribers, fetch_sample, smtp_settings
from smtp_server import smtp_server
from sqlalchemy import select
from typer.testing import CliRunner

from digest.app import digests, sending
from digest.app.operator import ingest_bounce
from digest.cli import app
from digest.config import Settings
from digest.delivery import bounces
from digest.domain.items import message_id
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import Bounce, Delivery, Subscriber
from digest.store import Store
from digest.web import create_app

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
VERP = "bounces+{id}@digest.example.org"

DSN = """\
Return-Path: <>
Delivered-To: {envelope}
Received: by mx.digest.example.org (Postfix) id 4Q1; Thu, 24 Sep 2026 12:05:00 +0000 (UTC)
Date: Thu, 24 Sep 2026 12:05:00 +0000 (UTC)
From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {envelope}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4Q1.1790000000/mail.example.net"
Message-Id: <20260924120500.4Q1@mail.example.net>

This is a MIME-encapsulated message.

--4Q1.1790000000/mail.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.org[192.0.2.7] said: {code} {status}
    <{recipient}>: Recipient address rejected (in reply to RCPT TO command)

--4Q1.1790000000/mail.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net
X-Postfix-Queue-ID: 4Q1
X-Postfix-Sender: rfc822; {envelope}
Arrival-Date: Thu, 24 Sep 2026 12:00:01 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {code} {status} <{recipient}>: Recipient address rejected

--4Q1.1790000000/mail.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{envelope}>
From: Trending Papers <papers@digest.example.org>
To: {recipient}
Subject: Your papers for Thu 24 Sep: something
Message-ID: {message_id}

--4Q1.1790000000/mail.example.net--
"""


def dsn(
    delivery: Delivery | None,
    recipient: str,
    *,
    envelope: str = "papers@digest.example.org",
    status: str = "5.1.1",
    action: str = "failed",
) -> bytes:
    public_id = delivery.public_id if delivery else "0" * 32
    text = DSN.format(
        envelope=envelope.replace("{id}", public_id),
        recipient=recipient,
        code="550" if status.startswith("5") else "450",
        status=status,
        action=action,
        message_id=message_id(public_id, "papers@digest.example.org"),
    )
    return text.replace("\n", "\r\n").encode()


@pytest.fixture
def sent(settings: Settings, store: Store) -> Iterator[tuple[Settings, list[Delivery]]]:
    """Three subscribers, each with one digest sent through a real SMTP server."""
    with smtp_server() as (host, port, _):
        mail = smtp_settings(
            settings, host, port, DELIVERY__RETURN_PATH=VERP, DELIVERY__BOUNCE_LIMIT="2"
        )
        fetch_sample(mail, store, NOW)
        add_subscribers(store, 3, now=NOW)
        digests.plan_and_rank(mail, store, NOW)
        links = SignedLinks(mail.web.base_url, Tokens(mail.web.secret_key))
        summary = sending.send_all(mail, store, links=links, clock=lambda: NOW)
        assert summary.sent == 3
    with store.transaction() as session:
        yield mail, list(session.scalars(select(Delivery).order_by(Delivery.id)))


def subscriber(store: Store, email: str) -> Subscriber:
    with store.transaction() as session:
        return session.scalars(select(Subscriber).where(Subscriber.email == email)).one()


def test_a_hard_bounce_maps_by_verp_and_counts(sent, store: Store) -> None:
    mail, deliveries = sent
    raw = dsn(deliveries[0], "reader00000@example.org", envelope=VERP)
    result = ingest_bounce(mail, store, raw, now=NOW)
    assert (result.outcome, result.kind, result.status) == ("counted", "hard", "5.1.1")
    assert result.email == "reader00000@example.org"
    assert result.delivery == deliveries[0].public_id
    assert subscriber(store, "reader00000@example.org").bounce_count == 1
    # The same report again (a retried hook call) is one bounce.
    assert ingest_bounce(mail, store, raw, now=NOW).outcome == "duplicate"
    assert subscriber(store, "reader00000@example.org").bounce_count == 1


def test_without_verp_the_original_message_id_maps_it(sent, store: Store) -> None:
    mail, deliveries = sent
    raw = dsn(deliveries[1], "someone-forwarded@elsewhere.example")  # recipient rewritten
    result = ingest_bounce(mail, store, raw, now=NOW)
    assert result.outcome == "counted" and result.email == "reader00001@example.org"


def test_the_limit_suppresses_the_address_until_an_operator_reactivates_it(
    sent, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail, deliveries = sent
    email = "reader00002@example.org"
    # Counted now (the command below reads the real clock, and old bounces stop counting).
    assert ingest_bounce(mail, store, dsn(deliveries[2], email)).outcome == "counted"
    # The next day's digest bounces too: the limit (2) is reached.
    with smtp_server() as (host, port, _):
        later = smtp_settings(mail, host, port, DELIVERY__BOUNCE_LIMIT="2")
        digests.plan_and_rank(later, store, NOW + timedelta(days=1))
        links = SignedLinks(later.web.base_url, Tokens(later.web.secret_key))
        sending.send_all(later, store, links=links, clock=lambda: NOW + timedelta(1))
    with store.transaction() as session:
        second = session.scalars(
            select(Delivery).where(Delivery.local_date == (NOW + timedelta(days=1)).date())
        ).all()[2]
    report = tmp_path / "bounce.eml"
    report.write_bytes(dsn(second, email, envelope=VERP))
    env = {
        "DIGEST_DATABASE__URL": mail.database.url,
        "DIGEST_DELIVERY__RETURN_PATH": VERP,
        "DIGEST_DELIVERY__BOUNCE_LIMIT": "2",
    }
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["bounce", str(report)], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.startswith("suppressed: reader00002@example.org 5.1.1 (hard)")
    assert subscriber(store, email).status == "bounced"

    listed = runner.invoke(app, ["subscribers", "--bounced", "--json"], env=env)
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["email"], r["bounces"]) for r in rows] == [(email, 2)]

    # No more mail for a suppressed address: it is not planned the day after.
    with store.transaction() as session:
        from digest.store import outbox

        due = outbox.due(session, NOW + timedelta(days=2))
        assert subscriber(store, email).id not in {d.subscriber_id for d in due}

    done = runner.invoke(app, ["reactivate", email], env=env)
    assert done.exit_code == 0 and "reactivated" in done.output
    person = subscriber(store, email)
    assert (person.status, person.bounce_count) == ("active", 0)
    assert runner.invoke(app, ["reactivate", email], env=env).exit_code != 0


def test_soft_bounces_are_recorded_not_counted(sent, store: Store) -> None:
    mail, deliveries = sent
    raw = dsn(deliveries[0], "reader00000@example.org", status="4.2.2", action="delayed")
    result = ingest_bounce(mail, store, raw, now=NOW)
    assert (result.outcome, result.kind) == ("recorded", "soft")
    assert subscriber(store, "reader00000@example.org").bounce_count == 0


def test_what_is_not_understood(sent, store: Store) -> None:
    mail, _ = sent
    plain = b"From: someone@example.net\r\nSubject: out of office\r\n\r\nI am away.\r\n"
    assert ingest_bounce(mail, store, plain).outcome == "not_a_report"
    stranger = dsn(None, "nobody@example.net")
    assert ingest_bounce(mail, store, stranger).outcome == "unmatched"
    delivered = dsn(None, "reader00000@example.org", status="2.0.0", action="delivered")
    assert ingest_bounce(mail, store, delivered).outcome == "ignored"
    with store.transaction() as session:
        assert session.scalars(select(Bounce)).all() == []


def test_bounce_command_without_database_asks_the_mail_server_to_retry(tmp_path: Path) -> None:
    from digest.cli import EX_TEMPFAIL

    runner = CliRunner()
    missing = {"DIGEST_DATABASE__URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    done = runner.invoke(app, ["bounce", "-"], input=dsn(None, "x@example.org"), env=missing)
    assert done.exit_code == EX_TEMPFAIL


def test_message_id_format_is_the_one_compose_makes() -> None:
    public_id = "0123456789abcdef0123456789abcdef"
    made = message_id(public_id, "papers@digest.example.org")
    assert bounces._message_id_of(made) == public_id


def test_web_hook_checks_the_shared_secret(sent, store: Store) -> None:
    from starlette.testclient import TestClient

    mail, deliveries = sent
    raw = dsn(deliveries[0], "reader00000@example.org", envelope=VERP)

    def client(secret: str) -> TestClient:
        hooked = mail.model_copy(
            update={"delivery": mail.delivery.model_copy(update={"bounce_hook_secret": secret})}
        )
        return TestClient(create_app(hooked, store))

    assert client("").post("/hooks/bounce", content=raw).status_code == 404  # off by default
    on = client("s3cret-hook-value")
    assert on.post("/hooks/bounce", content=raw).status_code == 403
    wrong = on.post("/hooks/bounce", content=raw, headers={"X-Digest-Secret": "guess"})
    assert wrong.status_code == 403
    assert subscriber(store, "reader00000@example.org").bounce_count == 0
    good = on.post("/hooks/bounce", content=raw, headers={"X-Digest-Secret": "s3cret-hook-value"})
    assert good.status_code == 200 and good.json()["outcome"] == "counted"
    bearer = on.post(
        "/hooks/bounce", content=raw, headers={"Authorization": "Bearer s3cret-hook-value"}
    )
    assert bearer.json()["outcome"] == "duplicate"
    junk = on.post(
        "/hooks/bounce", content=b"hello", headers={"X-Digest-Secret": "s3cret-hook-value"}
    )
    assert junk.status_code == 422
    assert subscriber(store, "reader00000@example.org").bounce_count == 1
