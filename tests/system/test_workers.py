"""Many workers, one database: 2,000 digests by two and four `digest worker` processes on
PostgreSQL (and one on SQLite), none sent twice and none missed; a database that goes away
mid-run; a service that was down across send time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest
from common import IN_CI, NO_MODEL
from delivery_helpers import add_subscribers, fetch_sample, midday_zone, smtp_settings, states
from smtp_server import Recorder, smtp_server
from sqlalchemy import create_engine, text

from digest.config import Settings
from digest.scheduler import Service
from digest.store import Store

ROOT = Path(__file__).parents[2]
DIGESTS = 1000  # 50 claims of 20 each: enough for the workers to race on every one


@pytest.fixture
def sink() -> Iterator[tuple[int, Recorder]]:
    with smtp_server() as (_, port, recorder):
        yield port, recorder


def seed(url: str, count: int, port: int) -> Settings:
    settings = smtp_settings(url, "127.0.0.1", port)
    store = Store.open(settings.database)
    now = datetime.now(UTC)
    fetch_sample(settings, store, now)
    add_subscribers(store, count, zone=midday_zone(now), hour=0, max_papers=1, now=now)
    store.close()
    return settings


def start_workers(
    url: str, port: int, count: int, tmp_path: Path, processes: int = 1, **extra: str
) -> list:
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
        "DIGEST_WEB__BASE_URL": "https://digest.example.org",
        "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
        "DIGEST_DELIVERY__POLL_SECONDS": "0.5",
        **NO_MODEL,
        **{f"DIGEST_{k}": v for k, v in extra.items()},
    }
    # Long-running workers, each planning and ranking too (safe in several processes).
    command = [sys.executable, "-m", "digest", "worker", "--processes", str(processes)]
    return [
        subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]


def finish(workers: list, recorder: Recorder, count: int, timeout: float = 150) -> list[int]:
    """Once ``count`` messages arrived (and a moment for any extra to show), stop the workers
    with SIGTERM; each one's sent count, all having exited cleanly."""
    deadline = time.monotonic() + timeout
    while len(recorder.messages) < count and time.monotonic() < deadline:
        if any(worker.poll() is not None for worker in workers):
            break  # one died: its output says why
        time.sleep(0.1)
    time.sleep(1.0)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    sent = []
    for worker in workers:
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err.decode()[-3000:]
        assert b"Traceback" not in err, err.decode()[-3000:]
        sent.append(int(out.decode().split("sent ")[1].split(",")[0]))
    return sent


def assert_each_once(url: str, recorder: Recorder, count: int) -> None:
    per_address = Counter(r for m in recorder.messages for r in m.recipients)
    assert len(per_address) == count, f"{count - len(per_address)} missed"
    twice = {a: n for a, n in per_address.items() if n > 1}
    assert not twice, f"{len(twice)} sent more than once"
    ids = Counter(m.message.get("Message-ID") for m in recorder.messages)
    assert len(ids) == count and max(ids.values()) == 1
    store = Store(create_engine(url))
    try:
        assert states(store) == {"sent": count}
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [2, 4])
def test_workers_on_postgresql_send_each_digest_once(
    postgres_url: str, sink, tmp_path: Path, workers: int
) -> None:
    port, recorder = sink
    seed(postgres_url, DIGESTS, port)
    started = time.monotonic()
    sent = finish(start_workers(postgres_url, port, workers, tmp_path), recorder, DIGESTS)
    seconds = time.monotonic() - started
    print(f"\n{workers} workers on PostgreSQL: {DIGESTS} digests in {seconds:.1f} s, {sent}")
    assert sum(sent) == DIGESTS
    assert_each_once(postgres_url, recorder, DIGESTS)


def test_one_worker_on_sqlite_sends_each_digest_once(sink, tmp_path: Path) -> None:
    port, recorder = sink
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    seed(url, DIGESTS, port)
    started = time.monotonic()
    [sent] = finish(start_workers(url, port, 1, tmp_path), recorder, DIGESTS)
    print(f"\n1 worker on SQLite: {DIGESTS} digests in {time.monotonic() - started:.1f} s")
    assert sent == DIGESTS
    assert_each_once(url, recorder, DIGESTS)


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_one_worker_command_with_two_processes_sends_each_digest_once(
    kind: str, sink, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`digest worker --processes 2`: two symmetric processes each claim, rank, render and
    send their own batches; the command's total is theirs added up."""
    port, recorder = sink
    url = _database(kind, tmp_path, request)
    seed(url, DIGESTS, port)
    started = time.monotonic()
    [worker] = start_workers(url, port, 1, tmp_path, processes=2)
    deadline = time.monotonic() + 150
    while len(recorder.messages) < DIGESTS and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stderr.read().decode()[-3000:] if worker.stderr else ""
        time.sleep(0.1)
    time.sleep(1.0)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    seconds = time.monotonic() - started
    assert worker.returncode == 0, err.decode()[-3000:]
    assert b"Traceback" not in err, err.decode()[-3000:]
    assert f"sent {DIGESTS}," in out.decode() and "(2 processes)" in out.decode()
    print(f"\n--processes 2 on {kind}: {DIGESTS} digests in {seconds:.1f} s")
    assert_each_once(url, recorder, DIGESTS)
    # Both processes sent: each names itself on the claims it makes (host:pid by default).
    assert "started 2 worker processes" in err.decode()


def _started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _children_of(pid: int) -> list[tuple[int, int | None]]:
    """The children of ``pid``, each with its start time: a pid can be given to a new process
    once the old one is gone (pid_max is 32,768 here, and a parallel suite starts many)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        found.extend((int(c), _started(int(c))) for c in children)
    return found


def _alive(child: tuple[int, int | None]) -> bool:
    pid, started = child
    return started is not None and _started(pid) == started


def _drained(process: subprocess.Popen) -> list[bytes]:
    """Read ``process``'s stdout and stderr as they come, kept for the failure message. Its
    child processes write to the same pipes and outlive it: unread, a full pipe (64 KiB)
    would block their logging, and so their stopping."""
    kept: list[bytes] = []

    def read(stream: IO[bytes]) -> None:
        for line in stream:
            kept.append(line)

    for stream in (process.stdout, process.stderr):
        assert stream is not None
        threading.Thread(target=read, args=(stream,), daemon=True).start()
    return kept


def test_processes_of_a_killed_worker_command_stop_and_nothing_is_lost(
    sink, tmp_path: Path
) -> None:
    """SIGKILL to the parent (a crash; it cannot pass a stop on): its processes notice they
    are orphaned and stop after the messages in flight, recording them; a worker started
    afterwards sends the rest: each digest once, none failed."""
    port, recorder = sink
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    count = 400
    seed(url, count, port)
    [worker] = start_workers(url, port, 1, tmp_path, processes=2, SMTP__MESSAGES_PER_SECOND="40")
    output = _drained(worker)
    deadline = time.monotonic() + 60
    while len(recorder.messages) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _children_of(worker.pid)
    assert len(children) >= 2, children  # the spawned processes (and their helpers)
    worker.kill()
    worker.wait(10)
    # Orphaned, each stops within a few seconds (its parent check runs every second).
    deadline = time.monotonic() + 30
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(c) for c in children), (
        "a worker process outlived its parent; its output:\n"
        + b"".join(output).decode(errors="replace")[-3000:]
    )
    assert len(recorder.messages) < count  # stopped early: the rest is still to send

    [again] = start_workers(url, port, 1, tmp_path, processes=1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        addresses = {r for m in recorder.messages for r in m.recipients}
        if len(addresses) == count:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    again.send_signal(signal.SIGTERM)
    _out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err.decode()[-3000:]
    per_address = Counter(r for m in recorder.messages for r in m.recipients)
    assert len(per_address) == count
    # The orphans stopped as on SIGTERM, recording what they sent: nothing went out twice.
    assert max(per_address.values()) == 1
    store = Store(create_engine(url))
    try:
        assert states(store) == {"sent": count}
    finally:
        store.close()


def test_a_worker_process_whose_parent_died_while_it_started_stops(tmp_path: Path) -> None:
    """A child starting on a busy machine (seconds of imports) when its parent was killed
    once read its new parent's pid as its parent's and never stopped: it takes the pid from
    the parent now. Here the parent named in its spec is already gone as it starts."""
    import multiprocessing

    from digest.config import load_settings
    from digest.logs import LogOptions
    from digest.processes import ChildSpec, _child_main

    gone = subprocess.Popen(["true"])
    gone.wait()
    settings = load_settings(
        environ={
            "DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'digest.db'}",
            "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
            "DIGEST_DELIVERY__POLL_SECONDS": "0.5",
            **NO_MODEL,
        }
    )
    Store.open(settings.database).close()  # the schema, as the parent makes it first
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    spec = ChildSpec(1, None, False, True, LogOptions(), gone.pid)  # runs until stopped
    child = context.Process(target=_child_main, args=(settings, spec, results))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the worker process ran on after its parent was gone"
    index, _summary = results.get(timeout=10)
    assert index == 1 and child.exitcode == 0


def _terminate_backends(base_url: str, application: str, stop: threading.Event) -> int:
    """Kill every connection of the workers, again and again, until ``stop``."""
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    killed = 0
    try:
        with engine.connect() as connection:
            while not stop.wait(0.25):
                killed += len(
                    connection.execute(
                        text(
                            "select pg_terminate_backend(pid) from pg_stat_activity "
                            "where application_name = :name and pid <> pg_backend_pid()"
                        ),
                        {"name": application},
                    ).all()
                )
    finally:
        engine.dispose()
    return killed


@pytest.mark.postgres
def test_workers_ride_out_lost_database_connections(
    postgres_url: str, sink, tmp_path: Path
) -> None:
    """Every connection the workers hold is killed four times a second for three seconds
    (what a PostgreSQL restart does to them, without stopping the server other tests use):
    the run finishes once they may reconnect, nothing lost, nothing twice."""
    port, recorder = sink
    count = 600
    url = f"{postgres_url}&application_name=digest-outage-test"
    seed(url, count, port)
    # 50 a second each: sending takes ~6 s, so the kill window below falls inside it.
    workers = start_workers(url, port, 2, tmp_path, SMTP__MESSAGES_PER_SECOND="50")
    # Start killing once the workers are connected and sending (a loaded machine starts them
    # slowly; killing before they connect would test nothing).
    started = time.monotonic()
    while not recorder.messages and time.monotonic() - started < 90:
        time.sleep(0.05)
    stop = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(
        target=lambda: killed.append(
            _terminate_backends(os.environ["TEST_POSTGRES_URL"], "digest-outage-test", stop)
        )
    )
    killer.start()
    time.sleep(3)
    stop.set()
    killer.join()
    sent = finish(workers, recorder, count)
    print(f"\nconnections killed: {killed[0]}; sent {sent}")
    assert killed[0] > 0
    assert_each_once(url, recorder, count)


ALLOW_RESTART = IN_CI or os.environ.get("DIGEST_TEST_ALLOW_PG_RESTART") == "1"


def _restart_postgresql() -> None:
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def restartable_postgres_url() -> Iterator[str]:
    """Like conftest's ``postgres_url``, with an engine that survives the server's restart
    (pre-ping) to drop the schema afterwards."""
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        if IN_CI:
            pytest.fail("CI=true but TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured (set TEST_POSTGRES_URL)")
    engine = create_engine(base, pool_pre_ping=True)
    schema = f"t_restart_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    yield f"{base}?options=-csearch_path%3D{schema}"
    for _ in range(60):  # the server may still be starting
        try:
            with engine.begin() as connection:
                connection.execute(text(f'drop schema "{schema}" cascade'))
            break
        except Exception:
            time.sleep(0.5)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(
    not ALLOW_RESTART,
    reason="restarts the machine's PostgreSQL: set DIGEST_TEST_ALLOW_PG_RESTART=1 (or CI=true)",
)
@pytest.mark.serial
def test_postgresql_restarted_mid_run(restartable_postgres_url: str, sink, tmp_path: Path) -> None:
    port, recorder = sink
    count = 1000
    postgres_url = restartable_postgres_url
    seed(postgres_url, count, port)
    workers = start_workers(postgres_url, port, 2, tmp_path, SMTP__MESSAGES_PER_SECOND="300")
    deadline = time.monotonic() + 30
    while len(recorder.messages) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(recorder.messages) < count, "finished before the restart; slow the workers down"
    _restart_postgresql()
    sent = finish(workers, recorder, count)
    print(f"\nPostgreSQL restarted after {100}+ messages; sent {sent}")
    assert_each_once(postgres_url, recorder, count)


def test_down_across_send_time_for_two_hours_then_one_digest_each(
    settings: Settings, store: Store, sink
) -> None:
    """Readers in Berlin get their digest at 07:00 (05:00 UTC). The service ticks at 04:00
    UTC, is down from 04:30 to 06:30, and comes back as two processes ticking at once."""
    port, recorder = sink
    mail = smtp_settings(settings, "127.0.0.1", port)
    day = datetime(2026, 9, 24, tzinfo=UTC)
    fetch_sample(mail, store, day + timedelta(hours=3))
    add_subscribers(store, 40, zone="Europe/Berlin", hour=7, now=day)
    clock = [day + timedelta(hours=4)]
    first = Service(mail, store, clock=lambda: clock[0], owner="before")
    first.tick()
    assert recorder.messages == []  # 06:00 in Berlin: not yet
    clock[0] = day + timedelta(hours=6, minutes=30)  # back after two hours down
    services = [Service(mail, store, clock=lambda: clock[0], owner=f"after-{n}") for n in (1, 2)]
    threads = [threading.Thread(target=service.tick) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for minutes in (31, 45, 90):
        clock[0] = day + timedelta(hours=6, minutes=minutes)
        services[0].tick()
    per_address = Counter(r for m in recorder.messages for r in m.recipients)
    assert len(per_address) == 40 and set(per_address.values()) == {1}
    assert states(store) == {"sent": 40}
