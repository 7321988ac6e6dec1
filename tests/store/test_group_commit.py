"""Group commit under real threads, on a real SQLite file and a real PostgreSQL schema: work
that arrives while a commit is under way goes into the next one, every caller gets its own
result only once it is committed, and a failed transaction fails each of its callers, none
half-written. On PostgreSQL a lone one-statement work is its own transaction (autocommit)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, text

from digest.errors import Conflict
from digest.store import Connection, Store
from digest.store.group_commit import GroupCommit


@pytest.fixture
def table(any_store: Store) -> Store:
    with any_store.transaction() as session:
        session.execute(text("create table outcome (id integer primary key, what text)"))
    return any_store


def rows(store: Store) -> dict[int, str]:
    with store.transaction() as session:
        return dict(session.execute(text("select id, what from outcome")).all())  # type: ignore[arg-type]


def insert(n: int, what: str = "sent"):  # type: ignore[no-untyped-def]
    def work(session: Connection) -> int:
        session.execute(text("insert into outcome values (:n, :what)"), {"n": n, "what": what})
        return n

    return work


def open_transaction(connection: Connection) -> bool:
    """Whether the driver's connection is inside a transaction not yet committed."""
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        from psycopg.pq import TransactionStatus

        return driver.info.transaction_status != TransactionStatus.IDLE  # type: ignore[union-attr]
    return bool(driver.in_transaction)  # type: ignore[union-attr]


@pytest.mark.parametrize("one_statement", [False, True])
def test_work_queued_during_a_commit_goes_together_in_the_next(
    table: Store, one_statement: bool
) -> None:
    group = GroupCommit(table)
    inside, release = threading.Event(), threading.Event()
    results: dict[int, int] = {}
    seen_before_return: dict[int, bool] = {}

    def first(session: Connection) -> int:
        insert(0)(session)
        inside.set()
        assert release.wait(10)
        return 0

    def call(n: int) -> None:
        work = first if n == 0 else insert(n)
        # Single statements too share the commit they queued for.
        results[n] = group.run(work, one_statement=one_statement and n > 0)
        # Returned only once committed: another connection sees the row.
        seen_before_return[n] = n in rows(table)

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert inside.wait(10)
    threads += [threading.Thread(target=call, args=(n,)) for n in range(1, 9)]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(group._queued) < 8 and time.monotonic() < deadline:  # all eight are waiting
        time.sleep(0.01)
    assert len(group._queued) == 8 and not any(n in results for n in range(1, 9))
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == {n: n for n in range(9)}
    assert all(seen_before_return.values())
    assert rows(table) == {n: "sent" for n in range(9)}
    assert group.commits == 2  # the first alone, then the eight that queued behind it


def test_a_failed_transaction_fails_each_of_its_callers_and_writes_none(table: Store) -> None:
    group = GroupCommit(table)
    inside, release = threading.Event(), threading.Event()
    errors: dict[int, BaseException] = {}

    def blocking(session: Connection) -> int:
        inside.set()
        assert release.wait(10)
        return insert(0)(session)

    def call(n: int, work) -> None:  # type: ignore[no-untyped-def]
        try:
            group.run(work)
        except BaseException as exc:
            errors[n] = exc

    first = threading.Thread(target=call, args=(0, blocking))
    first.start()
    assert inside.wait(10)
    # Behind it: two good ones and one that breaks the shared transaction (a duplicate key).
    late = [
        threading.Thread(target=call, args=(n, work))
        for n, work in ((1, insert(1)), (2, insert(1, "again")), (3, insert(3)))
    ]
    for thread in late:
        thread.start()
    deadline = time.monotonic() + 10
    while len(group._queued) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *late]:
        thread.join(10)
    assert 0 not in errors
    assert set(errors) == {1, 2, 3}  # all of the second transaction, the good ones too
    assert rows(table) == {0: "sent"}  # none of it half-written
    # Each caller retries its own, as it would after any failed commit.
    assert group.run(insert(1)) == 1 and group.run(insert(3)) == 3
    assert rows(table) == {0: "sent", 1: "sent", 3: "sent"}


def test_one_connection_serves_commit_after_commit_until_closed(table: Store) -> None:
    checkouts: list[object] = []
    event.listen(table.engine, "checkout", lambda *args: checkouts.append(args[0]))
    pool = table.engine.pool
    group = GroupCommit(table)
    for n in range(5):
        assert group.run(insert(n)) == n
    assert len(checkouts) == 1 and pool.checkedout() == 1  # kept between commits
    group.close()
    assert pool.checkedout() == 0
    assert rows(table) == {n: "sent" for n in range(5)}
    # Used again after closing: a connection is taken again, and kept again.
    before = len(checkouts)
    assert group.run(insert(5)) == 5
    assert len(checkouts) == before + 1 and pool.checkedout() == 1
    group.close()
    group.close()  # twice is harmless
    assert pool.checkedout() == 0


def test_a_failed_commit_drops_its_connection_and_the_next_takes_a_fresh_one(
    table: Store,
) -> None:
    checkouts: list[object] = []
    event.listen(table.engine, "checkout", lambda *args: checkouts.append(args[0]))
    group = GroupCommit(table)
    assert group.run(insert(1)) == 1
    with pytest.raises(Conflict):  # the store's own error, not SQLAlchemy's
        group.run(insert(1, "again"))
    assert table.engine.pool.checkedout() == 0  # not kept after a failure
    assert group.run(insert(2)) == 2
    assert len(checkouts) == 2
    group.close()
    assert rows(table) == {1: "sent", 2: "sent"}


def test_a_lone_statement_commits_by_itself_on_postgresql_and_with_the_group_elsewhere(
    table: Store,
) -> None:
    group = GroupCommit(table)
    seen: dict[str, bool] = {}

    def watched(n: int, name: str):  # type: ignore[no-untyped-def]
        def work(connection: Connection) -> int:
            insert(n)(connection)
            seen[name] = open_transaction(connection)
            return n

        return work

    assert group.run(watched(1, "lone"), one_statement=True) == 1
    assert group.run(watched(2, "plain")) == 2
    assert rows(table) == {1: "sent", 2: "sent"}  # committed before run returned
    postgresql = table.dialect == "postgresql"
    # On PostgreSQL the lone statement was its own transaction, committed as it returned (one
    # round trip); on SQLite, and for work not declared one statement, a transaction is open
    # until the group commits it.
    assert seen == {"lone": not postgresql, "plain": True}
    assert group.commits == 2
    group.close()
    assert table.engine.pool.checkedout() == 0  # both kept connections given back


def test_a_lone_statement_that_fails_raises_the_stores_error_and_writes_nothing(
    table: Store,
) -> None:
    checkouts: list[object] = []
    event.listen(table.engine, "checkout", lambda *args: checkouts.append(args[0]))
    group = GroupCommit(table)
    assert group.run(insert(1), one_statement=True) == 1
    assert group.run(insert(2), one_statement=True) == 2
    assert len(checkouts) == 1  # one connection served both
    with pytest.raises(Conflict):
        group.run(insert(1, "again"), one_statement=True)
    assert table.engine.pool.checkedout() == 0  # dropped after the failure
    assert group.run(insert(3), one_statement=True) == 3
    assert len(checkouts) == 2  # a fresh one
    group.close()
    assert rows(table) == {1: "sent", 2: "sent", 3: "sent"}
