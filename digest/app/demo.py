"""`digest demo`: one full cycle on the embedded default: the SQLite file every other
command uses (``database.url``, ``var/digest.db`` by default) made fresh, the bundled sample
listing, three readers, their digests written to the outbox folder. So after the demo,
`digest preview`, `digest status` and `digest web` see its readers, and its mails' links work.

The demo never erases a database holding anybody but its own readers: it refuses, and says
how to run it on a file of its own. It removes only the mail it wrote before."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.app.fetching import FetchSummary
from digest.config import Settings
from digest.domain.items import outbox_name
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.errors import ValidationError
from digest.store import Store, digests, sqlite_file, stored_addresses, subscribers

READERS = [
    (
        "ada@example.org",
        {
            "include": ['"large language model"^2, reasoning, "chain of thought", agents'],
            "exclude": ["survey"],
            "categories": [],
            "authors": [],
        },
        "America/New_York",
        False,
    ),
    (
        "ben@example.org",
        {
            "include": ["diffusion^2, image generation, video, segmentation"],
            "exclude": [],
            "categories": ["cs.CV"],
            "authors": [],
        },
        "Europe/Berlin",
        True,
    ),
    (
        "chen@example.org",
        {"include": [], "exclude": [], "categories": [], "authors": []},
        "Asia/Shanghai",
        False,
    ),
]


def demo_database(base: Settings, given: Path | None) -> Path:
    """The SQLite file the demo runs on: ``given``, else the configured one."""
    if given is not None:
        return given
    found = sqlite_file(base.database.url)
    if found is None:
        raise ValidationError(
            "the demo runs on an SQLite file of its own making, and database.url is not one; "
            "give it one: digest demo --database var/demo.db"
        )
    return found


def refuse_real_subscribers(database: Path) -> None:
    """Raise when ``database`` holds a subscriber who is not one of the demo's readers: the
    demo starts from a fresh file and would erase them."""
    if not database.is_file():
        return
    ours = {email for email, *_ in READERS}
    others = sorted(email for email in stored_addresses(database) if email not in ours)
    if others:
        raise ValidationError(
            f"{database} holds {len(others)} subscriber(s) besides the demo's (e.g. "
            f"{others[0]}); the demo starts from a fresh file and would erase them. Run it "
            "on a file of its own: digest demo --database var/demo.db"
        )


def demo_settings(base: Settings, database: Path) -> Settings:
    """``base`` with the demo's database, migrated, and mail written to files."""
    return base.model_copy(
        update={
            "database": base.database.model_copy(
                update={"url": f"sqlite:///{database}", "migrate": True}
            ),
            "mail": base.mail.model_copy(update={"transport": "file"}),
        }
    )


@dataclass(frozen=True, slots=True)
class DemoRow:
    email: str
    interests: str
    papers: int
    top: str | None
    html: Path


def setup(
    settings: Settings,
    database: Path,
    now: datetime,
    fetch: Callable[[Settings, Store], FetchSummary],
) -> FetchSummary:
    """A fresh database with the bundled sample and the three readers; the outbox folder
    cleared of earlier mail. ``fetch`` fetches the sample (the CLI shows its progress);
    then plan, rank and send as always, and :func:`rows` says what each reader got."""
    refuse_real_subscribers(database)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    outbox_dir = Path(settings.paths.outbox_dir)
    if outbox_dir.is_dir():
        # Only the demo readers' mail: what `digest send` or the web app wrote stays.
        for email, *_ in READERS:
            for old in outbox_dir.glob(f"*_{email}_*"):
                if old.suffix in (".eml", ".html"):
                    old.unlink()
    store = Store.open(settings.database)
    try:
        fetched = fetch(settings, store)
        with store.transaction() as session:
            for email, interests, zone, trending in READERS:
                profile = build_profile(**interests, also_trending=trending)
                schedule = Schedule.checked(zone, 7, max_papers=8)
                subscribers.upsert(session, email, profile, schedule, confirmed=True, now=now)
    finally:
        store.close()
    return fetched


def rows(settings: Settings) -> list[DemoRow]:
    """Each demo digest: its reader, their interests, its top paper, its file."""
    outbox_dir = Path(settings.paths.outbox_dir)
    store = Store.open(settings.database)
    try:
        with store.transaction() as session:
            mailed = digests.mailed(session)
    finally:
        store.close()
    return [
        DemoRow(
            m.email,
            m.profile.describe(),
            m.paper_count,
            m.top_title,
            outbox_dir / f"{outbox_name(m.local_date, m.email, m.public_id)}.html",
        )
        for m in mailed
    ]
