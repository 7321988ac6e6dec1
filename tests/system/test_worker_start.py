"""How a worker process opens the database its parent already checked: it connects without
looking at migrations (alembic is a quarter of a second to import, in every process), and it
still waits for a database that is not there yet instead of exiting."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from common import NO_MODEL
from sqlalchemy.engine import make_url

from digest.config import Settings, load_settings
from digest.errors import StoreError
from digest.processes import open_store_patiently
from digest.store import Store

ROOT = Path(__file__).parents[2]


def _settings(database: Path, tmp_path: Path) -> Settings:
    return _settings_at(f"sqlite:///{database}", tmp_path)


def test_a_worker_process_opens_its_checked_database_without_alembic(tmp_path: Path) -> None:
    database = tmp_path / "digest.db"
    Store.open(_settings(database, tmp_path).database).close()  # the parent's check
    script = f"""
import sys, threading
from digest.config import load_settings
from digest.processes import open_store_patiently
import digest.scheduler  # what a worker process imports to run
settings = load_settings(environ={{"DIGEST_DATABASE__URL": "sqlite:///{database}"}})
store = open_store_patiently(settings, threading.Event(), schema_checked=True)
from sqlalchemy import text
with store.transaction() as session:
    print(session.execute(text("select count(*) from subscribers")).scalar())
print(sorted(name for name in sys.modules if name.split(".")[0] == "alembic"))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0", "[]"]


def _forward_later(port: int, to: tuple[str, int], after: float, stop: threading.Event) -> None:
    """After ``after`` seconds, listen on ``port`` and pipe each connection to ``to``: a
    database server that comes up late (the real one behind it)."""
    time.sleep(after)
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(to)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings_at(url: str, tmp_path: Path) -> Settings:
    return load_settings(
        environ={
            "DIGEST_DATABASE__URL": url,
            "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
            **NO_MODEL,
        }
    )


@pytest.mark.postgres
def test_a_worker_process_waits_for_a_database_that_comes_later(
    postgres_url: str, tmp_path: Path
) -> None:
    Store.open(_settings_at(postgres_url, tmp_path).database).close()  # the parent's check
    real = make_url(postgres_url)
    port = _free_port()
    late = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    stop = threading.Event()
    server = threading.Thread(
        target=_forward_later,
        args=(port, (real.host or "127.0.0.1", real.port or 5432), 2.0, stop),
        daemon=True,
    )
    server.start()
    started = time.monotonic()
    try:
        store = open_store_patiently(
            _settings_at(late, tmp_path), threading.Event(), 30.0, schema_checked=True
        )
        try:
            assert time.monotonic() - started >= 1.9  # it waited instead of failing at once
            assert store.pending_migrations() == []  # and has the parent's database
        finally:
            store.close()
    finally:
        stop.set()
        server.join(10)


def test_a_worker_process_gives_up_on_a_database_that_never_comes(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/test"  # nothing listens
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"(?i)connection refused"):
        open_store_patiently(
            _settings_at(url, tmp_path), threading.Event(), 1.0, schema_checked=True
        )
    assert 1.0 <= time.monotonic() - started < 10
