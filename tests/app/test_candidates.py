"""One selection of candidates: what is sent, `digest preview`, `send --dry-run` and the web's
live preview of a reader's next digest are the same papers, for the same reader and moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.app import candidates, digests, fetching
from digest.app.candidates import LivePreviews
from digest.config import Settings
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.models import Delivery, DeliveryItem, Feedback, Paper
from digest.store import Store, subscribers

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
READERS = {
    "new@example.org": ["language models", "reasoning"],
    "back@example.org": ["diffusion", "image generation", "video", "vision transformer"],
    "judge@example.org": ["neural architecture search"],
}


def fetch_half(settings: Settings, store: Store, folder: Path, half: int, seen: datetime) -> None:
    """Every other paper of the bundled listing, first seen at ``seen``."""
    lines = (resources.files("digest") / "data" / "sample" / "listing.jsonl").read_text()
    path = folder / f"half{half}.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines.splitlines()[half::2]))
    sample = settings.sources.sample.model_copy(update={"listing": str(path)})
    sources = settings.sources.model_copy(update={"sample": sample})
    [fetched] = fetching.fetch(settings.model_copy(update={"sources": sources}), store, ["sample"])
    assert fetched.status == "ok" and fetched.new > 100
    with store.transaction() as session:
        for paper in session.scalars(select(Paper).where(Paper.first_seen_at > seen)):
            paper.first_seen_at = seen


@pytest.fixture
def history(settings: Settings, store: Store, tmp_path: Path) -> Settings:
    """Half the sample's papers first seen 30 hours ago, the other half an hour ago; three
    readers, two of whom got a digest 20 hours ago (before the second half came), and one
    of those has since liked a new paper."""
    earlier = NOW - timedelta(hours=20)
    fetch_half(settings, store, tmp_path, 0, NOW - timedelta(hours=30))
    with store.transaction() as session:
        for email, terms in READERS.items():
            subscribers.upsert(
                session,
                email,
                build_profile(include=terms),
                Schedule.checked("UTC", 0, max_papers=8),
                confirmed=True,
                now=NOW - timedelta(days=3),
            )
        ids = [subscribers.get(session, e).id for e in ("back@example.org", "judge@example.org")]
    assert digests.plan_and_rank(settings, store, earlier, only=ids).planned == 2
    fetch_half(settings, store, tmp_path, 1, NOW - timedelta(hours=1))
    with store.transaction() as session:
        judge = subscribers.get(session, "judge@example.org")
        liked = session.scalars(
            select(Paper).where(Paper.first_seen_at == NOW - timedelta(hours=1))
        ).first()
        assert liked is not None
        session.add(Feedback(subscriber_id=judge.id, paper_id=liked.id, value=1, created_at=NOW))
    return settings


def picked(items: candidates.Picks) -> list[str]:
    return [card.canonical_id for _item, card in items]


def test_sending_previews_dry_runs_and_the_web_agree(history: Settings, store: Store) -> None:
    settings = history
    previews = {email: candidates.for_reader(settings, store, email, NOW) for email in READERS}
    dry = {
        email: picked(shown.items)
        for email, _day, shown in digests.dry_run(settings, store, NOW).due
    }
    live = LivePreviews(settings, store)
    web = {}
    for email in READERS:
        with store.transaction() as session:
            person = subscribers.get(session, email)
            profile, limit = subscribers.profile_of(person), person.max_papers
        web[email] = picked(live.subscriber(email, profile, limit, NOW)[0])
    # What is then sent: planned and ranked at the same moment.
    assert digests.plan_and_rank(settings, store, NOW).planned == 3
    sent = {}
    with store.transaction() as session:
        for email in READERS:
            person = subscribers.get(session, email)
            delivery = session.scalars(
                select(Delivery)
                .where(Delivery.subscriber_id == person.id)
                .order_by(Delivery.planned_at.desc())
            ).first()
            sent[email] = list(
                session.scalars(
                    select(Paper.canonical_id)
                    .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
                    .where(DeliveryItem.delivery_id == delivery.id)
                    .order_by(DeliveryItem.position)
                )
            )
    for email in READERS:
        expected = sent[email]
        assert len(expected) >= 3, f"{email} got {len(expected)}: the test would prove little"
        assert picked(previews[email].items) == expected, email
        assert dry[email] == expected, email
        assert web[email] == expected, email
    # The windows differ as they should: a returning reader sees only what is new to them.
    back = previews["back@example.org"]
    assert back.since == NOW - timedelta(hours=20)
    with store.transaction() as session:
        old = set(
            session.scalars(
                select(Paper.canonical_id).where(Paper.first_seen_at < NOW - timedelta(hours=2))
            )
        )
    assert not set(sent["back@example.org"]) & old
    assert previews["new@example.org"].since == NOW - candidates.first_window(settings)


def test_previews_write_nothing(history: Settings, store: Store) -> None:
    def counts() -> tuple[int, int]:
        with store.transaction() as session:
            return (
                len(session.scalars(select(Delivery)).all()),
                len(session.scalars(select(DeliveryItem)).all()),
            )

    before = counts()
    candidates.for_reader(history, store, "new@example.org", NOW)
    candidates.for_profile(
        history, store, build_profile(include=["agents"]), limit=5, now=NOW, since=None
    )
    digests.dry_run(history, store, NOW)
    assert counts() == before
