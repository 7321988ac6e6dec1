"""`digest serve` and `digest worker`: loops that call the use cases, nothing else.

`digest serve` runs two APScheduler jobs: fetching on a cron (UTC), and a frequent tick
that plans, ranks and sends the digests that are due. `digest worker` plans, ranks and
sends in a loop, without fetching. Any number of either may run against one PostgreSQL
database: planning is idempotent (the (subscriber, local date) key), ranking and sending
claim rows with ``SKIP LOCKED``, and an advisory lock lets one process fetch at a time.
A tick after downtime finds the day's missed digests still due and sends them once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING

from digest.app import digests, sending
from digest.app.ranked import RankedItems
from digest.collector import fewer_collections
from digest.config import Settings
from digest.cron import cron_fields
from digest.delivery.sender import SendSummary
from digest.errors import StoreError
from digest.store import Store

if TYPE_CHECKING:
    from apscheduler.schedulers.blocking import BlockingScheduler

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class Service:
    """What one `digest serve` or `digest worker` process holds: the store, the renderer,
    the links, its name on the claims it makes."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.owner = owner or sending.worker_name(settings)
        self.stop = stop or threading.Event()
        self.renderer = sending.make_renderer(settings)
        self.links = sending.signed_links(settings)

    def fetch(self) -> None:
        from digest.app import fetching  # httpx and the feed parsers: `digest serve` alone

        summaries = fetching.fetch_alone(self.settings, self.store)
        if summaries is None:
            log.info("fetch: another process is fetching; skipped")
            return
        for summary in summaries:
            if summary.status == "failed":
                log.error("fetch %s failed: %s", summary.source, summary.error)
            else:
                log.info(
                    "fetch %s: %d new, %d updated", summary.source, summary.new, summary.updated
                )

    def recover(self) -> int:
        """Take back the claims this worker's previous run held (it has a stable name)."""
        count = sending.recover(self.settings, self.store, self.owner, self.clock())
        if count:
            log.warning("took back %d deliveries claimed by this worker before a restart", count)
        return count

    def tick(self, plan: bool = True) -> SendSummary:
        """Plan, rank and send whatever is due now.

        No message of this process is in flight between ticks, so any row still leased to
        it is an orphan (a commit whose answer was lost with the connection): it is taken
        back first rather than left to wait out its lease.
        """
        self.recover()
        # What this round ranks goes to its own sender without a trip through the database.
        kept = RankedItems()
        planned = (
            digests.plan_and_rank(
                self.settings, self.store, self.clock(), owner=self.owner, stop=self.stop, kept=kept
            )
            if plan
            else None
        )
        sent = sending.send_all(
            self.settings,
            self.store,
            renderer=self.renderer,
            links=self.links,
            clock=self.clock,
            owner=self.owner,
            stop=self.stop,
            kept=kept,
        )
        if (planned and planned.planned) or sent.claimed:
            log.info(
                "tick: planned %d, sent %d, deferred %d, failed %d, unknown %d",
                planned.planned if planned else 0,
                sent.sent,
                sent.deferred,
                sent.failed,
                sent.unknown,
            )
        return sent


def build_scheduler(service: Service) -> BlockingScheduler:
    # Imported here: `digest worker` and its processes run no scheduler.
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    settings = service.settings.schedule
    scheduler = BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        service.fetch,
        CronTrigger(**cron_fields(settings.fetch_cron), timezone=UTC),
        id="fetch",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.add_job(
        service.tick,
        IntervalTrigger(seconds=settings.tick_seconds, timezone=UTC),
        id="tick",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),  # catch up at once after downtime
    )
    return scheduler


def serve(settings: Settings, store: Store) -> None:
    service = Service(settings, store)
    scheduler = build_scheduler(service)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.warning("received signal %d; finishing the current job and stopping", signum)
        service.stop.set()  # senders give back what they have not started
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    log.warning(
        "serving: fetch on %r (UTC), tick every %d s",
        settings.schedule.fetch_cron,
        settings.schedule.tick_seconds,
    )
    with contextlib.suppress(KeyboardInterrupt, SystemExit), fewer_collections():
        scheduler.start()  # the ticks send as a worker does: the same collector setting


SWITCH_INTERVAL = 0.0005  # seconds; see run_worker
MAX_FAILED_ROUNDS = 30  # `--once` gives up after this many rounds in a row without a database


def run_worker(
    settings: Settings,
    store: Store,
    *,
    once: bool = False,
    plan: bool = True,
    owner: str | None = None,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
) -> SendSummary:
    """Plan, rank and send in rounds until stopped (``once``: until nothing is ready).

    A round that finds work is followed at once by another; an idle worker waits
    ``delivery.poll_seconds``. A database outage is waited out, never fatal: the claims in
    flight are recorded when it returns (or return to the queue with their lease).
    """
    # Sending threads mostly wait on the mail server while another renders: with Python's
    # default 5 ms switch interval a thread whose reply has arrived waits up to that long
    # for the interpreter, four times a message. 0.5 ms measured 15-20% more digests a
    # second on two processes (docs/benchmarks.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    with fewer_collections():  # see digest.collector: the collector took a tenth of the CPU
        service = Service(settings, store, clock=clock, owner=owner, stop=stop)
        total = SendSummary()
        failed_rounds = 0
        while not service.stop.is_set():
            try:
                result = service.tick(plan=plan)
            except StoreError as exc:
                failed_rounds += 1
                log.warning("worker: %s; trying again", exc)
                if once and failed_rounds >= MAX_FAILED_ROUNDS:
                    raise
                service.stop.wait(min(settings.delivery.poll_seconds, 1.0 * failed_rounds))
                continue
            total.add(result)
            if result.errors:
                failed_rounds += 1
                if once and failed_rounds >= MAX_FAILED_ROUNDS:
                    break
                service.stop.wait(min(settings.delivery.poll_seconds, 1.0 * failed_rounds))
                continue
            failed_rounds = 0
            if result.claimed:
                continue  # more may be ready
            if once:
                break
            service.stop.wait(settings.delivery.poll_seconds)
        return total
