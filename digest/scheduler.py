"""`digest serve`: APScheduler jobs that call the pipeline, nothing else.

Two jobs: fetching on a cron (UTC), and a frequent tick that plans, ranks and sends the
digests that are due. A tick after downtime finds the day's missed digests still due and
sends them once; the (subscriber, local date) key keeps them from going twice.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import pipeline
from digest.config import Settings, cron_fields
from digest.delivery.mailers import make_mailer
from digest.store import Store
from digest.tokens import Links, Tokens, secret_key

log = logging.getLogger(__name__)


class Service:
    """What one `digest serve` process holds: the store, the renderer, the links."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.renderer = pipeline.make_renderer(settings)
        self.links = Links(settings, Tokens(secret_key(settings)))

    def fetch(self) -> None:
        for summary in pipeline.fetch(self.settings, self.store):
            if summary.status == "failed":
                log.error("fetch %s failed: %s", summary.source, summary.error)
            else:
                log.info(
                    "fetch %s: %d new, %d updated", summary.source, summary.new, summary.updated
                )

    def tick(self) -> None:
        """Plan, rank and send whatever is due now."""
        planned = pipeline.plan_and_rank(self.settings, self.store, datetime.now(UTC))
        mailer = make_mailer(self.settings)
        try:
            sent = pipeline.send_ready(self.settings, self.store, mailer, self.renderer, self.links)
        finally:
            mailer.close()
        if planned.planned or sent.sent or sent.failed or sent.deferred:
            log.info(
                "tick: planned %d, sent %d, deferred %d, failed %d",
                planned.planned,
                sent.sent,
                sent.deferred,
                sent.failed,
            )


def build_scheduler(service: Service) -> BlockingScheduler:
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
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    log.warning(
        "serving: fetch on %r (UTC), tick every %d s",
        settings.schedule.fetch_cron,
        settings.schedule.tick_seconds,
    )
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
