"""The benchmark harness end to end on a tiny workload: 50 subscribers, 100 papers, the real
worker process, Postfix's smtp-sink, and the harness's own checks (each digest received
exactly once, sampled messages parsed strictly and showing the papers chosen). Skipped when
smtp-sink is not installed (`make bench` installs it), except under CI=true (.ci/run does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
if str(ROOT) not in sys.path:  # the benchmarks/ package sits beside tests/
    sys.path.insert(0, str(ROOT))

from benchmarks.sink import find_tools  # noqa: E402


def test_benchmark_runs_and_checks_itself(tmp_path: Path) -> None:
    if find_tools() is None:
        missing = "smtp-sink/smtp-source not installed (Debian package postfix)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; .ci/run installs it under CI=true")
        pytest.skip(missing)
    out = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--subscribers",
            "50",
            "--papers",
            "100",
            "--sample",
            "10",
            "--no-install",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = json.loads(out.read_text())["runs"]
    assert run["checked_exactly_once"] is True
    assert run["sent"] + run["skipped"] == run["planned"] == 50
    assert run["received"] == run["sent"] and run["sampled"] == 10
    assert run["ceiling"]["per_second"] > 0
    # Where the machine's time went: the sink's CPU and the share no process used.
    assert isinstance(run["sink_cpu_seconds"], float)
    assert 0 <= run["machine_idle_share"] <= 1
    assert "| 50 | 100 | sqlite |" in done.stdout


def test_ranking_alone_gives_the_same_result_in_every_process(tmp_path: Path) -> None:
    """`--rank-only` once returned a different item count each run: the workload's vocabulary
    followed each process's string-hash order. Two processes with different hash seeds (and
    the ranking's two threads) must now agree on every pick and score."""
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from benchmarks.run import rank_only;"
        "r = rank_only(400, 300, 7); print(json.dumps([r['items'], r['checksum']]))"
    )
    answers = set()
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": seed, "HOME": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
        answers.add(done.stdout.strip())
    assert len(answers) == 1, answers
    items = json.loads(answers.pop())[0]
    assert items > 400  # most of the 400 readers got picks: the run ranked something


def test_claims_alone_take_every_ranked_digest_once() -> None:
    """`--claims-only` claims a ranked day until nothing is ready: every planned digest once,
    in batches of delivery.batch_size, with the CPU each claim took."""
    result = _one_process_run("--claims-only", "--subscribers", "60")
    assert result["claimed"] == 60 and result["database"] == "sqlite"
    assert result["claims"] == -(-60 // result["batch"])
    assert result["cpu_ms_per_claim_median"] > 0


def test_stages_alone_build_and_record_every_digest_once() -> None:
    """`--stages-only` takes a ranked day through the sender's own queue in one thread:
    every planned digest claimed, built and recorded once, with the CPU of each stage."""
    result = _one_process_run("--stages-only", "--subscribers", "40")
    assert result["digests"] == 40 and result["database"] == "sqlite"
    stages = result["cpu_us_per_digest"]
    assert set(stages) == {"plan_and_rank", "claim", "build", "record"}
    assert all(value > 0 for value in stages.values())
    assert result["message_bytes_mean"] > 10_000  # whole digests were built, not stubs


def _one_process_run(*options: str) -> dict[str, Any]:
    """`python -m benchmarks.run OPTIONS`, which must succeed; the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_check_takes_papers_moved_behind_the_browser_link_as_moved() -> None:
    """A digest too large for Gmail's clip names its last papers as moved behind the
    browser link (2 of 10,000 in `make bench-quick`: readers who chose 18 papers). The
    harness's message check once took them for missing papers and failed the run; it must
    accept them as moved, and still fail a paper that is truly missing or out of order."""
    from dataclasses import replace

    from benchmarks.run import CheckFailed, _check_message
    from digest.config import MailSettings
    from digest.domain.items import PaperCard, RankedItem, Reason
    from digest.render import DigestInput, Renderer

    words = "sparse attention for long context reasoning with learned memory tokens "
    cards = [
        PaperCard(
            paper_id=n + 1,
            canonical_id=f"2601.{10000 + n}",
            arxiv_id=f"2601.{10000 + n}",
            title=f"Paper number {n}: {words[: 20 + n]}".strip(),
            abstract=(words * 80)[:5000],
            authors=tuple(f"Author{k} Surname{n}" for k in range(50)),
        )
        for n in range(50)
    ]
    why = (Reason("term", "attention"),)
    picks = [(RankedItem(c.paper_id, 1.0, 1.0, why, "picks", ("attention",)), c) for c in cards]
    to, mid = "ada@example.com", "<d.0001@papers.example.org>"
    data = DigestInput(
        to_address=to,
        local_date=datetime(2026, 8, 13).date(),
        items=picks,
        profile_summary="attention",
        message_id=mid,
        date_header=datetime(2026, 8, 13, 7, 0, tzinfo=UTC),
        manage_url="https://papers.example.org/manage/x",
        unsubscribe_url="https://papers.example.org/unsubscribe/x",
        archive_url="https://papers.example.org/archive/x",
    )
    renderer = Renderer(MailSettings(abstract_chars=5000, authors_shown=50))
    out = renderer.render(data)
    assert 0 < out.moved < len(picks)
    rows = [(n + 1, c.title, c.arxiv_id) for n, c in enumerate(cards)]
    raw = out.raw
    assert _check_message(raw, mid, to, rows) > 0

    # A shown paper that the database lists but the mail lacks is still caught ...
    missing = [*rows[:3], (0, "A paper the mail does not show", "2601.99999"), *rows[3:]]
    with pytest.raises(CheckFailed, match="A paper the mail does not show"):
        _check_message(raw, mid, to, missing)
    # ... as is a mail that names more papers moved than the database holds.
    with pytest.raises(CheckFailed, match="moved out of the mail"):
        _check_message(raw, mid, to, rows[: out.moved])
    # And a usual digest (nothing moved) is checked paper by paper as before.
    small = renderer.render(replace(data, items=picks[:5]))
    assert small.moved == 0
    assert _check_message(small.raw, mid, to, rows[:5]) > 0
    with pytest.raises(CheckFailed, match="missing or out of order"):
        _check_message(small.raw, mid, to, [rows[1], rows[0], *rows[2:5]])


def test_cpu_readers_read_this_process_and_the_machine() -> None:
    """The sink's CPU and the machine's idle share come from /proc: this process's CPU grows
    with work done, a process that does not exist reads 0, and the machine's idle time is
    part of its total."""
    from benchmarks.run import _cpu_seconds, _machine_times

    before = _cpu_seconds(os.getpid())
    idle, total = _machine_times()
    sum(i * i for i in range(3_000_000))  # about 0.1 s of CPU
    assert _cpu_seconds(os.getpid()) > before
    assert _cpu_seconds(2**22 + 12345) == 0.0  # above the kernel's largest process id
    idle_after, total_after = _machine_times()
    assert 0 <= idle <= total and total_after > total and idle_after >= idle


def test_workers_writing_much_to_stderr_do_not_stop_each_other(tmp_path: Path) -> None:
    """A worker's log lines once went into a pipe that was read only after the worker before
    it had exited: past 64 KB the second worker stopped until then. Here the first process
    waits for the second to have written 300 KB to stderr (it gives up after 20 s and fails);
    with pipes the second would stop at 64 KB and never get there."""
    import contextlib

    from benchmarks.run import start_workers

    done = tmp_path / "second-done"
    first = (
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(done)!r})\n"
        "deadline = time.monotonic() + 20\n"
        "while not marker.exists():\n"
        "    if time.monotonic() > deadline:\n"
        "        sys.exit('the second process never finished writing')\n"
        "    time.sleep(0.02)\n"
        "print('first done')\n"
    )
    second = (
        "import pathlib, sys\n"
        "for n in range(3000):\n"
        "    print('log line %05d ' % n + 'x' * 90, file=sys.stderr)\n"
        f"pathlib.Path({str(done)!r}).touch()\n"
        "print('second done')\n"
    )
    commands = [[sys.executable, "-c", first], [sys.executable, "-c", second]]
    with contextlib.ExitStack() as files:
        processes, logs = start_workers(commands, tmp_path, dict(os.environ), files)
        codes = [process.wait(timeout=60) for process in processes]
    assert codes == [0, 0], logs[0][1].read_text()
    assert logs[0][0].read_text() == "first done\n"
    assert logs[1][0].read_text() == "second done\n"
    assert len(logs[1][1].read_bytes()) > 300_000
