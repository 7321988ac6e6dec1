"""Logs: one line per event, JSON when configured, never an address or a token in clear;
progress bars on a terminal only."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_support import run_cli
from delivery_helpers import add_subscribers, smtp_settings
from rich.console import Console
from scripted_smtp import Script, scripted_smtp
from typer.testing import CliRunner

from digest import cli, logs
from digest.app import fetching
from digest.cli import common
from digest.config import LoggingSettings, Settings
from digest.domain.tokens import Tokens
from digest.store import Store

TOKEN = Tokens("a-secret-of-some-length").make("manage", "0123456789abcdef0123456789abcdef", 3)
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def configured(**settings: str) -> io.StringIO:
    stream = io.StringIO()
    logs.setup(LoggingSettings(**settings), stream=stream)
    return stream


def events() -> None:
    log = logging.getLogger("digest.test")
    log.info("mail to ada.lovelace@example.org queued", extra={"delivery": 7})
    log.warning("manage link https://digest.example.org/manage/%s opened", TOKEN)
    try:
        raise RuntimeError("550 5.1.1 <ben@lab.example.ac.uk>: Recipient address rejected")
    except RuntimeError:
        log.exception("delivery %d to %s failed", 7, "ben@lab.example.ac.uk")
    log.info("Authorization: Bearer s3cr3t-t0ken and password=hunter2")


def test_json_lines_parse_and_name_no_one() -> None:
    stream = configured(format="json")
    events()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # one line per event, the traceback included
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["info", "warning", "error", "info"]
    assert {r["logger"] for r in records} == {"digest.test"}
    assert all(r["ts"].endswith("+00:00") and isinstance(r["pid"], int) for r in records)
    assert records[0]["msg"] == "mail to a…@example.org queued"
    assert records[0]["delivery"] == 7  # extra= fields become keys
    assert records[1]["msg"] == "manage link https://digest.example.org/manage/[token] opened"
    assert records[2]["msg"] == "delivery 7 to b…@lab.example.ac.uk failed"
    assert "Traceback" in records[2]["exc"] and "RuntimeError: 550 5.1.1" in records[2]["exc"]
    assert records[3]["msg"] == "Authorization: Bearer [redacted] and password=[redacted]"
    text = stream.getvalue()
    for secret in ("ada.lovelace@", "ben@", TOKEN, "s3cr3t", "hunter2"):
        assert secret not in text


def test_text_lines_are_one_per_event_and_masked() -> None:
    stream = configured(format="text")
    events()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert all(TEXT_LINE.match(line) for line in lines)
    assert lines[0].endswith("INFO digest.test: mail to a…@example.org queued")
    assert "| Traceback (most recent call last):\\n" in lines[2]
    assert "b…@lab.example.ac.uk" in lines[2] and "ben@" not in lines[2]
    assert TOKEN not in stream.getvalue()


def test_our_message_ids_are_not_mistaken_for_addresses() -> None:
    message_id = "<digest.0123456789abcdef0123456789abcdef@digest.example.org>"
    assert logs.redact(f"resent {message_id}") == f"resent {message_id}"
    assert logs.redact("to carol@example.org") == "to c…@example.org"


def test_levels_and_chatty_libraries() -> None:
    stream = configured(format="text", level="WARNING")  # any case, as from the environment
    logging.getLogger("digest.test").info("hidden")
    logging.getLogger("digest.test").warning("shown")
    assert [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["shown"]
    stream = configured(format="text")
    logging.getLogger("httpx").info("HTTP Request: GET https://huggingface.co/api/daily_papers")
    logging.getLogger("apscheduler.executors.default").info("Running job tick")
    assert stream.getvalue() == ""  # at info, the libraries say only what is wrong
    verbose = io.StringIO()
    logs.setup(LoggingSettings(), verbose=True, format="text", stream=verbose)
    logging.getLogger("httpx").debug("HTTP Request: GET https://huggingface.co/")
    assert "DEBUG httpx: HTTP Request" in verbose.getvalue()


def test_auto_is_rich_on_a_terminal_and_text_elsewhere(monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert logs.resolve_format("auto", io.StringIO()) == "text"
    assert logs.resolve_format("auto", Tty()) == "rich"
    assert logs.resolve_format("json", Tty()) == "json"
    terminal = Tty()
    logs.setup(LoggingSettings(), stream=terminal)
    logging.getLogger("digest.test").warning("to dora@example.org")
    assert "d…@example.org" in terminal.getvalue() and "dora@" not in terminal.getvalue()


def test_a_real_send_logs_json_without_addresses(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    # The mail server quotes the address in its refusal, as Postfix does.
    script = Script(rcpt=lambda address, count: f"550 5.1.1 <{address}>: Recipient unknown")
    with scripted_smtp(script) as server:
        mail = smtp_settings(settings, server.host, server.port)
        assert fetching.fetch(mail, store, ["sample"])[0].status == "ok"
        people = add_subscribers(store, 2)
        env = {
            "DIGEST_DATABASE__URL": mail.database.url,
            "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
            "DIGEST_MAIL__TRANSPORT": "smtp",
            "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
            "DIGEST_SMTP__HOST": server.host,
            "DIGEST_SMTP__PORT": str(server.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
            "DIGEST_LOGGING__FORMAT": "json",
        }
        done = run_cli(tmp_path, "send", "--date", datetime.now(UTC).date().isoformat(), **env)
    assert done.returncode == 1  # a mail failed
    assert "failed 2" in done.stdout
    records = [json.loads(line) for line in done.stderr.splitlines()]
    refusals = [r for r in records if r["logger"] == "digest.delivery.sender"]
    assert len(refusals) == 2 and all(r["level"] == "warning" for r in refusals)
    assert all("…@example.org" in r["msg"] and "550 5.1.1" in r["msg"] for r in refusals)
    for address in people:
        assert address not in done.stderr


def test_log_format_and_level_options(tmp_path: Path) -> None:
    env = {"DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = run_cli(tmp_path, "--log-format", "json", "--log-level", "info", "db", "upgrade", **env)
    assert done.returncode == 0
    [record] = [json.loads(line) for line in done.stderr.splitlines()]
    assert record["logger"] == "digest.store" and record["msg"].startswith("applied migrations")
    wrong = run_cli(tmp_path, "db", "upgrade", DIGEST_LOGGING__FORMAT="xml", **env)
    assert wrong.returncode == 2 and "logging.format" in wrong.stderr


def test_one_off_commands_log_problems_only_and_services_everything(tmp_path: Path) -> None:
    assert logs.resolve_level("auto", service=True) == "info"
    assert logs.resolve_level("auto", service=False) == "warning"
    assert logs.resolve_level("debug", service=False) == "debug"

    def fresh(name: str) -> dict[str, str]:
        return {"DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / name}"}

    # A one-off command: its own output says what it did; stderr stays for problems.
    quiet = run_cli(tmp_path, "db", "upgrade", **fresh("a.db"))
    assert quiet.returncode == 0 and quiet.stderr == "" and "applied" in quiet.stdout
    # A service logs every event, one line each: here migrating its fresh database.
    worker = run_cli(tmp_path, "worker", "--once", "--processes", "1", **fresh("b.db"))
    assert worker.returncode == 0, worker.stderr
    lines = worker.stderr.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines)
    assert any(" INFO digest.store: applied migrations" in line for line in lines)
    # A level set explicitly holds for any command (any case, as from the environment).
    told = run_cli(tmp_path, "db", "upgrade", DIGEST_LOGGING__LEVEL="INFO", **fresh("c.db"))
    assert " INFO digest.store: applied migrations" in told.stderr


def test_no_progress_output_when_not_a_terminal(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "demo")
    assert done.returncode == 0, done.stderr
    # stderr holds log lines and nothing else: no bars, no spinners, no cursor codes.
    assert all(TEXT_LINE.match(line) for line in done.stderr.splitlines()), done.stderr
    for mark in ("━", "\x1b[", "left", "sending", "fetching"):
        assert mark not in done.stderr
    assert "\x1b[" not in done.stdout


def test_progress_on_a_terminal_shows_counts_and_time(monkeypatch, tmp_path: Path) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(common, "err_console", terminal)
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli.app, ["--log-level", "warning", "demo"], env={})
    assert done.exit_code == 0, done.output
    shown = screen.getvalue()
    assert "fetched: 284 new papers" in shown and "1/1" in shown
    assert "planned 3" in shown
    assert "sending" in shown and "3/3" in shown  # counted from the outbox as mails go
    assert "left" in shown and "0:00:0" in shown  # elapsed and time left
