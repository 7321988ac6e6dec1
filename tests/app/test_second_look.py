""" "Worth another look": a paper already sent comes back once, in its own section, when its
code was released, its upvotes tripled past the floor or a new arXiv version appeared."""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from importlib import resources
from pathlib import Path

import pytest
from common import as_read
from sqlalchemy import insert, select

from digest.app import archive, candidates, digests, fetching, sending
from digest.app.services import Services
from digest.config import DatabaseSettings, Settings
from digest.delivery.mailers import FileMailer
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.models import Delivery, DeliveryItem, Feedback, Paper, SentPaper, Subscriber
from digest.render import Renderer
from digest.store import Store, make_engine, second_looks, subscribers

DAY1 = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY2 + timedelta(days=1)
READER = "reader@example.org"
REPO = "https://github.com/example/released"


def fetch_part(settings: Settings, store: Store, folder: Path, part: int, seen: datetime) -> None:
    """A third of the bundled listing, first seen at ``seen``: each day brings new papers."""
    lines = (resources.files("digest") / "data" / "sample" / "listing.jsonl").read_text()
    path = folder / f"part{part}.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines.splitlines()[part::3]))
    sample = settings.sources.sample.model_copy(update={"listing": str(path)})
    sources = settings.sources.model_copy(update={"sample": sample})
    [fetched] = fetching.fetch(settings.model_copy(update={"sources": sources}), store, ["sample"])
    assert fetched.status == "ok" and fetched.new > 50
    with store.transaction() as session:
        for paper in session.scalars(select(Paper).where(Paper.first_seen_at > seen)):
            paper.first_seen_at = seen
            # A known state to compare with: no code, 8 upvotes, the first version.
            paper.github_repo, paper.hf_upvotes, paper.version = None, 8, 1


def add_reader(store: Store, email_address: str = READER, **options: bool) -> None:
    with store.transaction() as session:
        subscribers.upsert(
            session,
            email_address,
            build_profile(**options),  # no topics: the day's trending papers, ten of them
            Schedule.checked("UTC", 7, max_papers=10, send_when_empty=True),
            confirmed=True,
            now=DAY1 - timedelta(days=3),
        )


def cycle(settings: Settings, store: Store, folder: Path, now: datetime) -> None:
    digests.plan_and_rank(settings, store, now)
    sent = sending.send_ready(
        settings,
        store,
        FileMailer(folder / "outbox"),
        renderer=Renderer(settings.mail),
        links=sending.signed_links(settings),
        clock=lambda: now,
    )
    assert sent.failed == 0


@dataclass
class Digest:
    public_id: str
    items: list[tuple[str, str, list[list[str]]]]  # (canonical id, section, reasons)

    def section(self, name: str) -> dict[str, list[str]]:
        return {c: [label for _k, label in why] for c, s, why in self.items if s == name}


def latest(store: Store, email_address: str = READER) -> Digest:
    with store.transaction() as session:
        person = subscribers.get(session, email_address)
        delivery = session.scalars(
            select(Delivery)
            .where(Delivery.subscriber_id == person.id)
            .order_by(Delivery.local_date.desc())
        ).first()
        assert delivery is not None
        rows = session.execute(
            select(Paper.canonical_id, DeliveryItem.section, DeliveryItem.reasons)
            .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
            .where(DeliveryItem.delivery_id == delivery.id)
            .order_by(DeliveryItem.position)
        )
        return Digest(delivery.public_id, [(c, s, list(r)) for c, s, r in rows])


def change(store: Store, canonical_id: str, **now: object) -> None:
    with store.transaction() as session:
        paper = session.scalars(select(Paper).where(Paper.canonical_id == canonical_id)).one()
        for name, value in now.items():
            setattr(paper, name, value)


def set_then(store: Store, canonical_id: str, **then: object) -> None:
    """Rewrites a sent-log row's state then (a case the sample cannot make by itself)."""
    with store.transaction() as session:
        paper_id = session.scalars(select(Paper.id).where(Paper.canonical_id == canonical_id)).one()
        row = session.scalars(select(SentPaper).where(SentPaper.paper_id == paper_id)).one()
        for name, value in then.items():
            setattr(row, name, value)


def mail_of(folder: Path, public_id: str) -> EmailMessage:
    [path] = [p for p in (folder / "outbox").glob("*.eml") if public_id[:8] in p.name]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
def day1(settings: Settings, store: Store, tmp_path: Path) -> list[str]:
    """The reader's first digest, sent: ten papers, all with no code, 8 upvotes, v1 then."""
    fetch_part(settings, store, tmp_path, 0, DAY1 - timedelta(hours=2))
    add_reader(store)
    cycle(settings, store, tmp_path, DAY1)
    first = latest(store)
    assert len(first.items) == 10 and not first.section("revisit")
    return [c for c, _s, _r in first.items]


def news_on(settings: Settings, store: Store, tmp_path: Path, sent: list[str]) -> None:
    """Day two: new papers, and news about six of the papers sent on day one."""
    fetch_part(settings, store, tmp_path, 1, DAY2 - timedelta(hours=2))
    code, votes, version, few, slow, none = sent[:6]
    change(store, code, github_repo=REPO)
    change(store, votes, hf_upvotes=31)
    change(store, version, version=2)
    change(store, few, hf_upvotes=15)  # tripled from 5, but under the floor of 20
    set_then(store, few, upvotes_then=5)
    change(store, slow, hf_upvotes=30)  # past the floor, but only 2.5 times 12
    set_then(store, slow, upvotes_then=12)
    change(store, none, github_repo=REPO)  # code now, but its state then is unknown
    set_then(store, none, upvotes_then=None, code_then=None, version_then=None)


def test_the_state_then_is_recorded_with_the_sent_log(store: Store, day1: list[str]) -> None:
    with store.transaction() as session:
        rows = session.scalars(select(SentPaper)).all()
    assert len(rows) == 10
    assert {(r.upvotes_then, r.code_then, r.version_then) for r in rows} == {(8, False, 1)}
    assert all(r.second_look_delivery_id is None for r in rows)


def test_each_kind_of_news_brings_a_paper_back_once(
    settings: Settings, store: Store, tmp_path: Path, day1: list[str]
) -> None:
    news_on(settings, store, tmp_path, day1)
    code, votes, version = day1[:3]
    preview = candidates.for_reader(settings, store, READER, DAY2)
    cycle(settings, store, tmp_path, DAY2)
    second = latest(store)
    # Strongest news first; after the picks (no "also trending" for this reader).
    assert second.section("revisit") == {
        code: ["Code released"],
        version: ["New version v2"],
        votes: ["Upvotes 8 → 31"],
    }
    assert [s for _c, s, _r in second.items][-3:] == ["revisit"] * 3
    assert len({c for c, _s, _r in second.items}) == len(second.items)  # each paper once
    assert not set(second.section("picks")) & set(day1)  # the picks stay new papers
    # The preview (and so the dry run) chose the same, in the same order.
    assert [card.canonical_id for _i, card in preview.items] == [c for c, _s, _r in second.items]

    # Day three: new news about the same papers brings none of them back again.
    fetch_part(settings, store, tmp_path, 2, DAY3 - timedelta(hours=2))
    change(store, code, version=3, hf_upvotes=90)
    change(store, day1[6], github_repo=REPO)
    cycle(settings, store, tmp_path, DAY3)
    assert latest(store).section("revisit") == {day1[6]: ["Code released"]}


def test_the_section_renders_in_html_text_and_the_archive(
    settings: Settings, store: Store, tmp_path: Path, day1: list[str]
) -> None:
    news_on(settings, store, tmp_path, day1)
    cycle(settings, store, tmp_path, DAY2)
    second = latest(store)
    message = mail_of(tmp_path, second.public_id)
    html = as_read(message.get_body(("html",)).get_content())
    plain = message.get_body(("plain",)).get_content()
    assert "Worth another look" in html and "WORTH ANOTHER LOOK" in plain
    for reason in ("Code released", "New version v2", "Upvotes 8 → 31"):
        assert f"Why:</span> {reason}" in html
        assert f"Why: {reason}" in plain
    assert "3 worth another look" in html
    # The section comes after every pick: its cards are numbered on from them.
    picks = len(second.section("picks"))
    heading = plain.index("WORTH ANOTHER LOOK")
    assert plain.rindex(f"\n{picks}. ", 0, heading) < heading < plain.index(f"\n{picks + 1}. ")
    assert REPO in html  # the released code is linked

    services = Services.make(settings, store, clock=lambda: DAY2)
    token = services.links.archive(second.public_id).rsplit("/", 1)[1]
    page = archive.page(services, token)
    assert page is not None
    assert "Worth another look" in page and "Why:</span> Code released" in page


def test_a_reader_can_turn_the_section_off(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    fetch_part(settings, store, tmp_path, 0, DAY1 - timedelta(hours=2))
    add_reader(store, second_look=False)
    cycle(settings, store, tmp_path, DAY1)
    sent = [c for c, _s, _r in latest(store).items]
    news_on(settings, store, tmp_path, sent)
    cycle(settings, store, tmp_path, DAY2)
    second = latest(store)
    assert second.items and not second.section("revisit")
    assert "Worth another look" not in mail_of(tmp_path, second.public_id).as_string()


def test_a_paper_comes_back_only_with_a_digest_that_goes_out_anyway(
    settings: Settings, store: Store, tmp_path: Path, day1: list[str]
) -> None:
    with store.transaction() as session:
        person = subscribers.get(session, READER)
        person.send_when_empty = False
    change(store, day1[0], github_repo=REPO)  # news, but no new paper on day two
    cycle(settings, store, tmp_path, DAY2)
    with store.transaction() as session:
        skipped = session.scalars(select(Delivery).order_by(Delivery.id.desc())).first()
        assert skipped is not None and skipped.status == "skipped"
    # Still waiting for the next digest that goes out.
    fetch_part(settings, store, tmp_path, 1, DAY3 - timedelta(hours=2))
    cycle(settings, store, tmp_path, DAY3)
    assert latest(store).section("revisit") == {day1[0]: ["Code released"]}


def test_papers_sent_long_ago_or_disliked_do_not_come_back(
    settings: Settings, store: Store, tmp_path: Path, day1: list[str]
) -> None:
    news_on(settings, store, tmp_path, day1)
    with store.transaction() as session:
        person = subscribers.get(session, READER)
        version_id = session.scalars(select(Paper.id).where(Paper.canonical_id == day1[2])).one()
        session.add(
            Feedback(subscriber_id=person.id, paper_id=version_id, value=-1, created_at=DAY2)
        )
        found = second_looks.candidates(session, [person.id], DAY2 - timedelta(days=60), 20)
        later = second_looks.candidates(session, [person.id], DAY1 + timedelta(hours=1), 20)
        ids = {i: c for i, c in session.execute(select(Paper.id, Paper.canonical_id))}
    # Only changed papers are loaded: released code and tripled upvotes; not the new version
    # ("fewer like this"), nor too few or too slow upvotes, nor the state then unknown.
    assert {ids[c.paper_id] for c in found[person.id]} == {day1[0], day1[1]}
    assert not later  # all sent before the window


# -- the migration ---------------------------------------------------------------------------


def _upgrade_with_data(url: str) -> Iterator[Store]:
    """0007 with a digest sent, then upgraded: the row logged before has no state then."""
    store = Store(make_engine(url))
    store.upgrade("0007")
    with store.engine.begin() as connection:
        [paper_id] = connection.execute(
            insert(Paper.__table__).returning(Paper.__table__.c.id),
            {
                "canonical_id": "2409.00001",
                "arxiv_id": "2409.00001",
                "title_key": "k",
                "version": 1,
                "title": "A paper",
                "abstract": "",
                "authors": [],
                "categories": [],
                "first_seen_at": DAY1,
                "last_seen_at": DAY1,
                "hf_upvotes": 8,
                "sources": ["arxiv_api"],
                "text_source": "arxiv_api",
            },
        ).one()
        # Core inserts name only the columns given: those 0007 has.
        [subscriber_id] = connection.execute(
            insert(Subscriber.__table__).returning(Subscriber.__table__.c.id),
            {
                "public_id": "p1",
                "email": "old@example.org",
                "email_key": "old@example.org",
                "status": "active",
                "timezone": "UTC",
                "send_hour": 7,
                "created_at": DAY1,
                "updated_at": DAY1,
            },
        ).one()
        [delivery_id] = connection.execute(
            insert(Delivery.__table__).returning(Delivery.__table__.c.id),
            {
                "public_id": "d1",
                "subscriber_id": subscriber_id,
                "local_date": DAY1.date(),
                "since": DAY1,
                "ranked_at": DAY1,
                "paper_count": 1,
                "status": "sent",
                "planned_at": DAY1,
                "sent_at": DAY1,
            },
        ).one()
        connection.execute(
            insert(SentPaper.__table__),
            {"subscriber_id": subscriber_id, "paper_id": paper_id, "delivery_id": delivery_id},
        )
    assert store.upgrade() == ["0008"]
    yield store
    store.close()


def _check_upgraded(store: Store) -> None:
    with store.transaction() as session:
        [row] = session.scalars(select(SentPaper)).all()
        assert (row.upvotes_then, row.code_then, row.version_then) == (None, None, None)
        assert row.second_look_delivery_id is None
        paper = session.get(Paper, row.paper_id)
        assert paper is not None
        paper.github_repo, paper.hf_upvotes, paper.version = REPO, 500, 4  # every kind of news
    with store.transaction() as session:
        since = DAY1 - timedelta(days=1)
        assert second_looks.candidates(session, [row.subscriber_id], since, 0) == {}


def test_the_migration_keeps_rows_logged_before_out_on_sqlite(tmp_path: Path) -> None:
    for store in _upgrade_with_data(f"sqlite:///{tmp_path / 'old.db'}"):
        _check_upgraded(store)


def test_the_migration_on_postgresql(postgres_url: str) -> None:
    for store in _upgrade_with_data(postgres_url):
        _check_upgraded(store)
    Store.open(DatabaseSettings(url=postgres_url)).close()  # up to date: opens as is
