"""The commands a user runs: demo twice, db upgrade and status, papers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cli_support import run_cli

from digest import __version__


def test_demo_twice_gives_the_same_result(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    results = []
    for _ in range(2):
        done = run_cli(tmp_path, "demo")
        assert done.returncode == 0, done.stderr
        assert "fetched the bundled sample: 284 papers" in done.stdout
        assert (
            "planned 3 digest(s)" in done.stdout and "sent 3, deferred 0, failed 0" in done.stdout
        )
        for person in ("ada@example.org", "ben@example.org", "chen@example.org"):
            assert person in done.stdout
        results.append(sorted(p.name.rsplit("_", 1)[0] for p in outbox.glob("*.eml")))
    assert len(results[0]) == 3
    assert results[0] == results[1]  # a fresh cycle, not a second set of mails beside the first
    assert (tmp_path / "var" / "digest.db").is_file()
    bodies = {p.read_bytes() for p in outbox.glob("*.html")}
    assert len(bodies) == 3  # three distinct digests


def test_db_upgrade_then_status(tmp_path: Path) -> None:
    env = {"DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'x.db'}"}
    from digest.store import MIGRATIONS_DIR

    revisions = sorted(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    status = run_cli(tmp_path, "db", "status", **env)
    assert status.returncode == 1 and f"pending: {', '.join(revisions)}" in status.stdout
    upgraded = run_cli(tmp_path, "db", "upgrade", **env)
    assert upgraded.returncode == 0
    assert f"applied {len(revisions)} migration(s): {', '.join(revisions)}" in upgraded.stdout
    again = run_cli(tmp_path, "db", "upgrade", **env)
    assert again.returncode == 0 and "already up to date" in again.stdout
    status = run_cli(tmp_path, "db", "status", **env)
    assert status.returncode == 0 and "pending: none" in status.stdout


def test_commands_refuse_a_schema_that_is_behind_when_told_not_to_migrate(tmp_path: Path) -> None:
    env = {
        "DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'y.db'}",
        "DIGEST_DATABASE__MIGRATE": "0",
    }
    done = run_cli(tmp_path, "papers", **env)
    assert done.returncode == 3
    assert "run `digest db upgrade`" in done.stderr and "Traceback" not in done.stderr


def test_version_and_help(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "--version").stdout.strip() == f"digest {__version__}"
    helped = run_cli(tmp_path, "--help")
    for command in ("fetch", "papers", "db", "demo"):
        assert command in helped.stdout


def test_readme_documents_every_command() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    from digest.cli import app, db_app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    names += [f"db {c.name}" for c in db_app.registered_commands]
    for name in names:
        assert f"`digest {name}" in readme, f"README does not document `digest {name}`"


def test_send_dry_run_shows_who_is_due_and_what_they_would_get_writing_nothing(
    tmp_path: Path,
) -> None:
    env = {"DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'd.db'}"}
    assert run_cli(tmp_path, "fetch", "--source", "sample", **env).returncode == 0
    for address, topic in (("ada@example.org", "diffusion"), ("ben@example.org", "agents")):
        made = run_cli(tmp_path, "subscribe", address, "-i", topic, "--hour", "0", **env)
        assert made.returncode == 0, made.stderr
    today = datetime.now(UTC).date().isoformat()
    dry = run_cli(tmp_path, "send", "--dry-run", "--date", today, **env)
    assert dry.returncode == 0, dry.stderr
    assert "2 due (dry run)" in dry.stdout
    for address in ("ada@example.org", "ben@example.org"):
        [line] = [row for row in dry.stdout.splitlines() if address in row]
        preview = run_cli(tmp_path, "preview", address, "--json", **env)
        picks = [json.loads(row) for row in preview.stdout.splitlines()]
        assert picks, f"{address} would get nothing"
        # The same selection: as many papers, the same one on top.
        assert f" {len(picks)} " in line and picks[0]["title"][:20] in line
    # Nothing was planned: the real send then plans both.
    sent = run_cli(tmp_path, "send", "--date", today, **env)
    assert "planned 2 digest(s)" in sent.stdout and "sent 2" in sent.stdout
    assert "0 due" in run_cli(tmp_path, "send", "--dry-run", "--date", today, **env).stdout


def test_help_and_a_typo_are_answered_before_the_heavy_libraries_load(tmp_path: Path) -> None:
    """`digest --help` and an argument error load Typer and the settings, not the database,
    ranking, rendering or web libraries (their time is measured in benchmarks/cli.py)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from digest.cli import main\n"
        "sys.argv = ['digest', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'numpy', 'scipy', 'jinja2', 'starlette',"
        " 'httpx') if m in sys.modules]\n"
        "print('HEAVY', heavy, code)\n"
    )
    for args in (["--help"], ["subscribe", "not-an-address"], ["rank", "-i", "x" * 400]):
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            timeout=60,
        )
        last = done.stdout.strip().splitlines()[-1]
        assert last.startswith("HEAVY []"), (args, last, done.stderr[-500:])
        if args != ["--help"]:
            assert last.endswith(" 2") and "error:" in done.stderr
