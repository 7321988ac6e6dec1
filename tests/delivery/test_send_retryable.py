"""Only a message's own fault fails it for good: a database error or a bug while preparing or
rendering leaves it to be tried again; the lease guard covers rendering; a stop signal
ends a worker within one message exchange."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from common import NO_MODEL
from delivery_helpers import add_subscribers, fetch_sample, midday_zone, smtp_settings, states
from smtp_server import Recorder, smtp_server
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from digest.app import digests, sending
from digest.config import Settings
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import Delivery
from digest.render import Renderer
from digest.store import Store

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[tuple[int, Recorder]]:
    with smtp_server() as (_, port, recorder):
        yield port, recorder


def planned(settings: Settings, store: Store, port: int, n: int = 3, **extra: str) -> Settings:
    mail = smtp_settings(settings, "127.0.0.1", port, **extra)
    fetch_sample(mail, store, NOW)
    add_subscribers(store, n, now=NOW)
    assert digests.plan_and_rank(mail, store, NOW).planned == n
    return mail


def send(settings: Settings, store: Store, clock=lambda: NOW):  # type: ignore[no-untyped-def]
    links = SignedLinks(settings.web.base_url, Tokens(settings.web.secret_key))
    return sending.send_all(settings, store, links=links, clock=clock)


def rows(store: Store) -> list[Delivery]:
    with store.transaction() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("database is locked")),
        IndexError("string index out of range"),  # what the shared stemmer's race raised
    ],
    ids=["database error", "a bug"],
)
def test_an_error_while_rendering_leaves_the_digest_to_be_tried_again(
    settings: Settings,
    store: Store,
    sink: tuple[int, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    port, recorder = sink
    mail = planned(settings, store, port)
    real = Renderer.render
    calls = Counter[str]()

    def flaky(self: Renderer, data):  # type: ignore[no-untyped-def]
        calls["render"] += 1
        if calls["render"] == 2:  # the second message of the run
            raise error
        return real(self, data)

    monkeypatch.setattr(Renderer, "render", flaky)
    summary = send(mail, store)
    assert (summary.sent, summary.deferred, summary.failed) == (2, 1, 0)
    [broken] = [d for d in rows(store) if d.status != "sent"]
    assert broken.status == "deferred"
    assert broken.next_attempt_at is not None and broken.next_attempt_at > NOW
    assert broken.last_error.startswith("internal error while rendering: ")
    assert type(error).__name__ in broken.last_error
    # Once its time comes, it goes like any other.
    later = broken.next_attempt_at + timedelta(seconds=1)
    assert send(mail, store, lambda: later).sent == 1
    assert states(store) == {"sent": 3}
    assert len(recorder.messages) == 3


def test_an_error_while_preparing_leaves_the_digest_to_be_tried_again(
    settings: Settings, store: Store, sink: tuple[int, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, recorder = sink
    mail = planned(settings, store, port)
    first = rows(store)[0].id
    real = sending.digest_input

    def broken(settings, links, reader, delivery, items, **kw):  # type: ignore[no-untyped-def]
        if delivery.id == first:
            raise KeyError("a bug while loading")
        return real(settings, links, reader, delivery, items, **kw)

    monkeypatch.setattr(sending, "digest_input", broken)
    summary = send(mail, store)
    assert (summary.sent, summary.deferred, summary.failed) == (2, 1, 0)
    row = rows(store)[0]
    assert row.status == "deferred" and row.next_attempt_at is not None
    assert row.last_error.startswith("internal error while preparing the message: KeyError")
    monkeypatch.setattr(sending, "digest_input", real)
    assert send(mail, store, lambda: row.next_attempt_at + timedelta(seconds=1)).sent == 1
    assert states(store) == {"sent": 3} and len(recorder.messages) == 3


def test_a_rendering_error_fails_the_digest_only_at_the_give_up_age(
    settings: Settings, store: Store, sink: tuple[int, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = sink
    mail = planned(settings, store, port, n=1, DELIVERY__GIVE_UP_HOURS="1")

    def always(self: Renderer, data):  # type: ignore[no-untyped-def]
        raise RuntimeError("the template is broken")

    monkeypatch.setattr(Renderer, "render", always)
    assert send(mail, store).deferred == 1
    summary = send(mail, store, lambda: NOW + timedelta(hours=2))
    assert summary.failed == 1
    [row] = rows(store)
    assert row.status == "failed"
    assert row.last_error.startswith("gave up after 2 attempts over 1 hours: internal error")


def test_a_render_that_outlasts_the_lease_never_reaches_the_mailer(
    settings: Settings, store: Store, sink: tuple[int, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard is checked after rendering: a message whose lease ran out while it was
    being made is not sent after its lease; it waits for a later try."""
    port, recorder = sink
    # Retries well after the run, so each message is rendered (slowly) once.
    mail = planned(
        settings, store, port, n=2, DELIVERY__RETRY_BASE_SECONDS="7200", DELIVERY__RETRY_JITTER="0"
    )
    clock = [NOW]
    real = Renderer.render

    def slow(self: Renderer, data):  # type: ignore[no-untyped-def]
        clock[0] += timedelta(seconds=mail.delivery.lease_seconds)  # longer than the lease
        return real(self, data)

    monkeypatch.setattr(Renderer, "render", slow)
    summary = send(mail, store, lambda: clock[0])
    assert (summary.sent, summary.deferred) == (0, 2)
    assert recorder.messages == []
    for row in rows(store):
        assert (row.status, row.attempts) == ("deferred", 1)
        assert row.last_error == "not sent: rendering took longer than the lease leaves for sending"
    monkeypatch.setattr(Renderer, "render", real)
    later = max(row.next_attempt_at for row in rows(store)) + timedelta(seconds=1)
    assert send(mail, store, lambda: later).sent == 2


@pytest.mark.slow
def test_sigterm_ends_a_busy_worker_within_one_message_exchange(
    tmp_path: Path, sink: tuple[int, Recorder]
) -> None:
    port, recorder = sink
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    settings = smtp_settings(url, "127.0.0.1", port)
    store = Store.open(settings.database)
    now = datetime.now(UTC)
    fetch_sample(settings, store, now)
    add_subscribers(store, 300, zone=midday_zone(now), now=now, topics=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DIGEST_DATABASE__URL": url,
        "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__MESSAGES_PER_SECOND": "20",  # 15 s of work: it is busy when stopped
        "DIGEST_WEB__BASE_URL": "https://digest.example.org",
        "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
        **NO_MODEL,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "digest", "worker", "--name", "w1", "--processes", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(recorder.messages) < 20 and time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    took = time.monotonic() - stopped
    assert worker.returncode == 0, err.decode()[-2000:]
    assert took < 5, f"took {took:.1f} s to stop"
    counts = states(store)
    assert counts["sent"] == len(recorder.messages) < 300
    assert set(counts) <= {"sent", "planned", "deferred"}  # nothing left "sending" or failed
    assert b"Traceback" not in err
    store.close()
