"""Kill -9 a sender at each point of a send, over many seeded runs, against a real SMTP server
(aiosmtpd on 127.0.0.1) that records every message whose data arrived; then restart it.

Every planned digest must arrive at least once; duplicates only for messages in flight at the
kill (at most one per connection, ``smtp.max_connections``), each a byte-identical copy with
the same Message-ID. The SMTP server itself pulls the trigger, at the chosen moment:

- ``claimed``:   at the k-th EHLO: the sender holds a claimed batch and has sent none of it
                 on this connection;
- ``data``:      on receiving the k-th message's data, before replying;
- ``after-250``: a moment (0–3 ms) after replying 250 to the k-th message, before the
                 sender can commit it;
- ``committed``: at the MAIL FROM after the k-th message, which that lane had committed.

Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import crash_worker
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from delivery_helpers import add_subscribers, fetch_sample, message_ids, smtp_settings, states
from smtp_server import free_port

from digest.app import digests
from digest.config import load_settings
from digest.store import Store

SUBSCRIBERS = 24
LANES = 2  # smtp.max_connections: the in-flight limit
POINTS = ("claimed", "data", "after-250", "committed")
SEEDS = range(32)  # 8 runs per point
ROOT = Path(__file__).parents[2]


@dataclass
class KillingRecorder:
    """aiosmtpd handler: records every message's data, and SIGKILLs ``victim`` once at the
    planned point."""

    point: str | None = None
    k: int = 0
    delay: float = 0.0
    victim: int | None = None
    killed: bool = False
    received: list[tuple[str, bytes]] = field(default_factory=list)
    ehlos: int = 0
    mails: int = 0
    datas: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _kill(self) -> None:
        deadline = time.monotonic() + 5
        while self.victim is None and time.monotonic() < deadline:
            time.sleep(0.001)
        if self.victim is not None and not self.killed:
            self.killed = True
            os.kill(self.victim, signal.SIGKILL)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlos += 1
            hit = self.point == "claimed" and self.ehlos == self.k
        if hit:
            self._kill()
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options
    ) -> str:
        with self.lock:
            self.mails += 1
            hit = self.point == "committed" and self.mails == self.k + 1
        if hit:
            self._kill()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = bytes(envelope.original_content or b"")
        with self.lock:
            self.datas += 1
            self.received.append((envelope.rcpt_tos[0], data))
            hit = self.point in ("data", "after-250") and self.datas == self.k
        if hit and self.point == "data":
            self._kill()
        elif hit:
            asyncio.get_running_loop().call_later(self.delay, self._kill)
        return "250 2.0.0 Ok: queued"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with SUBSCRIBERS digests planned and ranked, copied for each run."""
    folder = tmp_path_factory.mktemp("crash-template")
    url = f"sqlite:///{folder / 'digest.db'}"
    settings = smtp_settings(url, "127.0.0.1", 25)
    store = Store.open(settings.database)
    now = datetime.now(UTC)
    fetch_sample(settings, store, now)
    add_subscribers(store, SUBSCRIBERS, now=now)
    planned = digests.plan_and_rank(settings, store, now, for_date=now.date())
    assert planned.planned == SUBSCRIBERS
    store.close()
    return folder / "digest.db"


@pytest.fixture(scope="module")
def forkserver() -> Iterator[multiprocessing.context.BaseContext]:
    context = multiprocessing.get_context("forkserver")
    # The package, not crash_worker: Python 3.11's fork server does not get the tests folder
    # on its path; the children do, and import the small runner fast.
    context.set_forkserver_preload(["digest.app.digests", "digest.scheduler", "digest.render"])
    yield context


@pytest.fixture
def smtp() -> Iterator[tuple[int, KillingRecorder]]:
    recorder = KillingRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def environ(database: Path, port: int) -> dict[str, str]:
    settings = smtp_settings(
        f"sqlite:///{database}",
        "127.0.0.1",
        port,
        SMTP__MAX_CONNECTIONS=str(LANES),
        SMTP__MESSAGES_PER_CONNECTION="4",
        DELIVERY__BATCH_SIZE="3",
    )
    env = {
        "DIGEST_DATABASE__URL": settings.database.url,
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": settings.mail.from_address,
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__MAX_CONNECTIONS": str(LANES),
        "DIGEST_SMTP__MESSAGES_PER_CONNECTION": "4",
        "DIGEST_DELIVERY__BATCH_SIZE": "3",
        "DIGEST_WEB__BASE_URL": settings.web.base_url,
        "DIGEST_WEB__SECRET_KEY": settings.web.secret_key,
        "DIGEST_PATHS__VAR_DIR": str(database.parent / "var"),
    }
    load_settings(environ=env)  # valid as given
    return env


def check_run(database: Path, recorder: KillingRecorder) -> tuple[int, int]:
    """Every digest arrived; duplicates within the in-flight limit and identical. Returns
    (messages received, duplicates)."""
    store = Store.open(
        load_settings(environ={"DIGEST_DATABASE__URL": f"sqlite:///{database}"}).database
    )
    try:
        assert states(store) == {"sent": SUBSCRIBERS}
        expected = message_ids(store)
    finally:
        store.close()
    by_id: dict[str, list[bytes]] = {}
    for _, data in recorder.received:
        header = data.split(b"\r\n\r\n", 1)[0].decode()
        [line] = [h for h in header.split("\r\n") if h.lower().startswith("message-id:")]
        by_id.setdefault(line.split(":", 1)[1].strip(), []).append(data)
    assert set(by_id) == set(expected.values())  # every planned digest arrived
    duplicates = sum(len(copies) - 1 for copies in by_id.values())
    assert duplicates <= LANES, {k: len(v) for k, v in by_id.items() if len(v) > 1}
    for copies in by_id.values():
        assert all(copy == copies[0] for copy in copies)  # the same mail, byte for byte
    return len(recorder.received), duplicates


TOTALS: Counter[str] = Counter()


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_each_point_loses_nothing_and_duplicates_only_in_flight(
    seed: int, template: Path, forkserver, smtp, tmp_path: Path
) -> None:
    port, recorder = smtp
    rng = random.Random(seed)
    database = tmp_path / "digest.db"
    shutil.copy(template, database)
    env = environ(database, port)
    recorder.point = POINTS[seed % len(POINTS)]
    recorder.k = rng.randint(1, 3) if recorder.point == "claimed" else rng.randint(1, 18)
    recorder.delay = rng.uniform(0, 0.003)

    first = forkserver.Process(target=crash_worker.main, args=(env, "crash-test"))
    first.start()
    recorder.victim = first.pid
    first.join(60)
    assert recorder.killed and first.exitcode == -signal.SIGKILL
    recorder.point = None
    again = forkserver.Process(target=crash_worker.main, args=(env, "crash-test"))
    again.start()
    again.join(60)
    assert again.exitcode == 0

    received, duplicates = check_run(database, recorder)
    point = POINTS[seed % len(POINTS)]
    TOTALS[f"{point}:runs"] += 1
    TOTALS[f"{point}:received"] += received
    TOTALS[f"{point}:duplicates"] += duplicates
    TOTALS[f"{point}:runs_with_duplicates"] += bool(duplicates)
    if seed == SEEDS[-1]:
        print("\ncrash runs: point, runs, digests planned, received, duplicates (runs with any)")
        for name in POINTS:
            runs = TOTALS[f"{name}:runs"]
            print(
                f"  {name:10} {runs:3} {runs * SUBSCRIBERS:5} {TOTALS[f'{name}:received']:5} "
                f"{TOTALS[f'{name}:duplicates']:3} ({TOTALS[f'{name}:runs_with_duplicates']})"
            )


def test_kill_9_of_the_digest_worker_command_during_data(
    template: Path, smtp, tmp_path: Path
) -> None:
    """The same through the real command line: `digest worker --once --name N`."""
    port, recorder = smtp
    database = tmp_path / "digest.db"
    shutil.copy(template, database)
    env = {
        **environ(database, port),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    command = [sys.executable, "-m", "digest", "worker", "--once", "--no-plan", "--name", "cli-1"]
    command += ["--processes", "1"]  # the process the server kills is the one that sends
    recorder.point, recorder.k = "data", 7
    first = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    recorder.victim = first.pid
    first.wait(60)
    assert recorder.killed and first.returncode == -signal.SIGKILL
    recorder.point = None
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "took back" in done.stderr  # the restart recovered its own claims at once
    received, duplicates = check_run(database, recorder)
    assert received == SUBSCRIBERS + duplicates and duplicates <= LANES
