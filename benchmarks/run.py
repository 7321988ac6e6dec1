"""The end-to-end benchmark: plan, rank, render and send N digests to a local SMTP sink with
the product's own code, check that every one arrived exactly once, and report.

    python -m benchmarks.run                                  # 10,000 x 1,000, SQLite, 1 worker
    python -m benchmarks.run --subscribers 100000 --papers 1000
    python -m benchmarks.run --database postgresql+psycopg://postgres@127.0.0.1/test --workers 2
    python -m benchmarks.run --suite                          # everything docs/benchmarks.md shows

Each run: a fresh database (a SQLite file in a temporary folder, or a fresh schema in the
PostgreSQL database named), papers and subscribers from ``benchmarks.workload``, Postfix's
``smtp-sink`` on 127.0.0.1 (found, or installed with apt-get), then ``--workers`` processes
each running ``digest.scheduler.run_worker`` (what `digest worker --once` runs) with mail
over SMTP to the sink. The clock runs from starting the workers until the last one exits.

Checks (a failed check fails the run, exit status 1): every delivery is ``sent`` or
``skipped`` (nothing matched and the subscriber wants no empty mail); the sink holds exactly
one message per sent delivery, with that delivery's Message-ID, to that subscriber; sampled
messages parse under ``email.policy.strict``, carry each header once, have inline-styled
highlights and the phone and dark-mode ``@media`` rules, and show the papers the ranking
chose (titles in the text part in rank order, arXiv links in the HTML part).

Reported: digests per second end to end; per stage (plan, rank, render, send) the seconds
spent and the rate; peak memory (the sum of the resident sizes of the worker processes and
their children, sampled every 50 ms, and each worker's own peak); message and HTML sizes; and
the SMTP ceiling of the same run (``smtp-source`` into the same kind of sink with the same
message size and session count) with the ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from benchmarks import sink as sinks
from benchmarks import workload
from digest.app.sending import make_renderer
from digest.config import Settings, load_settings
from digest.domain.items import message_id
from digest.models import Delivery, DeliveryItem, Paper, Subscriber
from digest.store import Store

ROOT = Path(__file__).resolve().parent.parent
FROM = "papers@digest.example.org"
PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


class CheckFailed(Exception):
    pass


# -- the database ---------------------------------------------------------------------------


@dataclass
class Database:
    url: str
    drop: Any = None  # a callable that removes it

    def close(self) -> None:
        if self.drop:
            self.drop()


def fresh_database(spec: str | None, folder: Path) -> Database:
    """A SQLite file in ``folder`` (``spec`` None or a path), or a fresh schema in the
    PostgreSQL database ``spec`` names."""
    if spec is None or not spec.startswith("postgresql"):
        path = Path(spec) if spec else folder / "bench.db"
        if path.exists():
            raise SystemExit(f"{path} exists; the benchmark wants a fresh database")
        return Database(f"sqlite:///{path}")
    engine = create_engine(spec)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with engine.begin() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    separator = "&" if "?" in spec else "?"

    def drop() -> None:
        with engine.begin() as connection:
            connection.execute(text(f'drop schema "{schema}" cascade'))
        engine.dispose()

    return Database(f"{spec}{separator}options=-csearch_path%3D{schema}", drop)


def environment(
    url: str,
    port: int,
    folder: Path,
    connections: int | None,
    semantic: bool = False,
) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "PYTHONPATH": str(ROOT),
        "DIGEST_DATABASE__URL": url,
        "DIGEST_PATHS__VAR_DIR": str(folder / "var"),
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": FROM,
        "DIGEST_SMTP__HOST": "127.0.0.1",
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_WEB__BASE_URL": "https://digest.example.org",
        "DIGEST_WEB__SECRET_KEY": "benchmark-secret-key-0123456789",
    }
    if connections:
        env["DIGEST_SMTP__MAX_CONNECTIONS"] = str(connections)
    if not semantic:
        # Keyword ranking, what the base install has: semantic matching needs the optional
        # [semantic] extra and a model (see docs/benchmarks.md for what it costs).
        env["DIGEST_RANKING__SEMANTIC"] = "false"
    return env


# -- memory -----------------------------------------------------------------------------------


def _children(pids: set[int]) -> set[int]:
    """``pids`` and all their descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _cpu_seconds(pid: int) -> float:
    """The CPU a process has used (user + system), from /proc; 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # The fields after the command's closing parenthesis (which may hold spaces).
            fields = handle.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_times() -> tuple[float, float]:
    """The machine's idle and total CPU time so far (all cores, /proc/stat's first line; idle
    includes waiting for I/O); (0, 0) if it cannot be read."""
    try:
        with open("/proc/stat", "rb") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    return (values[3] + values[4]) / _TICKS, sum(values[:8]) / _TICKS


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class MemorySampler:
    pids: set[int]
    interval: float = 0.05
    peak: int = 0
    peak_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = 0
        tree = set(self.pids)
        while not self._stop.is_set():
            if tick % 10 == 0:
                tree = _children(self.pids)
            total = sum(_rss(pid) for pid in tree)
            if total > self.peak:
                self.peak, self.peak_processes = total, len(tree)
            tick += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Options:
    subscribers: int = 10_000
    papers: int = 1_000
    workers: int = 1
    connections: int | None = None  # smtp.max_connections per worker; None: the setting's default
    semantic: bool = False  # ranking.semantic as configured (on with the extra) or off
    database: str | None = None
    sample: int = 40
    seed: int = 7
    ceiling_count: int = 20_000
    # The ceiling's sessions: None for the run's own (workers x connections); the quick run
    # uses 16 and measures it before the workers start as well as after (the lower counts).
    ceiling_sessions: int | None = None
    ceiling_before: bool = False
    keep: bool = False
    py_spy: str | None = None  # record worker 0 with py-spy into this file
    tools: dict[str, str] = field(default_factory=dict)
    quiet: bool = False


# The median message of 10,000 x 1,000 (75,465 B since every card's links carry the paper's
# title and every footer the reader's feed; 63,857 B before): the ceiling before a run is
# measured at it, so that it is comparable with the one after, at the run's own median.
_TYPICAL_SIZE = 75_465
HTML_LIMIT = 102 * 1024  # Gmail clips an HTML part over 102 KB


def say(options: Options, message: str) -> None:
    if not options.quiet:
        print(message, file=sys.stderr, flush=True)


def run(options: Options) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    folder.chmod(0o755)  # the sink writes below it as "nobody"
    database = fresh_database(options.database, folder)
    sink: sinks.Sink | None = None
    root = sinks.dump_root(options.subscribers * 100_000)
    dump = Path(tempfile.mkdtemp(prefix="digest-bench-sink-", dir=root))
    dump.chmod(0o755)
    try:
        now = datetime.now(UTC)
        clock = time.monotonic()
        settings = load_settings(environ={"DIGEST_DATABASE__URL": database.url})
        store = Store.open(settings.database)
        papers = workload.make_papers(options.papers, options.seed)
        workload.store_papers(store, papers, now - timedelta(hours=1))
        workload.add_subscribers(store, options.subscribers, papers, now, options.seed + 1)
        store.close()
        seed_seconds = time.monotonic() - clock
        say(options, f"seeded {options.subscribers} x {options.papers} in {seed_seconds:.1f} s")

        sink = sinks.start_sink(options.tools, dump / "sink")
        env = environment(
            database.url,
            sink.port,
            folder,
            options.connections,
            options.semantic,
        )
        connections = options.connections or load_settings(environ=env).smtp.max_connections
        # The templates inlined in var/cache as any earlier start of the service left them
        # (a worker inlines them only the first time a template version is used).
        make_renderer(load_settings(environ=env))
        before: float | None = None
        if options.ceiling_before:
            # The size is not known yet: the median of earlier runs of this workload (75,465 B
            # on 10,000 x 1,000); the run after uses the run's own median.
            sessions = options.ceiling_sessions or options.workers * connections
            say(options, f"measuring the SMTP ceiling before: {sessions} sessions")
            before = sinks.ceiling(
                options.tools, sessions=sessions, size=_TYPICAL_SIZE, count=options.ceiling_count
            )
        commands = []
        for n in range(options.workers):
            command = [sys.executable, "-m", "benchmarks.worker", f"bench-{n}"]
            if n == 0 and options.py_spy:
                command = [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--subprocesses",
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    *(["--gil"] if os.environ.get("BENCH_PY_SPY_GIL") else []),
                    *(["--idle"] if os.environ.get("BENCH_PY_SPY_IDLE") else []),
                    "-o",
                    options.py_spy,
                    "--",
                    *command,
                ]
            commands.append(command)
        sink_cpu_before, (idle_before, total_before) = _cpu_seconds(sink.pid), _machine_times()
        started = time.monotonic()
        with contextlib.ExitStack() as files:
            processes, logs = start_workers(commands, folder, env, files)
            memory = MemorySampler({p.pid for p in processes})
            memory.start()
            for process in processes:
                process.wait()
            seconds = time.monotonic() - started
            memory.stop()
        outputs = [(out_path.read_bytes(), err_path.read_bytes()) for out_path, err_path in logs]
        reports = []
        for process, (out, err) in zip(processes, outputs, strict=True):
            if process.returncode != 0:
                raise CheckFailed(f"a worker failed ({process.returncode}): {err.decode()[-3000:]}")
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            reports.append(json.loads(lines[-1]))
        sink_rss = _rss(sink.pid)
        # Where the machine's time went while the workers ran: the sink's share, and what no
        # process used (the rest is the workers, the kernel's loopback, anything else).
        sink_cpu = _cpu_seconds(sink.pid) - sink_cpu_before
        idle_after, total_after = _machine_times()
        machine_total = total_after - total_before
        idle_share = (idle_after - idle_before) / machine_total if machine_total > 0 else 0.0
        sink.stop()
        say(options, f"workers done in {seconds:.1f} s; checking")

        result = check(database.url, dump / "sink", options)
        sent = result["sent"]
        sizes = result.pop("_sizes")
        median_size = int(statistics.median(sizes)) if sizes else 0
        sessions = options.ceiling_sessions or options.workers * connections
        ceiling_count = max(min(options.ceiling_count, sent), 2000)
        say(options, f"measuring the SMTP ceiling: {ceiling_count} x {median_size} B, {sessions} s")
        after = sinks.ceiling(
            options.tools, sessions=sessions, size=median_size, count=ceiling_count
        )
        ceiling = after if before is None else min(before, after)
        bare = sinks.ceiling(
            options.tools, sessions=sessions, size=median_size, count=ceiling_count, dump=False
        )
        rate = sent / seconds

        def stage(name: str, count: float) -> dict[str, float]:
            spent = sum(r.get(f"{name}_seconds", 0.0) for r in reports)
            return {"seconds": round(spent, 2), "per_second": round(count / spent) if spent else 0}

        planned = sum(r.get("plan_count", 0) for r in reports)
        ranked = sum(r.get("rank_count", 0) for r in reports)
        return {
            "subscribers": options.subscribers,
            "papers": options.papers,
            "workers": options.workers,
            "connections_per_worker": connections,
            "database": "postgresql" if database.url.startswith("postgresql") else "sqlite",
            "seed_seconds": round(seed_seconds, 1),
            "seconds": round(seconds, 2),
            "digests_per_second": round(rate),
            **result,
            "stages": {
                "plan": stage("plan", planned),
                "rank": stage("rank", ranked),
                "render": stage("render", sent),
                "send": stage("send", sent),
            },
            "sink_cpu_seconds": round(sink_cpu, 2),
            "machine_idle_share": round(idle_share, 3),
            "memory": {
                "peak_total_mb": round(memory.peak / 2**20, 1),
                "peak_processes": memory.peak_processes,
                "worker_peaks_mb": [round(r["max_rss_kb"] / 1024, 1) for r in reports],
                "sink_mb": round(sink_rss / 2**20, 1),
            },
            "message_bytes": {"median": median_size, "max": max(sizes) if sizes else 0},
            "ceiling": {
                "before_per_second": None if before is None else round(before),
                "after_per_second": round(after),
                "sessions": sessions,
                "messages": ceiling_count,
                "per_second": round(ceiling),
                "per_second_without_dump": round(bare),
                "ratio": round(rate / ceiling, 3),
            },
            "workers_report": reports,
        }
    finally:
        if sink is not None:
            sink.stop()
        database.close()
        if options.keep:
            say(options, f"kept {folder} and the sink's messages in {dump}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(dump, ignore_errors=True)


def start_workers(
    commands: list[list[str]], folder: Path, env: dict[str, str], files: contextlib.ExitStack
) -> tuple[list[subprocess.Popen[bytes]], list[tuple[Path, Path]]]:
    """Start each command in ``folder``, its stdout and stderr into files of its own there
    (kept open by ``files``); the processes and their (stdout, stderr) paths.

    Files, never pipes: pipes read one process after another (``communicate``) let the next
    process's log lines fill its stderr pipe (64 KB, about 60,000 digests into a run) and
    stopped it there until the one before had finished."""
    logs = [(folder / f"worker-{n}.out", folder / f"worker-{n}.err") for n in range(len(commands))]
    processes = [
        subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=files.enter_context(out_path.open("wb")),
            stderr=files.enter_context(err_path.open("wb")),
        )
        for command, (out_path, err_path) in zip(commands, logs, strict=True)
    ]
    return processes, logs


# -- the checks -------------------------------------------------------------------------------

REQUIRED_ONCE = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "MIME-Version",
)


def check(url: str, dump: Path, options: Options) -> dict[str, Any]:
    store = Store(create_engine(url))
    try:
        with store.transaction() as session:
            states = Counter(
                dict(
                    session.execute(
                        select(Delivery.status, func.count()).group_by(Delivery.status)
                    ).all()
                )
            )
            rows = session.execute(
                select(Delivery.id, Delivery.public_id, Subscriber.email)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.status == "sent")
            ).all()
            subscribers = session.scalar(select(func.count(Subscriber.id)))
    finally:
        store.close()
    planned = sum(states.values())
    if planned != subscribers:
        raise CheckFailed(f"{subscribers} subscribers but {planned} deliveries planned")
    unexpected = {s: n for s, n in states.items() if s not in ("sent", "skipped")}
    if unexpected:
        store = Store(create_engine(url))
        try:
            with store.transaction() as session:
                errors = session.scalars(
                    select(Delivery.last_error)
                    .where(Delivery.status.not_in(["sent", "skipped"]))
                    .limit(3)
                ).all()
        finally:
            store.close()
        raise CheckFailed(f"deliveries neither sent nor skipped: {unexpected}; {errors}")
    expected = {message_id(public_id, FROM): (did, mail) for did, public_id, mail in rows}

    received: Counter[str] = Counter()
    where: dict[str, sinks.Dumped] = {}
    sizes: list[int] = []
    html_sizes: list[int] = []
    wrong_recipient = 0
    for path in sinks.dumped_files(dump):
        dumped = sinks.read_dump(path)
        sizes.append(dumped.size)
        html_sizes.append(sinks.html_size(dumped))
        key = dumped.message_id or f"(none: {path.name})"
        received[key] += 1
        where[key] = dumped
        want = expected.get(key)
        if want is not None and dumped.recipients != (want[1],):
            wrong_recipient += 1
    total = sum(received.values())
    missing = [k for k in expected if k not in received]
    twice = {k: n for k, n in received.items() if n > 1}
    strangers = [k for k in received if k not in expected]
    if missing or twice or strangers or wrong_recipient or total != len(expected):
        raise CheckFailed(
            f"sink holds {total} messages for {len(expected)} sent: {len(missing)} missing, "
            f"{len(twice)} more than once, {len(strangers)} unexpected, "
            f"{wrong_recipient} to the wrong recipient"
        )
    over = sum(size > HTML_LIMIT for size in html_sizes)
    if over:
        raise CheckFailed(
            f"{over} message(s) with an HTML part over {HTML_LIMIT:,} bytes "
            f"(largest {max(html_sizes):,}): Gmail clips them"
        )
    samples = _check_samples(url, expected, where, options)
    return {
        "html_bytes": {
            "checked": len(html_sizes),
            "median": int(statistics.median(html_sizes)) if html_sizes else 0,
            "max": max(html_sizes, default=0),
            "limit": HTML_LIMIT,
        },
        "planned": planned,
        "sent": len(expected),
        "skipped": states.get("skipped", 0),
        "received": total,
        "checked_exactly_once": True,
        **samples,
        "_sizes": sizes,
    }


def _check_samples(
    url: str,
    expected: dict[str, tuple[int, str]],
    where: dict[str, sinks.Dumped],
    options: Options,
) -> dict[str, Any]:
    rng = random.Random(options.seed)
    chosen = rng.sample(sorted(expected), min(options.sample, len(expected)))
    store = Store(create_engine(url))
    html_sizes: list[int] = []
    ten_paper: list[tuple[int, int]] = []
    try:
        with store.transaction() as session:
            for message_id in chosen:
                delivery_id, address = expected[message_id]
                items = session.execute(
                    select(DeliveryItem.position, Paper.title, Paper.arxiv_id)
                    .join(Paper, Paper.id == DeliveryItem.paper_id)
                    .where(DeliveryItem.delivery_id == delivery_id)
                    .order_by(DeliveryItem.position)
                ).all()
                data = sinks.message_bytes(where[message_id])
                html_size = _check_message(data, message_id, address, items)
                if html_size != sinks.html_size(where[message_id]):
                    raise CheckFailed(
                        f"{message_id}: the HTML size read from the dump "
                        f"({sinks.html_size(where[message_id])}) is not the parsed one "
                        f"({html_size}): the every-message size check cannot be trusted"
                    )
                html_sizes.append(html_size)
                if len(items) == 10:
                    ten_paper.append((html_size, len(data)))
    finally:
        store.close()
    return {
        "sampled": len(chosen),
        "sample_html_bytes": {
            "median": int(statistics.median(html_sizes)) if html_sizes else 0,
            "max": max(html_sizes, default=0),
        },
        "ten_paper_digests": {
            "sampled": len(ten_paper),
            "html_max": max((h for h, _ in ten_paper), default=0),
            "message_max": max((m for _, m in ten_paper), default=0),
        },
    }


_MOVED = re.compile(r"(\d+) more papers? did not fit in this mail\.")


def _moved_count(text_body: str, html: str, problems: list[str]) -> int:
    """How many papers the message says did not fit (0: none), the same in both parts,
    each part with the browser link after saying so."""
    in_text, in_html = _MOVED.findall(text_body), _MOVED.findall(html)
    if in_text != in_html or len(in_text) > 1:
        problems.append(f"papers moved: {in_text} in the text part, {in_html} in the HTML part")
        return 0
    if not in_text:
        return 0
    for name, body in (("text", text_body), ("HTML", html)):
        if "/archive/" not in body.split("did not fit in this mail.")[1]:
            problems.append(f"papers moved without the browser link in the {name} part")
    return int(in_text[0])


def _check_message(data: bytes, message_id: str, address: str, items: list[Any]) -> int:
    message = email.message_from_bytes(data, policy=policy.strict)
    problems = [f"defects {message.defects}"] if message.defects else []
    for name in REQUIRED_ONCE:
        if len(message.get_all(name) or []) != 1:
            problems.append(f"{name} present {len(message.get_all(name) or [])} times")
    if message["Message-ID"] != message_id:
        problems.append(f"Message-ID {message['Message-ID']}")
    if message["To"].addresses[0].addr_spec != address:
        problems.append(f"To {message['To']}")
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    if text_part is None or html_part is None:
        raise CheckFailed(f"{message_id}: missing a text or HTML part")
    text_body = " ".join(text_part.get_content().split())
    html = html_part.get_content()
    # A digest too large for Gmail's clip names its last papers as moved behind the browser
    # link instead of showing them (render.Renderer); those are checked as moved, the rest
    # as shown.
    moved = _moved_count(text_body, html, problems)
    if moved >= len(items) > 0:
        problems.append(f"{moved} of {len(items)} papers moved out of the mail")
    shown = items[: len(items) - moved]
    position = 0
    for _, title, arxiv_id in shown:
        wanted = " ".join(title.split())
        found = text_body.find(wanted, position)
        if found < 0:
            problems.append(f"paper {title[:40]!r} missing or out of order in the text part")
        else:
            position = found + len(wanted)
        if arxiv_id and f"https://arxiv.org/abs/{arxiv_id}" not in html:
            problems.append(f"no arXiv link for {arxiv_id} in the HTML part")
    marks = re.findall(r"<mark\b[^>]*>", html)
    if any('style="' not in m for m in marks):
        problems.append("a highlight without an inline style")
    if "@media (max-width: 600px)" not in html or "prefers-color-scheme: dark" not in html:
        problems.append("@media rules for phones or dark mode missing")
    if re.search(r'<(?:td|p|h1|h2|h3|a|div)\b(?![^>]*style=)[^>]*class="', html):
        problems.append("an element with a class but no inline style")
    if problems:
        raise CheckFailed(f"{message_id}: " + "; ".join(problems[:5]))
    return len(html_part.get_payload(decode=True))


# -- ranking alone ----------------------------------------------------------------------------


def rank_only(profiles: int, papers: int, seed: int = 7) -> dict[str, Any]:
    """The product's Ranker on ``profiles`` generated profiles against ``papers`` papers,
    without the database: per-day preparation and the batch ranking, timed apart."""
    import tracemalloc  # noqa: F401  (kept out of the timed part)

    from digest.config import RankingSettings
    from digest.domain.items import PaperCard
    from digest.domain.profiles import Profile
    from digest.ranking import Ranker, RankRequest

    now = datetime.now(UTC)
    generated = workload.make_papers(papers, seed)
    cards = [
        PaperCard(
            paper_id=n + 1,
            canonical_id=p.arxiv_id or f"x{n}",
            arxiv_id=p.arxiv_id,
            title=p.title,
            abstract=p.abstract,
            authors=tuple(p.authors),
            categories=tuple(p.categories),
            upvotes=p.upvotes,
            ai_summary=p.ai_summary,
            sources=(p.source,),
            first_seen_at=now - timedelta(hours=1),
        )
        for n, p in enumerate(generated)
    ]
    vocab = workload.Vocabulary(generated)
    rng = random.Random(seed + 1)
    requests = [
        RankRequest(
            Profile.from_json(workload._profile_json(vocab, rng)),
            10,
            now - timedelta(hours=72),
            frozenset(),
        )
        for _ in range(profiles)
    ]
    clock, cpu = time.monotonic(), time.process_time()
    ranker = Ranker(cards, RankingSettings(semantic=False), now)
    prepared = time.monotonic() - clock
    clock = time.monotonic()
    results = ranker.rank(requests)
    ranked = time.monotonic() - clock
    cpu = time.process_time() - cpu
    return {
        "profiles": profiles,
        "papers": papers,
        "prepare_seconds": round(prepared, 2),
        "rank_seconds": round(ranked, 2),
        "total_seconds": round(prepared + ranked, 2),
        # Both together, all threads: steadier than the wall time on a shared machine.
        "cpu_seconds": round(cpu, 2),
        "items": sum(len(r) for r in results),
        # Every pick and its score, in order: the same seed must give the same digest.
        "checksum": hashlib.sha256(
            repr([[(i.paper_id, i.score) for i in r] for r in results]).encode()
        ).hexdigest()[:16],
        # The picks alone, in order: the scores' last bits follow the CPU's vector unit
        # (numpy's sums), so only this one compares across machines.
        "picks_checksum": hashlib.sha256(
            repr([[i.paper_id for i in r] for r in results]).encode()
        ).hexdigest()[:16],
    }


def _seeded_store(
    settings: Settings, subscribers: int, papers: int, seed: int, now: datetime
) -> Store:
    """The store of ``settings`` with a generated day: ``papers`` papers and ``subscribers``
    readers (as the whole benchmark seeds them)."""
    store = Store.open(settings.database)
    generated = workload.make_papers(papers, seed)
    workload.store_papers(store, generated, now - timedelta(hours=1))
    workload.add_subscribers(store, subscribers, generated, now, seed + 1)
    return store


def _about(database: str | None, subscribers: int) -> dict[str, Any]:
    """What every one-process measurement reports first."""
    return {
        "machine": machine(),
        "database": "sqlite" if database is None else "postgresql",
        "subscribers": subscribers,
    }


def claims_only(
    subscribers: int, papers: int, database: str | None, seed: int = 7
) -> dict[str, Any]:
    """A sender's claims alone (``mail_outbox.claim`` then ``outbox.claim`` in one
    transaction, as every batch of every lane starts, holding SQLite's one write lock): a
    seeded day planned and ranked by the product's own ``plan_and_rank``, then claims of
    ``delivery.batch_size`` one after another until nothing is ready, each in its own
    transaction as a lane makes it; the CPU each took."""
    from digest.app import digests
    from digest.domain.states import Lease
    from digest.store import mail_outbox, outbox

    folder = Path(tempfile.mkdtemp(prefix="digest-bench-claims-"))
    db = fresh_database(database, folder)
    try:
        now = datetime.now(UTC)
        settings = load_settings(
            environ={"DIGEST_DATABASE__URL": db.url, "DIGEST_RANKING__SEMANTIC": "false"}
        )
        store = _seeded_store(settings, subscribers, papers, seed, now)
        digests.plan_and_rank(settings, store, now)
        batch = settings.delivery.batch_size
        lease = Lease("bench", now, timedelta(hours=1))
        seconds: list[float] = []
        claimed = 0
        while True:
            cpu = time.process_time()
            with store.transaction() as session:
                # As a lane's claim (``OutboxQueue.claim``): transactional mail first.
                if mail_outbox.claim(session, lease, batch):
                    raise CheckFailed("the benchmark's day has no transactional mail")
                taken = outbox.claim(session, lease, batch)
            if not taken:
                break
            seconds.append(time.process_time() - cpu)
            claimed += len(taken)
        store.close()
    finally:
        db.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        **_about(database, subscribers),
        "claimed": claimed,
        "batch": batch,
        "claims": len(seconds),
        "cpu_ms_per_claim_median": round(1000 * statistics.median(seconds), 2),
        "cpu_ms_per_claim_mean": round(1000 * statistics.fmean(seconds), 2),
        "cpu_ms_per_digest": round(1000 * sum(seconds) / max(claimed, 1), 3),
    }


def stages_only(
    subscribers: int, papers: int, database: str | None, seed: int = 7
) -> dict[str, Any]:
    """A worker's path for every digest in one thread, without a mail server: a seeded day
    planned and ranked by ``plan_and_rank``, then the sender's own queue (``make_sender``)
    claims a batch, each message is built and recorded as sent, batch after batch. The CPU
    time of each stage per digest: steadier than a whole run's rate (no lanes, processes or
    sink sharing the cores), so a change of a few per cent shows (docs/benchmarks.md)."""
    import logging

    from digest.app import digests
    from digest.app.ranked import RankedItems
    from digest.app.sending import make_sender
    from digest.collector import fewer_collections
    from digest.delivery.sender import SendSummary
    from digest.domain.states import Lease

    folder = Path(tempfile.mkdtemp(prefix="digest-bench-stages-"))
    db = fresh_database(database, folder)
    # A digest shortened to fit under Gmail's clip is logged, as in a worker; here that would
    # be a line for one digest in fifty, drowning the result.
    render_log = logging.getLogger("digest.render")
    level = render_log.level
    render_log.setLevel(logging.ERROR)
    try:
        now = datetime.now(UTC)
        settings = load_settings(
            environ={
                "DIGEST_DATABASE__URL": db.url,
                "DIGEST_RANKING__SEMANTIC": "false",
                "DIGEST_PATHS__VAR_DIR": str(folder / "var"),
                "DIGEST_MAIL__FROM_ADDRESS": FROM,
                "DIGEST_WEB__BASE_URL": "https://digest.example.org",
                "DIGEST_WEB__SECRET_KEY": "benchmark-secret-key-0123456789",
            }
        )
        store = _seeded_store(settings, subscribers, papers, seed, now)
        # As in a worker (digest.scheduler.run_worker): young objects collected less often.
        with fewer_collections():
            seconds = dict.fromkeys(("plan_and_rank", "claim", "build", "record"), 0.0)
            cpu = time.process_time()
            # As a worker's round (digest.scheduler.Service.tick): what it ranks, it holds.
            kept = RankedItems()
            digests.plan_and_rank(settings, store, now, owner="bench", kept=kept)
            seconds["plan_and_rank"] = time.process_time() - cpu
            sender = make_sender(settings, store, owner="bench", clock=lambda: now, kept=kept)
            lease = Lease("bench", now, timedelta(hours=1))
            done = 0
            octets = 0
            while True:
                cpu = time.process_time()
                ready = sender.queue.claim(lease, sender.batch, SendSummary())
                seconds["claim"] += time.process_time() - cpu
                if not ready:
                    break
                for outgoing in ready:
                    cpu = time.process_time()
                    message = outgoing.build()
                    seconds["build"] += time.process_time() - cpu
                    cpu = time.process_time()
                    if not sender.queue.mark_sent(outgoing, "bench", now, "250 2.0.0 Ok"):
                        raise CheckFailed(f"delivery {outgoing.delivery_id}: lease lost")
                    seconds["record"] += time.process_time() - cpu
                    done += 1
                    octets += len(message)
            sender.close()
        store.close()
    finally:
        render_log.setLevel(level)
        db.close()
        shutil.rmtree(folder, ignore_errors=True)
    per_digest = {name: round(1e6 * spent / max(done, 1), 1) for name, spent in seconds.items()}
    return {
        **_about(database, subscribers),
        "papers": papers,
        "digests": done,
        "message_bytes_mean": round(octets / max(done, 1)),
        "cpu_us_per_digest": per_digest,
        "cpu_us_per_digest_total": round(sum(per_digest.values()), 1),
    }


def quick(args: argparse.Namespace, tools: dict[str, str], how: str) -> int:
    """`make bench-quick`: one 10,000 x 1,000 run as a user would configure it (the
    product's defaults), its rate against a 16-session SMTP ceiling, into
    var/bench/quick.json."""
    # The default configuration: as many worker processes as `digest worker` starts by
    # default (delivery.processes = 0: one per core), each what one of them runs.
    from digest.processes import process_count

    workers = process_count(load_settings(environ={}), None)
    options = Options(
        workers=workers, sample=args.sample, seed=args.seed, keep=args.keep, tools=tools
    )
    options.ceiling_sessions, options.ceiling_before = QUICK_SESSIONS, True
    options.py_spy = args.py_spy
    load_before = os.getloadavg()
    try:
        result = run(options)
    except CheckFailed as exc:
        print(f"CHECK FAILED: {exc}", file=sys.stderr)
        return 1
    ceiling = result["ceiling"]
    report = {
        "digests_per_second": result["digests_per_second"],
        "ceiling_per_second": ceiling["per_second"],
        "ceiling_sessions": ceiling["sessions"],
        "ceiling_before_per_second": ceiling["before_per_second"],
        "ceiling_after_per_second": ceiling["after_per_second"],
        "ratio": ceiling["ratio"],
        "checked_exactly_once": result["checked_exactly_once"],
        "sent": result["sent"],
        "skipped": result["skipped"],
        "seconds": result["seconds"],
        "stages": result["stages"],
        "html_bytes": result["html_bytes"],
        "message_bytes": result["message_bytes"],
        "memory": result["memory"],
        "cpu": {
            "workers_seconds": round(sum(r["cpu_seconds"] for r in result["workers_report"]), 1),
            # Nothing renders in a child process any more (the sending threads render):
            # this is the children's real total, reaped, not a placeholder.
            "children_seconds": round(
                sum(r["children_cpu_seconds"] for r in result["workers_report"]), 1
            ),
            # The cyclic garbage collector's share of the workers' CPU (digest/collector.py).
            "gc_seconds": round(
                sum(sum(r.get("gc_seconds", ())) for r in result["workers_report"]), 2
            ),
            # The sink's CPU while the workers ran (it shares the cores), and the share of
            # the machine's CPU time no process used meanwhile.
            "sink_seconds": result["sink_cpu_seconds"],
            "machine_idle_share": result["machine_idle_share"],
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "machine": machine(),
        "sink": how,
        "run": result,
    }
    out = Path(args.json or "var/bench/quick.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(summary_line(result), file=sys.stderr)
    print(
        f"{report['digests_per_second']:,} digests/s; ceiling {report['ceiling_per_second']:,}/s "
        f"at {QUICK_SESSIONS} sessions (before {ceiling['before_per_second']:,}, after "
        f"{ceiling['after_per_second']:,}); ratio {report['ratio']}; written to {out}"
    )
    return 0


QUICK_SESSIONS = 16


# -- reporting --------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    return (
        f"{os.cpu_count()} cores ({model or platform.processor()}), {memory:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def summary_line(r: dict[str, Any]) -> str:
    s = r["stages"]
    workers_cpu = sum(w["cpu_seconds"] for w in r["workers_report"])
    return (
        f"{r['subscribers']:>7,} x {r['papers']:>5,} {r['database']:>10} w{r['workers']}: "
        f"{r['sent']:,} sent in {r['seconds']:.1f} s = {r['digests_per_second']:,}/s "
        f"(plan {s['plan']['seconds']} s, rank {s['rank']['seconds']} s, render "
        f"{s['render']['seconds']} s, send {s['send']['seconds']} s); peak "
        f"{r['memory']['peak_total_mb']} MB; message median {r['message_bytes']['median']:,} B "
        f"max {r['message_bytes']['max']:,} B; ceiling {r['ceiling']['per_second']:,}/s "
        f"(bare sink {r['ceiling']['per_second_without_dump']:,}/s), ratio {r['ceiling']['ratio']}"
        f"; CPU: workers {workers_cpu:.1f} s, sink {r['sink_cpu_seconds']} s, "
        f"machine idle {100 * r['machine_idle_share']:.0f}%"
    )


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| subscribers | papers | database | workers | sent | seconds | digests/s | plan s | "
        "rank s | render s | send s | peak MB | median msg | max msg | ceiling/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["stages"]
        lines.append(
            f"| {r['subscribers']:,} | {r['papers']:,} | {r['database']} | {r['workers']} | "
            f"{r['sent']:,} | {r['seconds']:.1f} | {r['digests_per_second']:,} | "
            f"{s['plan']['seconds']} | {s['rank']['seconds']} | {s['render']['seconds']} | "
            f"{s['send']['seconds']} | {r['memory']['peak_total_mb']:.0f} | "
            f"{r['message_bytes']['median']:,} | {r['message_bytes']['max']:,} | "
            f"{r['ceiling']['per_second']:,} | {r['ceiling']['ratio']:.2f} |"
        )
    return "\n".join(lines)


def scaling(results: list[dict[str, Any]], key: str, fixed: str, value: int) -> str:
    """Time and memory against ``key`` with ``fixed`` at ``value``, with the exponents the
    neighbouring points imply (time ~ n^k)."""
    import math

    rows = sorted(
        (
            r
            for r in results
            if r[fixed] == value and r["workers"] == 1 and r["database"] == "sqlite"
        ),
        key=lambda r: r[key],
    )
    lines = [
        f"| {key} | seconds | exponent | peak MB | exponent |",
        "|---|---|---|---|---|",
    ]
    previous = None
    for r in rows:
        t, m = r["seconds"], r["memory"]["peak_total_mb"]
        if previous is None:
            lines.append(f"| {r[key]:,} | {t:.1f} | | {m:.0f} | |")
        else:
            ratio = math.log(r[key] / previous[key])
            et = math.log(t / previous["seconds"]) / ratio
            em = math.log(m / previous["memory"]["peak_total_mb"]) / ratio
            lines.append(f"| {r[key]:,} | {t:.1f} | {et:.2f} | {m:.0f} | {em:.2f} |")
        previous = r
    return "\n".join(lines)


# Each run: (subscribers, papers, workers, database, smtp.max_connections per worker).
SUITE = (
    (1_000, 1_000, 1, "sqlite", 4),
    (10_000, 1_000, 1, "sqlite", 4),
    (100_000, 1_000, 1, "sqlite", 4),
    (10_000, 250, 1, "sqlite", 4),
    (10_000, 5_000, 1, "sqlite", 4),
    (10_000, 1_000, 1, "postgresql", 4),
    (10_000, 1_000, 2, "postgresql", 4),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--connections", type=int, default=None, help="smtp.max_connections per worker"
    )
    parser.add_argument(
        "--database",
        default=None,
        help="a SQLite path (must not exist) or a PostgreSQL URL (a fresh schema is made); "
        "default: SQLite in a temporary folder",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="the PostgreSQL URL --suite uses",
    )
    parser.add_argument("--sample", type=int, default=40, help="messages parsed and checked")
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="leave ranking.semantic at its default (semantic matching when the extra is "
        "installed); without it the benchmark ranks by keywords, as the base install does",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--suite", action="store_true", help="every run of docs/benchmarks.md")
    parser.add_argument("--rank-only", action="store_true", help="ranking 100k x 2k alone")
    parser.add_argument(
        "--claims-only",
        action="store_true",
        help="a sender's claims alone, on a ranked day of --subscribers (--database)",
    )
    parser.add_argument(
        "--stages-only",
        action="store_true",
        help="a worker's path for every digest in one thread, no mail server: CPU per digest "
        "of ranking, claiming, building and recording (--subscribers, --database)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10,000 x 1,000 in the default configuration against a 16-session ceiling "
        "measured before and after; writes var/bench/quick.json (make bench-quick)",
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get install postfix")
    parser.add_argument("--py-spy", default=None, help="profile worker 0 into this file (raw)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder and the sink's messages"
    )
    parser.add_argument("--json", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    # A stopped benchmark still removes its database, dumps and sink (``finally`` blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.rank_only:
        print(json.dumps(rank_only(100_000, 2_000, args.seed), indent=2))
        return 0
    if args.claims_only:
        claims = claims_only(args.subscribers, args.papers, args.database, args.seed)
        print(json.dumps(claims, indent=2))
        return 0
    if args.stages_only:
        stages = stages_only(args.subscribers, args.papers, args.database, args.seed)
        print(json.dumps(stages, indent=2))
        return 0
    tools, how = sinks.ensure_tools(install=not args.no_install)
    print(f"machine: {machine()}", file=sys.stderr)
    print(f"smtp-sink: {how}", file=sys.stderr)
    if args.quick:
        return quick(args, tools, how)
    plans = (
        [
            Options(
                subscribers=s,
                papers=p,
                workers=w,
                connections=args.connections or connections,
                database=None if db == "sqlite" else args.postgres,
            )
            for s, p, w, db, connections in SUITE
        ]
        if args.suite
        else [
            Options(
                subscribers=args.subscribers,
                papers=args.papers,
                workers=args.workers,
                connections=args.connections,
                database=args.database,
            )
        ]
    )
    results = []
    failed = False
    for options in plans:
        options.sample, options.seed, options.keep = args.sample, args.seed, args.keep
        options.py_spy, options.tools = args.py_spy, tools
        options.semantic = args.semantic
        try:
            result = run(options)
        except CheckFailed as exc:
            print(f"CHECK FAILED: {exc}", file=sys.stderr)
            failed = True
            continue
        except Exception as exc:  # the machine's trouble (a database restarted under us)
            print(f"RUN FAILED: {exc!r:.500}", file=sys.stderr)
            failed = True
            continue
        results.append(result)
        print(summary_line(result), file=sys.stderr, flush=True)
    ranking = rank_only(100_000, 2_000, args.seed) if args.suite else None
    report = {"machine": machine(), "sink": how, "runs": results, "ranking": ranking}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(markdown(results))
    if args.suite:
        print()
        print(scaling(results, "subscribers", "papers", 1_000))
        print()
        print(scaling(results, "papers", "subscribers", 10_000))
        print()
        print(f"ranking alone: {json.dumps(ranking)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
