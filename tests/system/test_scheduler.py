"""`digest serve`: the scheduler's jobs, and a real process that mails what is due."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from common import NO_MODEL

from digest.config import Settings, load_settings
from digest.scheduler import Service, build_scheduler
from digest.store import Store


def test_jobs_follow_the_settings(settings: Settings, store: Store) -> None:
    custom = load_settings(
        environ={
            "DIGEST_DATABASE__URL": settings.database.url,
            "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
            "DIGEST_SCHEDULE__FETCH_CRON": "15 2 * * 1-5",
            "DIGEST_SCHEDULE__TICK_SECONDS": "30",
        }
    )
    scheduler = build_scheduler(Service(custom, store))
    fetch, tick = scheduler.get_job("fetch"), scheduler.get_job("tick")
    assert isinstance(fetch.trigger, CronTrigger) and isinstance(tick.trigger, IntervalTrigger)
    assert tick.trigger.interval.total_seconds() == 30
    # Monday 2026-11-30 02:15 UTC is the first fire time after Friday's.
    first = fetch.trigger.get_next_fire_time(None, datetime(2026, 11, 27, 3, 0, tzinfo=UTC))
    assert first == datetime(2026, 11, 30, 2, 15, tzinfo=UTC)
    assert fetch.max_instances == 1 and tick.max_instances == 1


def test_serve_process_fetches_and_mails_whats_due_then_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DIGEST_SCHEDULE__TICK_SECONDS": "5",
        "DIGEST_SCHEDULE__FETCH_CRON": "* * * * *",
        **NO_MODEL,
    }
    run = [sys.executable, "-m", "digest"]
    subprocess.run([*run, "fetch"], cwd=tmp_path, env=env, check=True, capture_output=True)
    for hour_zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        # One subscriber whose hour has come wherever "now" is (hour 0), one who is never due
        # today in practice: hour 23 in a zone far behind.
        hour = "0" if hour_zone == "Pacific/Kiritimati" else "23"
        done = subprocess.run(
            [*run, "subscribe", f"{hour}@example.org", "--tz", hour_zone, "--hour", hour],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    server = subprocess.Popen(
        [*run, "-v", "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    outbox = tmp_path / "var" / "outbox"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not list(outbox.glob("*0@example.org*.eml")):
        time.sleep(0.5)
    time.sleep(6)  # at least one more tick: it must not send a second digest
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
    stderr = server.stderr.read().decode() if server.stderr else ""
    assert len(list(outbox.glob("*0@example.org*.eml"))) == 1, stderr
    if datetime.now(UTC).hour < 11:  # Etc/GMT+12 is 12 h behind UTC: hour 23 not yet reached
        assert not list(outbox.glob("*23@example.org*.eml"))
    assert "Traceback" not in stderr
    assert server.returncode == 0
