"""Rendering in other processes (``delivery.render_processes``): the same bytes as rendering
in the sending thread, a lost render process costs nothing but time, and the processes end
with their worker even when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_helpers import add_subscribers, fetch_sample, smtp_settings, states
from smtp_server import Recorder, smtp_server
from sqlalchemy import select

from digest import pipeline
from digest.config import Settings
from digest.models import Delivery
from digest.outgoing import Claimed, Digests, RenderPool, make_renderer
from digest.store import Store
from digest.tokens import Links, Tokens

ROOT = Path(__file__).parent.parent


@pytest.fixture
def sink() -> Iterator[tuple[int, Recorder]]:
    with smtp_server() as (_, port, recorder):
        yield port, recorder


def expected_bytes(settings: Settings, store: Store) -> dict[str, bytes]:
    """Each sent delivery's message made in this process, by recipient."""
    digests = Digests(settings, Links(settings, Tokens(settings.web.secret_key)))
    renderer = make_renderer(settings)
    made = {}
    with store.transaction() as session:
        deliveries = list(session.scalars(select(Delivery).where(Delivery.status == "sent")))
        digests.load(session, deliveries)
        for delivery in deliveries:
            data = digests.input(session, delivery)
            made[data.to_address] = renderer.render(data).raw
    return made


def test_pool_sends_what_the_sending_thread_would(settings: Settings, store: Store, sink) -> None:
    port, recorder = sink
    mail = smtp_settings(settings, "127.0.0.1", port, DELIVERY__RENDER_PROCESSES="1")
    now = datetime.now(UTC)
    fetch_sample(mail, store, now)
    add_subscribers(store, 30, now=now, max_papers=5)
    pipeline.plan_and_rank(mail, store, now, for_date=now.date())
    summary = pipeline.send_all(
        mail, store, pipeline.make_renderer(mail), Links(mail, Tokens(mail.web.secret_key))
    )
    assert summary.sent == 30 and states(store) == {"sent": 30}
    expected = expected_bytes(mail, store)
    received = {m.recipients[0]: m.data for m in recorder.messages}
    assert received.keys() == expected.keys()
    for address, data in received.items():
        assert data == expected[address], address


def test_a_lost_render_process_falls_back_and_is_replaced(settings: Settings, store: Store) -> None:
    mail = smtp_settings(settings, "127.0.0.1", 25, DELIVERY__RENDER_PROCESSES="1")
    now = datetime.now(UTC)
    fetch_sample(mail, store, now)
    add_subscribers(store, 3, now=now)
    pipeline.plan_and_rank(mail, store, now, for_date=now.date())
    with store.transaction() as session:
        claimed = [Claimed.of(d) for d in session.scalars(select(Delivery).order_by(Delivery.id))]
    pool = RenderPool(mail)
    try:
        made = [build() for build in pool.submit(claimed, lambda c: b"here").values()]
        assert all(m.startswith(b"From: ") for m in made)
        for process in list(pool._executor._processes.values()):
            process.kill()
            process.join()
        again = [build() for build in pool.submit(claimed, lambda c: b"here").values()]
        assert again == [b"here"] * 3  # made in-process instead
        later = [build() for build in pool.submit(claimed, lambda c: b"here").values()]
        assert later == made  # a fresh pool took over
    finally:
        pool.close()


def test_render_processes_end_when_their_worker_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from digest.config import load_settings
        from digest.outgoing import RenderPool
        settings = load_settings(environ={{
            "DIGEST_DATABASE__URL": "sqlite:///{tmp_path / "d.db"}",
            "DIGEST_DELIVERY__RENDER_PROCESSES": "2",
            "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
        }})
        pool = RenderPool(settings)
        waits = [pool._executor.submit(time.sleep, 0.3) for _ in range(2)]
        [w.result() for w in waits]
        print(" ".join(str(p) for p in pool._executor._processes), flush=True)
        time.sleep(60)
        """
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = worker.stdout.readline() if worker.stdout else ""
        children = [int(p) for p in line.split()]
        assert len(children) >= 1
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in children):
            time.sleep(0.1)
        assert not any(_alive(p) for p in children)
    finally:
        if worker.poll() is None:
            worker.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its (new) parent to reap it has ended too.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
