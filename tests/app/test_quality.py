"""`digest quality`: a seeded history (readers, digests sent, skipped and sent empty on two
days, feedback, an unsubscribe, a bounce, and digests older than the window), its figures
worked out by hand; the JSON shape; the CLI's table; the gauges on /metrics.

Readers, feedback, the unsubscribe and the bounce go through the store's own functions;
the deliveries are written as rows (planning several past days through the pipeline would
need a paper feed per day, and the figures read only the rows' state, time and count)."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
from cli_support import run_cli
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from digest.app import fetching, quality
from digest.config import Settings
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.models import Delivery, Paper, Subscriber
from digest.store import Store, bounces, feedback, subscribers
from digest.web import create_app

TODAY = date(2026, 9, 24)
NOW = datetime.combine(TODAY, time(12, 0), tzinfo=UTC)


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def seed(settings: Settings, store: Store, today: date) -> None:
    """Two days ago (d0) and yesterday (d1):

    d0: ada sent 3 papers (likes #1, dislikes #2), bob sent 2 (dislikes #4), cy skipped.
    d1: ada sent 2 (likes #6), bob sent an empty digest and it bounced (hard), dan sent 1
        and unsubscribed.
    40 days ago: ada sent 4 papers and liked one: outside the window.
    """
    assert fetching.fetch(settings, store, ["sample"])[0].status == "ok"
    d0, d1, old = today - timedelta(days=2), today - timedelta(days=1), today - timedelta(40)
    with store.transaction() as session:
        people: dict[str, Subscriber] = {}
        for name in ("ada", "bob", "cy", "dan"):
            people[name], _ = subscribers.upsert(
                session,
                f"{name}@example.org",
                build_profile(include=["language model"]),
                Schedule.checked("UTC", 7),
                confirmed=True,
                now=at(old, 6),
            )
        paper = list(session.scalars(select(Paper).order_by(Paper.id).limit(10)))

        def digest(who: str, day: date, count: int, status: str = "sent") -> int:
            row = Delivery(
                public_id=secrets.token_hex(16),
                subscriber_id=people[who].id,
                local_date=day,
                since=at(day, 0),
                status=status,
                planned_at=at(day, 6),
                ranked_at=at(day, 6),
                paper_count=count,
                sent_at=at(day, 7) if status == "sent" else None,
            )
            session.add(row)
            session.flush()
            return row.id

        ada0, bob0 = digest("ada", d0, 3), digest("bob", d0, 2)
        digest("cy", d0, 0, "skipped")
        ada1, bob1 = digest("ada", d1, 2), digest("bob", d1, 0)
        digest("dan", d1, 1)
        ada_old = digest("ada", old, 4)

        def judge(who: str, n: int, value: int, delivery: int, day: date) -> None:
            feedback.record(session, people[who], paper[n], value, at(day, 9), delivery)

        judge("ada", 1, 1, ada0, d0)
        judge("ada", 2, -1, ada0, d0)
        judge("bob", 4, -1, bob0, d0)
        judge("ada", 6, 1, ada1, d1)
        judge("ada", 9, 1, ada_old, old)
        subscribers.unsubscribe(people["dan"], at(d1, 12))
        outcome = bounces.record(
            session,
            settings.delivery,
            subscriber_id=people["bob"].id,
            delivery_id=bob1,
            kind="hard",
            status="5.1.1",
            diagnostic="no such user",
            now=at(d1, 10),
        )
        assert outcome != "duplicate"


@pytest.fixture
def seeded(settings: Settings, store: Store) -> Store:
    seed(settings, store, TODAY)
    return store


def test_the_figures_by_hand(seeded: Store) -> None:
    found = quality.report(seeded, NOW, 30)
    assert len(found.rows) == 30 and found.rows[-1].day == TODAY
    assert found.rows[0].day == TODAY - timedelta(days=29)
    by_day = {row.day: quality.figures(row) for row in found.rows}
    d0 = by_day[TODAY - timedelta(days=2)]
    assert d0 == {
        "day": "2026-09-22",
        "sent": 2,
        "picks": 5,
        "liked": 1,
        "disliked": 2,
        "liked_ratio": 1 / 5,
        "disliked_ratio": 2 / 5,
        "empty": 1,
        "skipped": 1,
        "empty_ratio": 1 / 3,
        "unsubscribes": 0,
        "unsubscribes_per_1000": 0.0,
        "bounces": 0,
        "bounces_per_1000": 0.0,
    }
    d1 = by_day[TODAY - timedelta(days=1)]
    assert (d1["sent"], d1["picks"], d1["liked"], d1["disliked"]) == (3, 3, 1, 0)
    assert d1["empty"] == 1 and d1["skipped"] == 0 and d1["empty_ratio"] == 1 / 3
    assert d1["unsubscribes_per_1000"] == pytest.approx(1000 / 3)
    assert d1["bounces_per_1000"] == pytest.approx(1000 / 3)
    today = by_day[TODAY]
    assert today["sent"] == 0 and today["liked_ratio"] is None and today["empty_ratio"] is None
    assert today["unsubscribes_per_1000"] is None

    total = quality.figures(found.total)
    assert total["day"] is None
    assert (total["sent"], total["picks"], total["liked"], total["disliked"]) == (5, 8, 2, 2)
    assert total["liked_ratio"] == 0.25 and total["disliked_ratio"] == 0.25
    assert total["empty"] == 2 and total["empty_ratio"] == 2 / 6
    assert total["unsubscribes_per_1000"] == 200.0 and total["bounces_per_1000"] == 200.0
    # ada liked, dan left, cy got nothing sent: only bob.
    assert found.unpraised == 1 and found.unpraised_addresses is None
    assert quality.report(seeded, NOW, 30, listed=True).unpraised_addresses == ["bob@example.org"]


def test_a_shorter_window_drops_the_older_day(seeded: Store) -> None:
    found = quality.report(seeded, NOW, 2)
    assert [row.day for row in found.rows] == [TODAY - timedelta(days=1), TODAY]
    assert (found.total.sent, found.total.picks, found.total.skipped) == (3, 3, 0)


def test_json_shape(seeded: Store) -> None:
    data = quality.report(seeded, NOW, 30, listed=True).as_json()
    assert set(data) == {
        "now",
        "days",
        "since",
        "total",
        "readers_without_positive_feedback",
        "readers_without_positive_feedback_list",
        "per_day",
    }
    assert data["days"] == 30 and data["since"] == "2026-08-26"
    assert len(data["per_day"]) == 30 and set(data["per_day"][0]) == set(data["total"])
    json.dumps(data)  # plain JSON throughout


def test_the_cli(settings: Settings, store: Store, tmp_path) -> None:
    today = datetime.now(UTC).date()
    seed(settings, store, today)
    env = {
        "DIGEST_DATABASE__URL": settings.database.url,
        "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
    }
    done = run_cli(tmp_path, "quality", "--json", **env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["total"]["sent"] == 5 and data["total"]["liked_ratio"] == 0.25
    assert data["readers_without_positive_feedback"] == 1
    assert "readers_without_positive_feedback_list" not in data
    table = run_cli(tmp_path, "quality", "--days", "7", "--list", **env)
    assert table.returncode == 0, table.stderr
    assert "25.0%" in table.stdout and "200.0" in table.stdout and "33.3%" in table.stdout
    assert "1 active reader(s)" in table.stdout and "bob@example.org" in table.stdout
    assert run_cli(tmp_path, "quality", "--days", "0", **env).returncode == 2


def test_metrics_show_the_gauges(settings: Settings, store: Store) -> None:
    seed(settings, store, datetime.now(UTC).date())

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings, store), client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/metrics")

    answer = asyncio.run(get())
    assert answer.status_code == 200
    found = {
        s.name: s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert found["digest_quality_liked_ratio"] == 0.25
    assert found["digest_quality_disliked_ratio"] == 0.25
    assert found["digest_quality_empty_ratio"] == pytest.approx(1 / 3)
    assert found["digest_quality_unsubscribes_per_1000"] == 200.0
    assert found["digest_quality_bounces_per_1000"] == 200.0
    assert found["digest_quality_readers_without_positive_feedback"] == 1


@pytest.mark.postgres
def test_postgresql_gives_the_same_figures(
    settings: Settings, seeded: Store, postgres_url: str
) -> None:
    # The per-day grouping is written per dialect (UTC dates); both must agree.
    database = settings.database.model_copy(update={"url": postgres_url})
    on_postgres = settings.model_copy(update={"database": database})
    store = Store.open(on_postgres.database)
    try:
        seed(on_postgres, store, TODAY)
        found = quality.report(store, NOW, 30, listed=True).as_json()
    finally:
        store.close()
    assert found == quality.report(seeded, NOW, 30, listed=True).as_json()
    assert found["total"]["sent"] == 5
