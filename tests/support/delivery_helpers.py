"""Shared by the delivery tests: settings for a test SMTP server, many subscribers fast, and
what the outbox holds."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from digest.app import digests, fetching
from digest.config import Settings, load_settings
from digest.domain.items import message_id
from digest.domain.profiles import build_profile
from digest.models import Delivery, Paper, Subscriber
from digest.store import Store


def smtp_settings(base: Settings | str, host: str, port: int, **extra: Any) -> Settings:
    """``base``'s database, mail over SMTP to ``host:port`` in plain text, short timeouts;
    ``extra`` as DIGEST_ variables, e.g. ``DELIVERY__UNKNOWN_POLICY="hold"``."""
    url = base if isinstance(base, str) else base.database.url
    environ = {
        "DIGEST_DATABASE__URL": url,
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
        "DIGEST_SMTP__HOST": host,
        "DIGEST_SMTP__PORT": str(port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_SMTP__CONNECT_TIMEOUT": "2",
        "DIGEST_SMTP__GREETING_TIMEOUT": "2",
        "DIGEST_SMTP__TIMEOUT": "2",
        "DIGEST_SMTP__DATA_TIMEOUT": "2",
        "DIGEST_WEB__BASE_URL": "https://digest.example.org",
        "DIGEST_WEB__SECRET_KEY": "test-secret-key-0123456789",
    }
    if not isinstance(base, str):
        environ["DIGEST_PATHS__VAR_DIR"] = str(base.paths.var_dir)
    environ.update({f"DIGEST_{key}": str(value) for key, value in extra.items()})
    return load_settings(environ=environ)


def fetch_sample(settings: Settings, store: Store, now: datetime) -> None:
    [summary] = fetching.fetch(settings, store, ["sample"])
    assert summary.status == "ok"
    with store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            paper.first_seen_at = now - timedelta(hours=1)


def planned_day(settings: Settings, store: Store, readers: int, now: datetime) -> int:
    """The sample's papers, ``readers`` subscribers without topics, and a digest planned for
    each at ``now``, none ranked (a test ranks or stores the picks itself); how many were
    planned."""
    fetch_sample(settings, store, now)
    add_subscribers(store, readers, now=now)
    stop = threading.Event()
    stop.set()  # plan only
    return digests.plan_and_rank(settings, store, now, stop=stop).planned


def add_subscribers(
    store: Store,
    count: int,
    *,
    zone: str = "UTC",
    hour: int = 0,
    max_papers: int = 2,
    prefix: str = "reader",
    now: datetime | None = None,
    topics: bool = False,
) -> list[str]:
    """``count`` active subscribers with no topics (they get the day's trending papers), or
    with ``topics``, each one of a few keyword profiles (their mail highlights the matches,
    which stems text as it renders)."""
    now = now or datetime.now(UTC)
    profiles = [
        build_profile(include=terms).to_json() if topics else EMPTY_PROFILE for terms in TOPICS
    ]
    rows = []
    for n in range(count):
        email = f"{prefix}{n:05d}@example.org"
        rows.append(
            {
                "public_id": secrets.token_hex(16),
                "email": email,
                "email_key": email,
                "status": "active",
                "timezone": zone,
                "send_hour": hour,
                "frequency": "daily",
                "max_papers": max_papers,
                "send_when_empty": True,
                "profile": profiles[n % len(profiles)],
                "token_version": 1,
                "bounce_count": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    with store.transaction() as session:
        for start in range(0, len(rows), 500):
            session.execute(insert(Subscriber), rows[start : start + 500])
    return [r["email"] for r in rows]


EMPTY_PROFILE = {"include": [], "exclude": [], "categories": [], "authors": []}
TOPICS = [
    ["language models", "reasoning"],
    ["neural architecture search"],
    ["diffusion", "image generation"],
    ["reinforcement learning", "robot"],
    ["vision transformer", "self-supervised"],
    ["graph neural networks", "pruning", "quantization"],
]


def midday_zone(now: datetime | None = None) -> str:
    """An Etc/GMT zone where it is about noon now, so a run never crosses local midnight."""
    now = now or datetime.now(UTC)
    offset = now.hour - 12  # Etc/GMT+N is N hours behind UTC
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{offset:+d}"


def states(store: Store) -> Counter[str]:
    with store.transaction() as session:
        return Counter(session.scalars(select(Delivery.status)))


def message_ids(store: Store) -> dict[str, str]:
    """Each planned delivery's Message-ID, by the subscriber's address."""

    with store.transaction() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.public_id).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
    return {email: message_id(public_id, "papers@digest.example.org") for email, public_id in rows}


def eventually(check: Callable[[], bool], seconds: float = 2.0) -> bool:
    """Whether ``check`` comes true within ``seconds`` (polled every 10 ms)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
