"""The store: migrations on an empty database, re-applied as a no-op, pending ones refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from digest.config import DatabaseSettings
from digest.errors import StoreError
from digest.store import Store, make_engine

TABLES = {"papers", "fetch_runs", "http_validators", "alembic_version"}


def test_migrations_apply_to_an_empty_database_and_again_as_a_no_op(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'fresh.db'}"))
    assert store.current_revision() is None
    assert store.pending_migrations()  # everything is pending on an empty file
    applied = store.upgrade()
    assert applied[0] == "0001" and applied == sorted(applied)
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    assert store.pending_migrations() == []
    assert store.upgrade() == []  # a second run changes nothing
    store.close()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = Store.open(DatabaseSettings(url=f"sqlite:///{tmp_path / 'w.db'}", busy_timeout_ms=1234))
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1234
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()


def test_the_sqlite_folder_is_made(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "digest.db"
    Store.open(DatabaseSettings(url=f"sqlite:///{target}")).close()
    assert target.is_file()


def test_pending_migrations_are_refused_when_migrate_is_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(StoreError, match=r"behind by \d+ migration.*digest db upgrade"):
        Store.open(DatabaseSettings(url=url, migrate=False))
    Store.open(DatabaseSettings(url=url)).close()  # migrate on: applies them
    Store.open(DatabaseSettings(url=url, migrate=False)).close()  # now up to date


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such.db'}"
    engine = make_engine(url)
    (tmp_path / "no").rmdir()  # make_engine made the folder; take it away again
    with pytest.raises(StoreError, match="cannot use the database at sqlite:///"):
        Store(engine).current_revision()


def test_a_url_that_is_not_a_url(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        make_engine("not a url at all")


def test_postgresql_migrations(postgres_url: str) -> None:
    store = Store.open(DatabaseSettings(url=postgres_url))
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    assert store.upgrade() == []
    store.close()


def test_the_migrations_build_the_tables_the_models_describe(tmp_path: Path) -> None:
    """What `digest db upgrade` makes is what the code expects: no column, index or table of
    the models missing from the migrations, and nothing extra."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from digest.models import Base

    store = Store(make_engine(f"sqlite:///{tmp_path / 'm.db'}"))
    store.upgrade()
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    store.close()
    assert differences == []


PLAN_NOW = datetime(2026, 8, 13, 9, tzinfo=UTC)


def _store_with_readers(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Store, list[str]]:
    """A fresh store on ``database`` with five confirmed readers due at ``PLAN_NOW``, and
    their public ids."""
    from digest.domain.profiles import Profile
    from digest.domain.schedules import Schedule
    from digest.store import subscribers

    url = (
        request.getfixturevalue("postgres_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'plan.db'}"
    )
    store = Store.open(DatabaseSettings(url=url))
    with store.transaction() as session:
        people = [
            subscribers.upsert(
                session, f"r{n}@example.org", Profile(categories=("cs.LG",)),
                Schedule.checked("UTC", 7), confirmed=True, now=PLAN_NOW,
            )[0].public_id
            for n in range(5)
        ]  # fmt: skip
    return store, people


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_every_row_inserted_at_once_gets_its_own_public_id(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Public ids come from the tables' default, drawn per row, also when the outbox plans
    many deliveries in one statement (an executemany)."""
    from digest.models import Delivery
    from digest.store import outbox

    store, people = _store_with_readers(database, tmp_path, request)
    now = PLAN_NOW
    with store.transaction() as session:
        planned = outbox.plan(session, outbox.due(session, now), now, timedelta(days=1))
        digests = list(session.scalars(select(Delivery.public_id).where(Delivery.id.in_(planned))))
    store.close()
    for ids in (people, digests):
        assert len(ids) == 5 and len(set(ids)) == 5
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_planning_what_another_planner_planned_meanwhile_plans_only_the_rest(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two processes plan from the same list of who is due, in turns: each plans only what
    is not planned yet for that date, and a reader due on another date is planned anew."""
    from digest.models import Delivery
    from digest.store import outbox

    store, _ = _store_with_readers(database, tmp_path, request)
    now, window = PLAN_NOW, timedelta(days=1)
    with store.transaction() as session:
        due = outbox.due(session, now)
    assert len(due) == 5
    with store.transaction() as session:
        first = outbox.plan(session, due[1:4], now, window)
    with store.transaction() as session:
        rest = outbox.plan(session, due, now, window)  # the list made before the first plan
        again = outbox.plan(session, due, now, window)
        tomorrow = [outbox.Due(d.subscriber_id, d.local_date + timedelta(days=1)) for d in due]
        next_day = outbox.plan(session, tomorrow[:2], now + timedelta(days=1), window)
        rows = session.execute(select(Delivery.id, Delivery.subscriber_id, Delivery.local_date))
        by_id = {row.id: (row.subscriber_id, row.local_date) for row in rows}
    store.close()
    assert len(first) == 3 and len(rest) == 2 and again == [] and len(next_day) == 2
    assert sorted(by_id) == sorted(first + rest + next_day)
    assert {by_id[i] for i in rest} == {(d.subscriber_id, d.local_date) for d in (due[0], due[4])}
    assert len(set(by_id.values())) == 7


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_planned_delivery_holds_what_the_model_gives_it(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Planning hands its rows to the driver, not to the model: each still reads back as the
    model would have made it (state, counters, UTC times, the window's start), and a reader
    listed twice is planned once (the conflict clause), its one id returned."""
    from digest.models import Delivery
    from digest.store import outbox

    store, _ = _store_with_readers(database, tmp_path, request)
    now, window = PLAN_NOW, timedelta(hours=36)
    with store.transaction() as session:
        due = outbox.due(session, now)
        planned = outbox.plan(session, [*due, *due[:2]], now, window)
    later = now + timedelta(days=1)
    with store.transaction() as session:
        tomorrow = [outbox.Due(d.subscriber_id, d.local_date + timedelta(days=1)) for d in due]
        second = outbox.plan(session, tomorrow[:1], later, window)
    with store.transaction() as session:
        rows = {row.id: row for row in session.scalars(select(Delivery))}
    store.close()
    assert len(planned) == 5 and len(set(planned)) == 5 and len(second) == 1
    assert sorted(rows) == sorted(planned + second)
    for row in (rows[i] for i in planned):
        assert row.status == "planned" and row.attempts == 0 and row.paper_count == 0
        assert row.local_date == PLAN_NOW.date()
        assert row.planned_at == now and row.planned_at.tzinfo is not None
        assert row.since == now - window  # a first digest looks back the first window
        assert row.ranked_at is None and row.lease_owner is None and row.sent_at is None
    # The next day's digest starts where the last one was planned.
    assert rows[second[0]].since == now and rows[second[0]].planned_at == later


def test_a_pooled_connection_closed_while_idle_is_replaced_unseen(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that waited in the pool past IDLE_PING_SECONDS is pinged before use and
    replaced if the server closed it (the web app after a database restart); one in
    constant use is not pinged: its next transaction fails as Unavailable, the one after
    works."""
    import digest.store as stores
    from digest.errors import Unavailable

    store = Store.open(DatabaseSettings(url=postgres_url))
    killer = make_engine(postgres_url)

    def backend() -> int:
        with store.transaction() as session:
            return int(session.execute(text("select pg_backend_pid()")).scalar_one())

    def close_on_the_server(pid: int) -> None:
        with killer.begin() as connection:
            connection.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})

    try:
        monkeypatch.setattr(stores, "IDLE_PING_SECONDS", 0.0)  # every checkout is "idle"
        first = backend()
        close_on_the_server(first)
        assert backend() != first  # pinged, dropped, replaced: no error reached the caller

        monkeypatch.setattr(stores, "IDLE_PING_SECONDS", 3600.0)  # in constant use
        busy = backend()
        close_on_the_server(busy)
        with pytest.raises(Unavailable):
            backend()
        assert backend() != busy
    finally:
        killer.dispose()
        store.close()
