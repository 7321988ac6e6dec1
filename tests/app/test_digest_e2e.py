"""The daily digest end to end: sample papers in, ranked personal mail out over real SMTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from common import fixture_bytes
from smtp_server import Recorder, smtp_server
from sqlalchemy import func, select

from digest.app import digests, fetching, sending
from digest.config import Settings, load_settings
from digest.delivery.mailers import SmtpMailer
from digest.domain.analysis import stems
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import Delivery, DeliveryItem, Paper, SentPaper
from digest.render import Renderer
from digest.store import Store, subscribers

DAY1 = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def smtp() -> Iterator[tuple[str, int, Recorder]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def mail_settings(settings: Settings, smtp: tuple[str, int, Recorder]) -> Settings:
    host, port, _ = smtp
    return load_settings(
        environ={
            "DIGEST_DATABASE__URL": settings.database.url,
            "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
            "DIGEST_MAIL__TRANSPORT": "smtp",
            "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
            "DIGEST_SMTP__HOST": host,
            "DIGEST_SMTP__PORT": str(port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_WEB__BASE_URL": "https://digest.example.org",
            "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
        }
    )


def ingest_sample(settings: Settings, store: Store, now: datetime) -> None:
    [summary] = fetching.fetch(settings, store, ["sample"])
    assert summary.status == "ok"
    # Pretend the sample was first seen at ``now`` (fetch stamps the real time).
    with store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            paper.first_seen_at = now


def add(store: Store, email: str, zone: str = "UTC", hour: int = 7, **interests) -> None:
    also = interests.pop("also_trending", False)
    with store.transaction() as session:
        subscribers.upsert(
            session,
            email,
            build_profile(**interests, also_trending=also),
            Schedule.checked(zone, hour, max_papers=interests.get("max", 8) or 8),
            confirmed=True,
        )


def cycle(settings: Settings, store: Store, now: datetime) -> tuple[object, object]:
    planned = digests.plan_and_rank(settings, store, now)
    mailer = SmtpMailer(settings.smtp)
    try:
        sent = sending.send_ready(
            settings,
            store,
            mailer,
            renderer=Renderer(settings.mail),
            links=SignedLinks(settings.web.base_url, Tokens(settings.web.secret_key)),
            clock=lambda: now,
        )
    finally:
        mailer.close()
    return planned, sent


def delivered(store: Store, email: str, received=None) -> list[Paper]:
    """The papers of ``email``'s latest digest, in order; each checked to be in the mail."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        delivery = session.scalars(
            select(Delivery)
            .where(Delivery.subscriber_id == person.id)
            .order_by(Delivery.local_date.desc())
        ).first()
        papers = session.scalars(
            select(Paper)
            .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
            .where(DeliveryItem.delivery_id == delivery.id)
            .order_by(DeliveryItem.position)
        ).all()
    if received is not None:
        text = " ".join(received.message.get_body(("plain",)).get_content().split())
        for paper in papers:
            assert " ".join(paper.title.split())[:40] in text, paper.title
    return list(papers)


def test_three_subscribers_get_their_own_papers_over_smtp(
    mail_settings: Settings, store: Store, smtp
) -> None:
    _, _, recorder = smtp
    ingest_sample(mail_settings, store, DAY1 - timedelta(hours=2))
    add(store, "llm@example.org", include=['"large language model", reasoning'])
    add(store, "vision@example.org", include=["diffusion, image generation"], exclude=["video"])
    add(store, "Trend@Example.org")  # no topics: the day's trending papers

    planned, sent = cycle(mail_settings, store, DAY1)
    assert (planned.planned, sent.sent, sent.failed) == (3, 3, 0)
    assert len(recorder.messages) == 3

    llm = recorder.to("llm@example.org")[0]
    vision = recorder.to("vision@example.org")[0]
    trend = recorder.to("Trend@example.org")[0]
    for received in (llm, vision, trend):
        message = received.message
        assert not message.defects
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
            assert len(message.get_all(header, [])) == 1, header
        assert message["List-Unsubscribe"].startswith("<https://digest.example.org/unsubscribe/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Message-ID"].endswith("@digest.example.org>")
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert received.sender == "papers@digest.example.org"

    # The right papers: every pick of the LLM reader mentions their words.
    llm_papers = delivered(store, "llm@example.org", llm)
    assert llm_papers
    for paper in llm_papers:
        text_stems = set(stems(paper.title + " " + paper.abstract))
        assert {"reason"} & text_stems or {"larg", "languag", "model"} <= text_stems, paper.title
    vision_papers = delivered(store, "vision@example.org", vision)
    assert vision_papers
    for paper in vision_papers:
        assert "video" not in stems(paper.title + " " + paper.abstract)  # excluded
        assert {"diffus", "imag"} & set(stems(paper.title + " " + paper.abstract))
    # The trending reader gets the most upvoted papers, most first.
    upvotes = [p.hf_upvotes for p in delivered(store, "trend@example.org", trend)]
    assert upvotes and upvotes == sorted(upvotes, reverse=True) and upvotes[0] > 0
    assert {p.id for p in llm_papers} != {p.id for p in vision_papers}

    # A sensible order: stored scores descend within the picks.
    with store.transaction() as session:
        for delivery in session.scalars(select(Delivery)):
            scores = session.scalars(
                select(DeliveryItem.score)
                .where(DeliveryItem.delivery_id == delivery.id, DeliveryItem.section == "picks")
                .order_by(DeliveryItem.position)
            ).all()
            assert list(scores) == sorted(scores, reverse=True)


def test_a_second_day_sends_only_new_papers_and_never_twice_a_day(
    mail_settings: Settings, store: Store, smtp
) -> None:
    _, _, recorder = smtp
    ingest_sample(mail_settings, store, DAY1 - timedelta(hours=2))
    add(store, "reader@example.org", include=["language model, agents, reasoning, benchmark"])

    cycle(mail_settings, store, DAY1)
    cycle(mail_settings, store, DAY1 + timedelta(hours=3))  # same local date: nothing more
    assert len(recorder.messages) == 1
    first = {p.id for p in delivered(store, "reader@example.org", recorder.messages[0])}

    # The next day brings a new Hugging Face listing, served from a recorded response.
    day2 = DAY1 + timedelta(days=1)
    transport = httpx.MockTransport(
        lambda r: httpx.Response(
            200,
            content=fixture_bytes(
                "huggingface/daily_papers_2026-07-16_reserialized_no_ai_summary.json"
            ),
        )
    )
    hf = load_settings(
        environ={
            "DIGEST_DATABASE__URL": mail_settings.database.url,
            "DIGEST_SOURCES__ENABLED": "huggingface",
        }
    )
    fetching.fetch(hf, store, transport=transport)
    with store.transaction() as session:
        new_ids = set()
        for paper in session.scalars(select(Paper)):
            if paper.first_seen_at > DAY1:  # stored by this fetch (the real clock)
                paper.first_seen_at = day2 - timedelta(hours=1)
                new_ids.add(paper.id)
    cycle(mail_settings, store, day2)
    assert len(recorder.messages) == 2
    second = {p.id for p in delivered(store, "reader@example.org", recorder.messages[1])}
    assert second and not (first & second)
    assert second <= new_ids  # only the new day's papers qualify
    with store.transaction() as session:
        sent_ids = session.scalars(select(SentPaper.paper_id)).all()
        assert len(sent_ids) == len(set(sent_ids))  # the sent log has no repeats
        dates = session.scalars(select(Delivery.local_date)).all()
        assert sorted(dates) == [date(2026, 9, 24), date(2026, 9, 25)]


HOSTILE_TITLE = (
    "<script>alert(1)</script>\r\nBcc: victim@example.com\u202e\x00 "
    + "Trending hostile paper "
    + "x" * 10_000
)


def test_hostile_feed_text_renders_harmlessly(mail_settings: Settings, store: Store, smtp) -> None:
    _, _, recorder = smtp
    entries = json.loads(fixture_bytes("huggingface/daily_papers_2026-08-13_reserialized.json"))
    entries[0]["title"] = HOSTILE_TITLE
    entries[0]["paper"]["title"] = HOSTILE_TITLE
    entries[0]["paper"]["summary"] = (
        'Click <a href="javascript:alert(1)">here</a> "><img src=x onerror=alert(1)>'
    )
    entries[0]["paper"]["authors"][0]["name"] = '"><svg onload=alert(1)>'
    entries[0]["paper"]["upvotes"] = 10_000  # make sure it leads the trending digest
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=entries))
    hf = load_settings(
        environ={
            "DIGEST_DATABASE__URL": mail_settings.database.url,
            "DIGEST_SOURCES__ENABLED": "huggingface",
        }
    )
    fetching.fetch(hf, store, transport=transport)
    add(store, "trend@example.org")
    with store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            paper.first_seen_at = DAY1 - timedelta(hours=1)
    cycle(mail_settings, store, DAY1)

    [received] = recorder.messages
    message = received.message
    assert not message.defects
    subject = message["Subject"]
    assert "\n" not in subject and "\r" not in subject and len(subject) <= 140
    assert message.get_all("Bcc") is None
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<script" not in html.lower() and "&lt;script&gt;" in html

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.bad: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in {"script", "svg", "img", "iframe"}:
                self.bad.append(tag)
            for name, value in attrs:
                if name.startswith("on"):
                    self.bad.append(name)
                if name == "href" and not (value or "").startswith(("https://", "http://")):
                    self.bad.append(f"href={value}")

    tags = Tags()
    tags.feed(html)
    assert tags.bad == []
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\u202e]", text)
    assert "Trending hostile paper" in text


def test_one_digest_per_local_date_across_daylight_saving(
    mail_settings: Settings, store: Store
) -> None:
    ingest_sample(mail_settings, store, datetime(2026, 3, 1, tzinfo=UTC))
    zones = {
        "ny@example.org": ("America/New_York", 2),  # 02:00 does not exist on 8 March 2026
        "ny1@example.org": ("America/New_York", 1),  # 01:00 happens twice on 1 November
        "berlin@example.org": ("Europe/Berlin", 2),  # EU changes on 29 March / 25 October
        "sydney@example.org": ("Australia/Sydney", 7),
        "kolkata@example.org": ("Asia/Kolkata", 23),  # half-hour offset
        "utc@example.org": ("UTC", 0),
    }
    for email, (zone, hour) in zones.items():
        add(store, email, zone=zone, hour=hour)
        with store.transaction() as session:
            subscribers.get(session, email).send_when_empty = True

    def ticks(start: datetime, days: int) -> None:
        now = start
        while now < start + timedelta(days=days):
            digests.plan_and_rank(mail_settings, store, now)
            now += timedelta(minutes=20)

    ticks(datetime(2026, 3, 6, tzinfo=UTC), 4)  # US spring forward on 8 March
    ticks(datetime(2026, 3, 27, tzinfo=UTC), 4)  # EU spring forward on 29 March
    ticks(datetime(2026, 10, 30, tzinfo=UTC), 4)  # US fall back on 1 November
    with store.transaction() as session:
        rows = session.execute(
            select(subscribers.Subscriber.email, Delivery.local_date, func.count())
            .join(Delivery)
            .group_by(subscribers.Subscriber.email, Delivery.local_date)
        ).all()
    assert all(count == 1 for _, _, count in rows)
    per_person: dict[str, set[date]] = {}
    for email, local_date, _ in rows:
        per_person.setdefault(email, set()).add(local_date)
    ny = per_person["ny@example.org"]
    assert {date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)} <= ny  # 8 March not skipped
    assert {date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)} <= per_person[
        "ny1@example.org"
    ]
    assert {date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)} <= per_person[
        "berlin@example.org"
    ]
    for email, days in per_person.items():
        # Every local date inside each simulated window is there exactly once.
        assert len(days) >= 9, (email, sorted(days))


def test_a_restart_after_downtime_sends_the_missed_digest_once(
    mail_settings: Settings, store: Store, smtp
) -> None:
    _, _, recorder = smtp
    ingest_sample(mail_settings, store, DAY1 - timedelta(hours=6))
    add(store, "early@example.org", zone="Europe/Berlin", hour=7, include=["language model"])
    # Down from 04:00 to 10:00 UTC: the 07:00 Berlin (05:00 UTC) slot passed while down.
    cycle(mail_settings, store, datetime(2026, 9, 24, 4, 0, tzinfo=UTC))
    assert recorder.messages == []
    cycle(mail_settings, store, datetime(2026, 9, 24, 10, 0, tzinfo=UTC))
    cycle(mail_settings, store, datetime(2026, 9, 24, 10, 1, tzinfo=UTC))
    assert len(recorder.messages) == 1
