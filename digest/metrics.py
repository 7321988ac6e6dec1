"""Prometheus metrics, read from the database at each scrape.

Counting in process memory would be wrong here: the work is spread over `digest serve`, any
number of `digest worker` processes and one-off commands, and each restarts at will. The
database is the one place that knows, so :class:`DigestCollector` queries it when Prometheus
scrapes `/metrics` (a handful of aggregate queries over indexed columns).

- ``digest_up``: 1 when the database answered the scrape's queries (0, and nothing else
  but ``digest_build_info{version}``, when it did not)
- ``digest_papers``: papers stored
- ``digest_papers_fetched_total{source}``, ``digest_papers_new_total{source}``: records
  fetched and papers first stored, over all recorded fetch runs
- ``digest_fetch_runs_total{source,status}``: fetch runs that were ok, not_modified, failed
- ``digest_fetch_last_run_timestamp_seconds{source}``,
  ``digest_fetch_last_success_timestamp_seconds{source}``, ``digest_fetch_last_run_ok{source}``
- ``digest_deliveries{status}``: digests in each state (planned … cancelled)
- ``digest_deliveries_sent_total``: digests accepted by the mail server, ever
- ``digest_deliveries_recent{status}``: digests planned in the last 24 hours, by state
- ``digest_send_latency_seconds``: planning → acceptance, over the digests sent in the last
  24 hours (a gauge histogram: a sliding window, so ``histogram_quantile`` over its buckets
  as they are, without ``rate``)
- ``digest_queue_depth``, ``digest_queue_oldest_age_seconds``: digests waiting to go out now,
  and how long the longest-waiting one has waited (0 when none waits)
- ``digest_deliveries_in_flight``, ``digest_deliveries_held``: claimed by a live sender; held
  for an operator (``delivery.unknown_policy = "hold"``)
- ``digest_subscribers{status}``: pending, active, unsubscribed, bounced

Counters come from rows, so deleting a subscriber (and their history) can lower one;
Prometheus treats that as a counter reset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

import digest
from digest.config import Settings
from digest.models import Delivery, FetchRun, Paper
from digest.store import Store, reports

log = logging.getLogger(__name__)

LATENCY_WINDOW = timedelta(hours=24)
# Planned → accepted, in seconds: a digest normally goes within a tick (a minute); retries
# after temporary failures take minutes to hours.
LATENCY_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)


class DigestCollector(Collector):
    """Collects the metrics above from ``store`` at each scrape."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("digest_up", "1 when the database answered the scrape's queries")
        try:
            with self.store.transaction() as session:
                families = list(self._families(session, self.clock()))
        except Exception as exc:  # the scrape still answers, saying the database is away
            log.warning("metrics: database unavailable: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
            yield up
            yield _info()
            return
        up.add_metric([], 1)
        yield up
        yield _info()
        yield from families

    def _families(self, session: Session, now: datetime) -> Iterator[Metric]:
        yield from _papers(session, self.settings)
        yield from _deliveries(session, now)
        yield _latency(session, now)
        yield from _queue(session, now)
        subscribers = GaugeMetricFamily(
            "digest_subscribers", "Subscribers by status", labels=["status"]
        )
        for state, count in reports.subscriber_counts(session).items():
            subscribers.add_metric([state], count)
        yield subscribers


def _info() -> Metric:
    info = GaugeMetricFamily("digest_build_info", "The running version", labels=["version"])
    info.add_metric([digest.__version__], 1)
    return info


def _papers(session: Session, settings: Settings) -> Iterator[Metric]:
    stored = GaugeMetricFamily("digest_papers", "Papers stored")
    stored.add_metric([], session.scalar(select(func.count(Paper.id))) or 0)
    yield stored

    fetched = CounterMetricFamily(
        "digest_papers_fetched", "Records fetched, over all recorded fetch runs", labels=["source"]
    )
    new = CounterMetricFamily(
        "digest_papers_new", "Papers first stored by each source", labels=["source"]
    )
    runs = CounterMetricFamily(
        "digest_fetch_runs", "Fetch runs by outcome", labels=["source", "status"]
    )
    totals: dict[str, list[int]] = {name: [0, 0] for name in settings.sources.enabled}
    by_status: dict[tuple[str, str], int] = {}
    rows = session.execute(
        select(
            FetchRun.source,
            FetchRun.status,
            func.count(),
            func.coalesce(func.sum(FetchRun.fetched), 0),
            func.coalesce(func.sum(FetchRun.new), 0),
        ).group_by(FetchRun.source, FetchRun.status)
    )
    for source, state, count, fetched_sum, new_sum in rows:
        total = totals.setdefault(source, [0, 0])
        total[0] += int(fetched_sum)
        total[1] += int(new_sum)
        by_status[(source, state)] = count
    for source, (fetched_sum, new_sum) in sorted(totals.items()):
        fetched.add_metric([source], fetched_sum)
        new.add_metric([source], new_sum)
        for state in ("ok", "not_modified", "failed"):
            runs.add_metric([source, state], by_status.pop((source, state), 0))
    for (source, state), count in sorted(by_status.items()):
        runs.add_metric([source, state], count)
    yield fetched
    yield new
    yield runs

    last_run = GaugeMetricFamily(
        "digest_fetch_last_run_timestamp_seconds",
        "When each source's last fetch finished (Unix time)",
        labels=["source"],
    )
    last_ok = GaugeMetricFamily(
        "digest_fetch_last_success_timestamp_seconds",
        "When each source's last fetch that did not fail finished (Unix time)",
        labels=["source"],
    )
    last_good = GaugeMetricFamily(
        "digest_fetch_last_run_ok", "0 when a source's last fetch failed", labels=["source"]
    )
    for s in reports.last_fetches(session, list(settings.sources.enabled)):
        if s.last_at is not None:
            last_run.add_metric([s.source], s.last_at.timestamp())
            last_good.add_metric([s.source], 0 if s.last_status == "failed" else 1)
        if s.last_ok_at is not None:
            last_ok.add_metric([s.source], s.last_ok_at.timestamp())
    yield last_run
    yield last_ok
    yield last_good


def _deliveries(session: Session, now: datetime) -> Iterator[Metric]:
    every = dict(
        session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    )
    states = GaugeMetricFamily("digest_deliveries", "Digests in each state", labels=["status"])
    for state in (*reports.DELIVERY_STATES, *sorted(set(every) - set(reports.DELIVERY_STATES))):
        states.add_metric([state], every.get(state, 0))
    yield states
    sent = CounterMetricFamily(
        "digest_deliveries_sent", "Digests accepted by the mail server, ever"
    )
    sent.add_metric([], every.get("sent", 0))
    yield sent
    recent = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.planned_at >= now - reports.WINDOW)
            .group_by(Delivery.status)
        ).all()
    )
    window = GaugeMetricFamily(
        "digest_deliveries_recent",
        "Digests planned in the last 24 hours, by state",
        labels=["status"],
    )
    for state in (*reports.DELIVERY_STATES, *sorted(set(recent) - set(reports.DELIVERY_STATES))):
        window.add_metric([state], recent.get(state, 0))
    yield window


def _seconds_between(session: Session, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """``end - start`` in seconds, in SQL, for SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * literal(86400.0)
    return func.extract("epoch", end - start)


def _latency(session: Session, now: datetime) -> Metric:
    """Planned → accepted over the digests sent in the last 24 hours, bucketed in SQL."""
    seconds = _seconds_between(session, Delivery.planned_at, Delivery.sent_at)
    columns = [
        func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0)
        for bound in LATENCY_BUCKETS
    ]
    row = session.execute(
        select(func.count(), func.coalesce(func.sum(seconds), 0.0), *columns).where(
            Delivery.status == "sent", Delivery.sent_at >= now - LATENCY_WINDOW
        )
    ).one()
    count, total, *cumulative = row
    family = GaugeHistogramMetricFamily(
        "digest_send_latency_seconds",
        "Seconds from planning to the mail server's acceptance, over digests sent in the last "
        "24 hours",
    )
    buckets = [(str(float(b)), int(c)) for b, c in zip(LATENCY_BUCKETS, cumulative, strict=True)]
    buckets.append(("+Inf", int(count)))
    family.add_metric([], buckets, gsum_value=max(float(total), 0.0))
    return family


def _queue(session: Session, now: datetime) -> Iterator[Metric]:
    found = reports.queue(session, now)
    depth = GaugeMetricFamily("digest_queue_depth", "Digests waiting to go out now")
    depth.add_metric([], found.depth)
    yield depth
    age = found.age(now)
    oldest = GaugeMetricFamily(
        "digest_queue_oldest_age_seconds",
        "How long the longest-waiting ready digest has waited (0 when none waits)",
    )
    oldest.add_metric([], age.total_seconds() if age else 0.0)
    yield oldest
    flying = GaugeMetricFamily("digest_deliveries_in_flight", "Digests claimed by a live sender")
    flying.add_metric([], found.in_flight)
    yield flying
    held = GaugeMetricFamily(
        "digest_deliveries_held", "Unknown digests held for an operator (unknown_policy = hold)"
    )
    held.add_metric([], found.held)
    yield held


def make_registry(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
) -> CollectorRegistry:
    """A registry holding only our collector (no process metrics: they would describe one
    process of many)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DigestCollector(settings, store, clock))
    return registry


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The scrape's body and content type, in the format the scraper's Accept header asks
    for (Prometheus text 0.0.4 by default, OpenMetrics when preferred), as the library
    negotiates it."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
