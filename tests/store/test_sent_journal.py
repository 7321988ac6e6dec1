"""Sent journals on real files, a real SQLite database and real processes: a send is in its
thread's file at once and in the database with the thread's next transaction; a failed
transaction keeps it for the next; a live writer's file is left alone and a dead one's is
applied by whoever comes next; a line cut short is skipped, never fatal; where no file can
be written, each send is committed as before."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from delivery_helpers import add_subscribers, fetch_sample
from sqlalchemy import select

from digest.app import digests
from digest.app.sending import OutboxQueue
from digest.config import Settings, load_settings
from digest.delivery.sender import Outgoing
from digest.domain.states import Lease
from digest.models import Delivery
from digest.store import Store, make_engine, outbox
from digest.store.sent_journal import (
    SUFFIX,
    Sent,
    SentJournals,
    folder_for,
    journals_for,
    transaction,
)

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def leased(settings: Settings, store: Store) -> list[int]:
    """Six ranked digests, claimed by sender "w1"."""
    fetch_sample(settings, store, NOW)
    add_subscribers(store, 6, now=NOW)
    digests.plan_and_rank(settings, store, NOW)
    with store.transaction() as session:
        taken = outbox.claim(session, Lease("w1", NOW, timedelta(minutes=15)), 6)
    assert len(taken) == 6
    return [one.id for one in taken]


def status(store: Store, ids: list[int]) -> dict[int, str]:
    with store.transaction() as session:
        rows = session.execute(select(Delivery.id, Delivery.status).where(Delivery.id.in_(ids)))
        return {id_: state for id_, state in rows}


def sent(id_: int, owner: str = "w1") -> Sent:
    return Sent("digest", id_, owner, NOW + timedelta(seconds=id_), f"250 2.0.0 Ok: queued {id_}")


def journal_files(store: Store) -> list[Path]:
    folder = folder_for(store)
    assert folder is not None
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def test_a_send_is_in_its_file_at_once_and_in_the_database_with_the_next_transaction(
    store: Store, leased: list[int]
) -> None:
    journals = journals_for(store)
    assert journals is not None
    assert journals.record(sent(leased[0])) and journals.record(sent(leased[1]))
    [path] = journal_files(store)
    assert path.parent.name == "digest.db-sent"  # beside the database
    assert len(path.read_bytes().splitlines()) == 2  # in the kernel already: one write each
    assert set(status(store, leased[:2]).values()) == {"sending"}

    with transaction(store, journals):
        pass
    assert status(store, leased[:2]) == {leased[0]: "sent", leased[1]: "sent"}
    with store.transaction() as session:
        row = session.get(Delivery, leased[0])
        assert row is not None
        assert row.sent_at is not None and row.sent_at.replace(tzinfo=UTC) == sent(leased[0]).at
        assert row.smtp_reply == sent(leased[0]).reply and row.lease_until is None
    assert path.read_bytes() == b""  # emptied once committed
    journals.close()
    assert journal_files(store) == []  # removed with nothing left in it


def test_a_failed_transaction_keeps_the_records_for_the_next(
    store: Store, leased: list[int]
) -> None:
    journals = journals_for(store)
    assert journals is not None
    journals.record(sent(leased[0]))
    with pytest.raises(RuntimeError), transaction(store, journals):
        raise RuntimeError("the claim failed")
    assert status(store, leased[:1]) == {leased[0]: "sending"}  # rolled back with it
    [path] = journal_files(store)
    assert len(path.read_bytes().splitlines()) == 1 and journals.pending() == 1
    with transaction(store, journals):
        pass
    assert status(store, leased[:1]) == {leased[0]: "sent"} and journals.pending() == 0
    journals.close()


WRITER = """
import sys, time
from datetime import datetime
from pathlib import Path
from digest.store.sent_journal import Sent, SentJournals
journals = SentJournals(Path(sys.argv[1]))
at = datetime.fromisoformat(sys.argv[2])
for id_ in map(int, sys.argv[3:]):
    assert journals.record(Sent("digest", id_, "w1", at, "250 ok"))
print("recorded", flush=True)
time.sleep(60)  # alive, holding its file, until killed
"""


def start_writer(folder: Path, ids: list[int]) -> subprocess.Popen[bytes]:
    """Another process that journals ``ids`` as sent and lives on, holding its file."""
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(folder), NOW.isoformat()]
        + [str(one) for one in ids],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert writer.stdout is not None and writer.stdout.readline() == b"recorded\n"
    return writer


def test_a_live_writers_file_is_left_alone_and_a_dead_ones_is_applied_by_the_next(
    store: Store, leased: list[int]
) -> None:
    folder = folder_for(store)
    assert folder is not None
    writer = start_writer(folder, leased[:3])
    try:
        other = journals_for(store)  # another process's queue, claiming
        with transaction(store, other):
            pass
        assert set(status(store, leased[:3]).values()) == {"sending"}  # its writer lives
        assert len(journal_files(store)) == 1
    finally:
        writer.kill()
        writer.wait()
    with transaction(store, other):  # the writer is dead: its lock went with it
        pass
    assert set(status(store, leased[:3]).values()) == {"sent"}
    assert journal_files(store) == []
    assert set(status(store, leased[3:]).values()) == {"sending"}


def test_recover_applies_what_a_dead_sender_journaled_before_taking_its_leases_back(
    settings: Settings, store: Store, leased: list[int]
) -> None:
    from digest.app import sending

    folder = folder_for(store)
    assert folder is not None
    writer = start_writer(folder, leased[:2])
    writer.kill()  # a worker killed after two sends, restarting under its own name
    writer.wait()
    taken_back = sending.recover(settings, store, "w1", NOW + timedelta(minutes=1))
    assert taken_back == 4  # the four not sent; the two journaled were recorded first
    states = status(store, leased)
    assert [states[one] for one in leased[:2]] == ["sent", "sent"]
    assert {states[one] for one in leased[2:]} == {"deferred"}
    assert journal_files(store) == []


def test_a_line_cut_short_is_skipped_and_the_rest_applied(
    store: Store, leased: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    folder = folder_for(store)
    assert folder is not None
    folder.mkdir()
    path = folder / f"w1.999999.deadbeef{SUFFIX}"
    path.write_bytes(sent(leased[0]).line() + sent(leased[1]).line() + sent(leased[2]).line()[:9])
    with caplog.at_level(logging.WARNING), transaction(store, journals_for(store)):
        pass
    assert status(store, leased[:3]) == {leased[0]: "sent", leased[1]: "sent", leased[2]: "sending"}
    assert f"{path}: line 3 is not a sent record" in caplog.text
    assert not path.exists()


def test_a_send_whose_lease_had_passed_to_another_sender_is_told_not_recorded(
    store: Store, leased: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    journals = journals_for(store)
    assert journals is not None
    journals.record(sent(leased[0], owner="w2"))  # w1 holds the lease
    with caplog.at_level(logging.ERROR), transaction(store, journals):
        pass
    assert status(store, leased[:1]) == {leased[0]: "sending"}
    assert f"delivery {leased[0]} (digest): sent, but its lease had passed" in caplog.text
    journals.close()


def _outgoing(id_: int) -> Outgoing:
    return Outgoing(id_, "pub", 1, "reader@example.org", 1, NOW, "name", lambda: b"")


def test_where_no_journal_can_be_written_each_send_is_committed_at_once(
    settings: Settings, store: Store, leased: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    folder = folder_for(store)
    assert folder is not None
    folder.write_text("a file where the folder would go")
    queue = OutboxQueue(settings, store, None)
    with caplog.at_level(logging.WARNING):
        assert queue.mark_sent(_outgoing(leased[0]), "w1", NOW, "250 ok")
    assert "cannot write the sent journal" in caplog.text
    assert status(store, leased[:1]) == {leased[0]: "sent"}  # committed, not journaled
    assert queue.mark_sent(_outgoing(leased[1]), "w1", NOW, "250 ok")
    assert status(store, leased[1:2]) == {leased[1]: "sent"}
    queue.close()


def test_closed_while_the_database_is_locked_the_file_waits_for_the_next_claim(
    settings: Settings, leased: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    quick = load_settings(
        environ={
            "DIGEST_DATABASE__URL": settings.database.url,
            "DIGEST_DATABASE__BUSY_TIMEOUT_MS": "200",
            "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
        }
    )
    store = Store.open(quick.database)
    try:
        queue = OutboxQueue(quick, store, None)
        assert queue.mark_sent(_outgoing(leased[0]), "w1", NOW, "250 ok")
        database = make_engine(quick.database.url).url.database
        assert database is not None
        blocker = sqlite3.connect(database)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with caplog.at_level(logging.WARNING):
                queue.close()
        finally:
            blocker.rollback()
            blocker.close()
        assert "1 sent message(s) not recorded yet" in caplog.text
        assert status(store, leased[:1]) == {leased[0]: "sending"}
        [path] = journal_files(store)
        assert len(path.read_bytes().splitlines()) == 1  # kept, and no longer locked
        with transaction(store, journals_for(store)):  # the next claim, anyone's
            pass
        assert status(store, leased[:1]) == {leased[0]: "sent"}
        assert journal_files(store) == []
    finally:
        store.close()


def test_each_sending_thread_journals_and_applies_its_own(store: Store, leased: list[int]) -> None:
    journals = journals_for(store)
    assert journals is not None
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def lane(ids: list[int]) -> None:
        try:
            start.wait(10)
            for id_ in ids:
                assert journals.record(sent(id_))
                with transaction(store, journals):  # this thread's next claim
                    pass
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(leased[n::3],)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert set(status(store, leased).values()) == {"sent"}
    assert len(journal_files(store)) == 3  # one a thread, each emptied
    assert all(path.read_bytes() == b"" for path in journal_files(store))
    journals.close()
    assert journal_files(store) == []


def test_only_a_sqlite_file_database_journals(tmp_path: Path) -> None:
    postgres = Store(make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    memory = Store(make_engine("sqlite://"))
    on_disk = Store(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        assert folder_for(postgres) is None and journals_for(postgres) is None
        assert folder_for(memory) is None
        assert folder_for(on_disk) == tmp_path / "x.db-sent"
        assert isinstance(journals_for(on_disk), SentJournals)
    finally:
        for store in (postgres, memory, on_disk):
            store.close()


def test_a_journal_being_made_is_never_taken_for_a_dead_senders(tmp_path: Path) -> None:
    """A file must be locked before it can be found: a scan that found one between its
    creation and its lock would take it for a dead sender's and remove it."""
    from digest.store.sent_journal import Applied, Journal, _orphans

    folder = tmp_path / "digest.db-sent"
    folder.mkdir()
    stop = threading.Event()
    taken: list[Sent] = []

    def scan() -> None:
        while not stop.is_set():
            orphans = list(_orphans(folder))
            # Only a file already emptied and given up by its writer may turn up here.
            taken.extend(record for orphan in orphans for record in orphan.records)
            Applied([], orphans).done()  # as a claim does once it has committed

    scanner = threading.Thread(target=scan)
    scanner.start()
    try:
        for _ in range(300):
            journal = Journal(folder, "w1")
            journal.record(sent(1))
            assert journal.path.exists()  # not removed under its living writer
            journal.committed(1)
            journal.close()
    finally:
        stop.set()
        scanner.join(10)
    assert taken == []
