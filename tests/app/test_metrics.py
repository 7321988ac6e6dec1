"""`/metrics`: Prometheus text read from the database at each scrape, after a real fetch,
plan and send (over a real SMTP exchange), in process through httpx.ASGITransport."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cli_support import run_cli
from delivery_helpers import add_subscribers, smtp_settings
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from scripted_smtp import Script, scripted_smtp

from digest.app import digests, fetching, sending
from digest.config import Settings, load_settings
from digest.delivery.sender import SendSummary
from digest.domain.tokens import SignedLinks, Tokens
from digest.store import Store, make_engine
from digest.web import create_app

SECRET = "test-secret-key-0123456789"


def scrape(app, ip: str = "127.0.0.1", **headers: str) -> httpx.Response:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/metrics", headers=headers)

    return asyncio.run(get())


def samples(response: httpx.Response) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def send(settings: Settings, store: Store) -> SendSummary:
    links = SignedLinks(settings.web.base_url, Tokens(SECRET))
    return sending.send_all(settings, store, links=links)


@pytest.fixture
def day(settings: Settings, store: Store):
    """A day's work: the sample fetched, Hugging Face failing, three readers planned 100 s
    ago; the mail server refuses one of them with a 550 and takes the other two."""
    refuse = "reader00001@example.org"
    script = Script(
        rcpt=lambda address, count: (
            f"550 5.1.1 <{address}>: Recipient unknown" if address == refuse else "250 2.1.5 Ok"
        )
    )
    with scripted_smtp(script) as server:
        mail = smtp_settings(settings, server.host, server.port)
        [fetched] = fetching.fetch(mail, store, ["sample"])
        hf = mail.model_copy(update={"http": mail.http.model_copy(update={"retries": 0})})
        [failed] = fetching.fetch(
            hf, store, ["huggingface"], transport=httpx.MockTransport(lambda r: httpx.Response(503))
        )
        assert failed.status == "failed"
        add_subscribers(store, 3)
        planned_at = datetime.now(UTC) - timedelta(seconds=100)
        digests.plan_and_rank(mail, store, planned_at, for_date=planned_at.date())
        outcome = send(mail, store)
        assert (outcome.sent, outcome.failed) == (2, 1)
        yield mail, fetched, planned_at.date()


def test_metrics_after_a_real_fetch_plan_and_send(day, store: Store) -> None:
    settings, fetched, _ = day
    response = scrape(create_app(settings, store))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response)
    assert value(found, "digest_up") == 1
    # Papers by source, and each source's last fetch.
    assert value(found, "digest_papers") == fetched.new
    assert value(found, "digest_papers_fetched_total", source="sample") == fetched.fetched
    assert value(found, "digest_papers_new_total", source="sample") == fetched.new
    assert value(found, "digest_papers_fetched_total", source="huggingface") == 0
    assert value(found, "digest_fetch_runs_total", source="sample", status="ok") == 1
    assert value(found, "digest_fetch_runs_total", source="huggingface", status="failed") == 1
    assert value(found, "digest_fetch_last_run_ok", source="sample") == 1
    assert value(found, "digest_fetch_last_run_ok", source="huggingface") == 0
    last_ok = value(found, "digest_fetch_last_success_timestamp_seconds", source="sample")
    assert abs(last_ok - datetime.now(UTC).timestamp()) < 60
    assert ("digest_fetch_last_success_timestamp_seconds", (("source", "huggingface"),)) not in (
        found
    )
    # Digests by outcome.
    assert value(found, "digest_deliveries", status="sent") == 2
    assert value(found, "digest_deliveries", status="failed") == 1
    assert value(found, "digest_deliveries", status="planned") == 0
    assert value(found, "digest_deliveries_sent_total") == 2
    assert value(found, "digest_deliveries_recent", status="failed") == 1
    # Send latency: planned 100 s before the two accepted sends.
    assert value(found, "digest_send_latency_seconds_bucket", le="60.0") == 0
    assert value(found, "digest_send_latency_seconds_bucket", le="120.0") == 2
    assert value(found, "digest_send_latency_seconds_bucket", le="+Inf") == 2
    assert value(found, "digest_send_latency_seconds_gcount") == 2
    assert 200 <= value(found, "digest_send_latency_seconds_gsum") < 240
    # The queue is empty; the subscribers are all still active (one 550 is not a bounce limit).
    assert value(found, "digest_queue_depth") == 0
    assert value(found, "digest_queue_oldest_age_seconds") == 0
    assert value(found, "digest_subscribers", status="active") == 3
    assert value(found, "digest_subscribers", status="bounced") == 0
    # Nothing names a subscriber.
    assert "example.org" not in response.text


def test_the_queue_and_other_processes_show_at_the_next_scrape(
    day, store: Store, tmp_path: Path
) -> None:
    settings, _, today = day
    app = create_app(settings, store)
    add_subscribers(store, 2, prefix="late")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    # The day the others were planned for (an hour ago may be yesterday, just after 00:00).
    digests.plan_and_rank(settings, store, an_hour_ago, for_date=today)
    found = samples(scrape(app))
    assert value(found, "digest_queue_depth") == 2
    assert 3500 < value(found, "digest_queue_oldest_age_seconds") < 3700
    # Another process sends them (a worker elsewhere): the same app's next scrape knows.
    done = run_cli(
        tmp_path,
        "worker",
        "--once",
        DIGEST_DATABASE__URL=settings.database.url,
        DIGEST_PATHS__VAR_DIR=str(settings.paths.var_dir),
        DIGEST_PATHS__OUTBOX_DIR=str(tmp_path / "outbox"),
        DIGEST_WEB__SECRET_KEY=SECRET,
        DIGEST_DELIVERY__PROCESSES="1",
    )
    assert done.returncode == 0, done.stderr
    found = samples(scrape(app))
    assert value(found, "digest_queue_depth") == 0
    assert value(found, "digest_deliveries", status="sent") == 4
    assert value(found, "digest_deliveries_sent_total") == 4
    assert value(found, "digest_subscribers", status="active") == 5


def test_openmetrics_when_the_scraper_prefers_it(day, store: Store) -> None:
    settings, _, _ = day
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = scrape(create_app(settings, store), accept=accept)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in openmetrics_families(response.text)
        for s in family.samples
    }
    assert value(found, "digest_deliveries", status="sent") == 2
    assert value(found, "digest_send_latency_seconds_gcount") == 2


def test_who_may_read_the_metrics(settings: Settings, store: Store) -> None:
    open_app = create_app(settings, store)
    assert scrape(open_app, "127.0.0.1").status_code == 200
    assert scrape(open_app, "10.1.2.3").status_code == 200  # a compose network, a LAN
    assert scrape(open_app, "93.184.216.34").status_code == 404  # the internet
    # Through a proxy nobody declared, the peer's private address proves nothing.
    relayed = {"x-forwarded-for": "93.184.216.34"}
    assert scrape(open_app, "127.0.0.1", **relayed).status_code == 404
    proxied = create_app(_with(settings, WEB__BEHIND_PROXY="true"), store)
    assert scrape(proxied, "127.0.0.1", **relayed).status_code == 404
    assert scrape(proxied, "127.0.0.1", **{"x-forwarded-for": "10.0.0.5"}).status_code == 200
    token = "metrics-token-0123456789"
    locked = create_app(_with(settings, METRICS__TOKEN=token), store)
    assert scrape(locked, "93.184.216.34", authorization=f"Bearer {token}").status_code == 200
    assert scrape(locked, "127.0.0.1").status_code == 404  # a token, once set, is required
    assert scrape(locked, "93.184.216.34", authorization="Bearer wrong").status_code == 404
    off = create_app(_with(settings, METRICS__ENABLED="false"), store)
    assert scrape(off, "127.0.0.1").status_code == 404


def test_a_database_that_is_away_is_reported_not_raised(settings: Settings, store: Store) -> None:
    app = create_app(settings, store)
    app.state.web.store = Store(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    response = scrape(app)
    assert response.status_code == 200
    found = samples(response)
    assert value(found, "digest_up") == 0
    assert not any(name == "digest_queue_depth" for name, _ in found)


def _with(settings: Settings, **extra: str) -> Settings:
    environ = {
        "DIGEST_DATABASE__URL": settings.database.url,
        "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
    }
    environ.update({f"DIGEST_{k}": v for k, v in extra.items()})
    return load_settings(environ=environ)


@pytest.mark.postgres
def test_metrics_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "DIGEST_DATABASE__URL": postgres_url,
            "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
            "DIGEST_PATHS__OUTBOX_DIR": str(tmp_path / "var" / "outbox"),
        }
    )
    store = Store.open(settings.database)
    try:
        [fetched] = fetching.fetch(settings, store, ["sample"])
        add_subscribers(store, 2)
        planned_at = datetime.now(UTC) - timedelta(seconds=100)
        digests.plan_and_rank(settings, store, planned_at, for_date=planned_at.date())
        assert send(settings, store).sent == 2
        found = samples(scrape(create_app(settings, store)))
        assert value(found, "digest_up") == 1
        assert value(found, "digest_papers_new_total", source="sample") == fetched.new
        assert value(found, "digest_deliveries", status="sent") == 2
        assert value(found, "digest_send_latency_seconds_bucket", le="60.0") == 0
        assert value(found, "digest_send_latency_seconds_bucket", le="120.0") == 2
        assert 200 <= value(found, "digest_send_latency_seconds_gsum") < 240
        assert value(found, "digest_subscribers", status="active") == 2
    finally:
        store.close()
