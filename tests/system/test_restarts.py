"""Workers restarted again and again while they send, as deploys and crashes do: every
digest ends `sent`, none `failed`, none lost; only messages in flight at a SIGKILL can go out
twice, and then byte for byte the same. And a fresh worker's sending lanes render exactly
what one thread renders."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from common import NO_MODEL
from delivery_helpers import add_subscribers, fetch_sample, midday_zone, smtp_settings, states
from smtp_server import Recorder, smtp_server
from sqlalchemy import create_engine, select

from digest.app import digests, sending
from digest.config import SmtpSettings
from digest.models import Delivery
from digest.store import Store, papers
from digest.store import digests as stored_digests
from digest.store.outbox import stored

pytestmark = pytest.mark.slow


def worker_env(url: str, port: int, folder: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "DIGEST_DATABASE__URL": url,
        "DIGEST_PATHS__VAR_DIR": str(folder / "var"),
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_WEB__BASE_URL": "https://digest.example.org",
        "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
        "DIGEST_DELIVERY__POLL_SECONDS": "0.5",
        **NO_MODEL,
        **{f"DIGEST_{k}": v for k, v in extra.items()},
    }


def start(name: str, env: dict[str, str], folder: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "worker", "--name", name, "--processes", "1", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def seed(url: str, port: int, count: int) -> None:
    settings = smtp_settings(url, "127.0.0.1", port)
    store = Store.open(settings.database)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    fetch_sample(settings, store, now)
    # With topics: rendering highlights the matched words, so each lane stems as it renders.
    add_subscribers(store, count, zone=midday_zone(now), now=now, topics=True)
    store.close()


def restart_run(url: str, tmp_path: Path, workers: int, count: int, per_second: str) -> None:
    with smtp_server() as (_, port, recorder):
        seed(url, port, count)
        env = worker_env(url, port, tmp_path, SMTP__MESSAGES_PER_SECOND=per_second)
        names = [f"w{n}" for n in range(workers)]
        running = {name: start(name, env, tmp_path) for name in names}
        store = Store(create_engine(url))
        rng = random.Random(11)
        kills = Counter[str]()
        errors: list[str] = []
        try:
            # Each worker is restarted eight times, SIGTERM and SIGKILL in turn, while mail flows.
            for round_ in range(8):
                for name in names:
                    # Stop it while it sends: once mail flows again after its last restart.
                    flowing = len(recorder.messages) + 10
                    wait_until = time.monotonic() + 60
                    while len(recorder.messages) < flowing and time.monotonic() < wait_until:
                        time.sleep(0.02)
                    time.sleep(rng.uniform(0.0, 0.5))
                    process = running[name]
                    how = signal.SIGKILL if (round_ + names.index(name)) % 2 else signal.SIGTERM
                    process.send_signal(how)
                    _, err = process.communicate(timeout=30)
                    stopped_well = process.returncode == 0 and b"Traceback" not in err
                    if how == signal.SIGTERM and not stopped_well:
                        errors.append(f"exit {process.returncode}: {err.decode()[-2000:]}")
                    kills[how.name] += 1
                    running[name] = start(name, env, tmp_path)
            deadline = time.monotonic() + 180
            while states(store).get("sent", 0) < count and time.monotonic() < deadline:
                if any(p.poll() is not None for p in running.values()):
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # anything extra arrives now
        finally:
            for process in running.values():
                process.send_signal(signal.SIGTERM)
            for process in running.values():
                _, err = process.communicate(timeout=30)
                if process.returncode != 0 or b"Traceback" in err:
                    errors.append(f"exit {process.returncode}: {err.decode()[-2000:]}")
        counts = states(store)
        store.close()
        assert errors == []
        assert counts == {"sent": count}, counts  # none failed, none left behind
        report(recorder, count, kills, workers)


def report(recorder: Recorder, count: int, kills: Counter[str], workers: int) -> None:
    copies: dict[str, list[bytes]] = defaultdict(list)
    for message in recorder.messages:
        copies[message.message["Message-ID"]].append(message.data)
    assert len(copies) == count, f"{count - len(copies)} digests never arrived"
    duplicates = sum(len(c) - 1 for c in copies.values())
    # In flight at a SIGKILL: at most one message per sending lane (smtp.max_connections, its
    # default here; a message's commands sent ahead of it are not a message in flight).
    bound = kills["SIGKILL"] * SmtpSettings.model_fields["max_connections"].default
    print(
        f"\n{workers} worker(s), {count} digests, restarts {dict(kills)}: "
        f"{len(recorder.messages)} messages, {duplicates} duplicates (bound {bound})"
    )
    assert duplicates <= bound
    for sent in copies.values():
        assert all(data == sent[0] for data in sent)  # a resend is the same message


def test_one_worker_on_sqlite_restarted_eight_times_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    restart_run(url, tmp_path, workers=1, count=2000, per_second="150")


@pytest.mark.postgres
def test_two_workers_on_postgresql_restarted_eight_times_each_lose_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    restart_run(postgres_url, tmp_path, workers=2, count=2000, per_second="100")


def test_a_fresh_workers_lanes_render_what_one_thread_renders(tmp_path: Path) -> None:
    """Eight sending lanes of a just-started worker (cold caches) render at once; every
    message is byte for byte what this process renders alone."""
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    with smtp_server() as (_, port, recorder):
        seed(url, port, 120)
        settings = smtp_settings(url, "127.0.0.1", port)
        store = Store.open(settings.database)
        from datetime import UTC, datetime

        assert digests.plan_and_rank(settings, store, datetime.now(UTC)).planned == 120
        renderer = sending.make_renderer(settings)
        links = sending.signed_links(settings)
        expected: dict[str, bytes] = {}
        with store.transaction() as session:
            rows = list(session.scalars(select(Delivery)))
            readers = stored_digests.readers(session, [r.subscriber_id for r in rows])
            chosen = stored_digests.items_of(session, [r.id for r in rows])
            cards = papers.cards_by_ids(session, {i.paper_id for c in chosen.values() for i in c})
            for row in rows:
                items = [(item, cards[item.paper_id]) for item in chosen[row.id]]
                reader = readers[row.subscriber_id]
                data = sending.digest_input(settings, links, reader, stored(row), items)
                rendered = renderer.render(data)
                expected[rendered.message["Message-ID"]] = rendered.raw
        env = worker_env(url, port, tmp_path, SMTP__MAX_CONNECTIONS="8", DELIVERY__BATCH_SIZE="2")
        worker = start("lanes", env, tmp_path, "--once", "--no-plan")
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()[-2000:]
        assert states(store) == {"sent": 120}
        store.close()
    got = {m.message["Message-ID"]: m.data for m in recorder.messages}
    assert len(got) == 120 and got.keys() == expected.keys()
    different = [key for key in expected if got[key] != expected[key]]
    assert different == []
