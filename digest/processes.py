"""`digest worker --processes N`: N symmetric worker processes under one command.

Each child is a whole worker (``digest.scheduler.run_worker``): it claims, ranks, renders
and sends its own batches with its own database connection, exactly as N separate
`digest worker` commands would. One Python process renders and sends on about one core (the
GIL), so one child per core is the default. The parent does no work of its own: it starts
the children, passes SIGTERM and SIGINT on (each finishes the messages it has in flight),
starts again a child that dies while the others run on, and adds up what they did.

Children are spawned, not forked: a fork would copy the parent's logging locks and library
state mid-use. A child's claims carry its own name (``NAME/1``, ``NAME/2``…, from
``--name`` or ``delivery.worker_name``) so that a restarted child takes back at once what its
previous life held; without a name each child is ``host:pid`` and its claims wait out the
lease after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING, Any

from digest.config import Settings
from digest.delivery.sender import SendSummary
from digest.errors import DigestError, StoreError, Unavailable
from digest.logs import LogOptions

if TYPE_CHECKING:
    from digest.store import Store

log = logging.getLogger(__name__)

RESTART_PAUSE = 5.0  # seconds before a child that died is started again
STOP_GRACE = 60.0  # after this, a child that ignored SIGTERM is killed


@dataclass(frozen=True, slots=True)
class ChildSpec:
    index: int  # 1..N
    owner: str | None  # the name on its claims; None: host:pid
    once: bool
    plan: bool
    logging: LogOptions
    parent: int = 0  # the parent's pid, taken in the parent (0: the child's parent at its start)


def process_count(settings: Settings, asked: int | None) -> int:
    """``--processes`` when given, else ``delivery.processes``; 0 means one per core."""
    count = settings.delivery.processes if asked is None else asked
    return count if count > 0 else _cpu_count()


def child_name(base: str | None, index: int) -> str | None:
    return f"{base}/{index}" if base else None


def open_store_patiently(
    settings: Settings, stop: threading.Event, wait: float = 60.0, *, schema_checked: bool = False
) -> Store:
    """A worker started while the database restarts (or its first connection is cut) waits
    for it, up to ``wait`` seconds, rather than exiting; a wrong setting still fails at once.

    ``schema_checked``: the parent process checked (and migrated) the schema before starting
    this one, so it only connects (no migration check, no alembic to import)."""
    from digest.store import Store

    deadline = time.monotonic() + wait
    while True:
        try:
            if not schema_checked:
                return Store.open(settings.database)
            store = Store.connect(settings.database)
            try:
                store.ping()
            except BaseException:
                store.close()
                raise
            return store
        except StoreError as exc:
            passing = isinstance(exc, Unavailable) or "cannot use the database" in str(exc)
            if not passing or time.monotonic() > deadline:
                raise
            log.warning("database not ready (%s); retrying", exc)
            if stop.wait(1.0):
                raise


def run_processes(
    settings: Settings,
    count: int,
    *,
    once: bool,
    plan: bool,
    owner: str | None,
    stop: threading.Event,
    log_options: LogOptions,
) -> tuple[SendSummary, int]:
    """Run ``count`` worker processes until they end (``once``) or ``stop`` is set; the
    summed summary and how many children ended badly (an exit status other than 0)."""
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    children: dict[int, BaseProcess] = {}
    specs = {
        i: ChildSpec(i, child_name(owner, i), once, plan, log_options, os.getpid())
        for i in range(1, count + 1)
    }
    total = SendSummary()
    bad = 0

    def start(index: int) -> None:
        process = context.Process(
            target=_child_main,
            args=(settings, specs[index], results),
            name=f"digest-worker-{index}",
        )
        process.start()
        children[index] = process

    def collect(block: bool) -> None:
        while True:
            try:
                _index, summary = results.get(block=block, timeout=0.2 if block else None)
            except queue.Empty:
                return
            total.add(summary)
            block = False

    for index in specs:
        start(index)
    log.info("started %d worker processes", count)
    stopping = False
    deadline = 0.0
    restarts: dict[int, float] = {}  # child -> when to start it again
    while children or (restarts and not stopping):
        if stop.is_set() and not stopping:
            stopping = True
            restarts.clear()
            for process in children.values():
                _signal(process, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
        if children:
            collect(block=True)  # also the loop's pace: at most 0.2 s
        else:
            stop.wait(0.2)
        for index, process in list(children.items()):
            if process.is_alive():
                if stopping and time.monotonic() > deadline:
                    log.error("worker process %d did not stop in %.0f s; killed", index, STOP_GRACE)
                    process.kill()
                continue
            process.join()
            del children[index]
            if process.exitcode == 0:
                continue
            bad += 1
            if once or stopping:
                log.error("worker process %d ended with status %s", index, process.exitcode)
                continue
            # Running for good: the others go on; this one starts again after a pause (a
            # child that keeps dying does not spin).
            log.error(
                "worker process %d ended with status %s; starting it again in %.0f s",
                index,
                process.exitcode,
                RESTART_PAUSE,
            )
            restarts[index] = time.monotonic() + RESTART_PAUSE
        for index, when in list(restarts.items()):
            if time.monotonic() >= when:
                del restarts[index]
                start(index)
    collect(block=False)
    results.close()
    return total, bad


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signum)


def _watch_parent(parent: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.warning("the parent worker process is gone; finishing the messages in flight")
            stop.set()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _child_main(settings: Settings, spec: ChildSpec, results: Any) -> None:
    """One worker process: log as the parent does, stop on SIGTERM/SIGINT after the messages
    in flight, report what it did."""
    import sys

    from digest import logs
    from digest.collector import freeze_at_exit
    from digest.scheduler import run_worker

    freeze_at_exit()  # the parent waits for this process to exit: no collection of its heap
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A parent killed outright (SIGKILL, a crash) cannot pass a stop on: the child notices
    # it is orphaned and stops as on SIGTERM, after the messages in flight. The parent's pid
    # comes from the parent: a child still starting (imports take seconds on a busy machine)
    # when its parent died would otherwise read its new parent's as its own, and never stop.
    parent = spec.parent or os.getppid()
    threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()
    logs.setup(
        settings.logging,
        verbose=spec.logging.verbose,
        format=spec.logging.format,
        level=spec.logging.level,
        service=True,
    )
    try:
        store = open_store_patiently(settings, stop, schema_checked=True)
        try:
            summary = run_worker(
                settings, store, once=spec.once, plan=spec.plan, owner=spec.owner, stop=stop
            )
        finally:
            store.close()
    except DigestError as exc:
        log.error("worker process %d: %s", spec.index, exc)
        sys.exit(exc.exit_code)
    results.put((spec.index, summary))
