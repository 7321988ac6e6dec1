"""Sent journals: on SQLite, each message the server accepted is written to a file of its
sending thread's own at once, and reaches the database in the thread's next transaction
(its next claim, or its end).

Why: committing each outcome on its own took SQLite's one write lock once a message, and
with two worker processes each spent about 8% of its time asleep in SQLite's busy wait
(1, 2, 5 ms …) for the other's commits, and 10% of its CPU in those commits
(docs/benchmarks.md). Applied with the next claim, a batch's outcomes share the claim's
transaction: one lock a batch instead of one a message.

Why the crash bound holds: the line is written (one ``write(2)``, into the kernel) before
the next message goes out on that connection, so a process that dies has lost at most the
message on the wire, as when each outcome was committed. Its file stays behind, and
whoever next claims, recovers or gives back mail (any process on this database) applies it
in that transaction, before it can take over the dead sender's leases; a file is applied
only by someone holding its ``flock``, which its writer holds while it lives. Durability
is the database's own (``synchronous=NORMAL``): a process's death loses nothing, a power
cut may lose the last moments of both.

PostgreSQL keeps committing each outcome (``group_commit``): its workers may run on
several machines, which share no folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from digest.store import Connection, Session, Store, begin_write, outbox

log = logging.getLogger(__name__)

SUFFIX = ".sent"  # a journal file's ending


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the server accepted: what ``outbox.mark_sent`` records."""

    kind: str  # "digest" or "mail": which outbox
    id: int
    owner: str  # the lease it was sent under
    at: datetime
    reply: str

    def line(self) -> bytes:
        fields = [self.kind, self.id, self.owner, self.at.isoformat(), self.reply]
        return json.dumps(fields, ensure_ascii=True).encode("ascii") + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Sent:
        kind, id_, owner, at, reply = json.loads(line)
        if kind not in outbox.OUTBOXES or not isinstance(id_, int) or not isinstance(owner, str):
            raise ValueError(f"not a sent record: {line[:200]!r}")
        return cls(kind, id_, owner, datetime.fromisoformat(at), str(reply))

    def apply(self, connection: Connection) -> bool:
        """Record it; False when its lease had passed to another sender."""
        model = outbox.OUTBOXES[self.kind]
        return outbox.mark_sent(connection, self.id, self.owner, self.at, self.reply, model)


def folder_for(store: Store) -> Path | None:
    """Where a SQLite file database's journals go (beside it: ``NAME-sent/``); None for
    PostgreSQL or an in-memory database."""
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):  # a URI filename: keep to plain paths
        return None
    path = Path(url.database)
    return path.with_name(path.name + "-sent")


class Journal:
    """One sending thread's file: appended to while its messages go, emptied once what it
    holds is committed. Locked (``flock``) for as long as it is open."""

    def __init__(self, folder: Path, owner: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in owner)[:60]
        self.path = folder / f"{safe}.{os.getpid()}.{secrets.token_hex(4)}{SUFFIX}"
        # Made under another name and locked before it gets its own: a scan that found it
        # unlocked would take it for a dead sender's and remove it. (A process that dies in
        # between leaves an empty ``.making`` file, nothing more.)
        making = self.path.with_name(self.path.name + ".making")
        self._file: BinaryIO = open(making, "ab", buffering=0)  # noqa: SIM115 (held open)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(making, self.path)
        except OSError:
            self._file.close()
            making.unlink(missing_ok=True)
            raise
        self.pending: list[Sent] = []

    def record(self, sent: Sent) -> None:
        """Write one line (raises ``OSError`` if it cannot: the caller commits instead)."""
        line = sent.line()
        written = self._file.write(line)
        if written != len(line):
            raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
        self.pending.append(sent)

    def committed(self, count: int) -> None:
        """The first ``count`` pending records are in the database now. (A thread applies
        all it holds at once, so nothing is left and the file is emptied; were anything
        left, the file keeps the committed lines too: applying one again changes nothing.)"""
        del self.pending[:count]
        if not self.pending:
            self._file.truncate(0)  # appends go to the (new) end: O_APPEND

    def close(self) -> None:
        """Remove the file if everything is committed; else leave it for the next claim."""
        if not self.pending:
            self.path.unlink(missing_ok=True)
        self._file.close()


@dataclass
class _Orphan:
    """A journal no live sender holds: its records, and its file held locked meanwhile."""

    path: Path
    file: BinaryIO
    records: list[Sent]


def _orphans(folder: Path) -> Iterator[_Orphan]:
    try:
        paths = sorted(folder.glob(f"*{SUFFIX}"))
    except OSError:
        return
    for path in paths:
        try:
            file = open(path, "rb")  # noqa: SIM115 (closed by the caller)
        except OSError:
            continue  # removed meanwhile: its writer committed it
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()  # its writer is alive
            continue
        records = []
        for number, line in enumerate(file.read().splitlines(), 1):
            try:
                records.append(Sent.parse(line))
            except (ValueError, TypeError) as exc:
                # A line cut short by a machine's crash; the rest are whole.
                log.warning("%s: line %d is not a sent record (%s); skipped", path, number, exc)
        yield _Orphan(path, file, records)


class Applied:
    """What one transaction applied; told ``done`` after its commit, ``undone`` if it
    failed (the records wait for the next)."""

    def __init__(self, counts: list[tuple[Journal, int]], orphans: list[_Orphan]) -> None:
        self.counts = counts  # each journal and how many of its records went in
        self.orphans = orphans

    def done(self) -> None:
        for journal, count in self.counts:
            if count:
                journal.committed(count)
        for orphan in self.orphans:
            try:
                orphan.path.unlink(missing_ok=True)
            except OSError as exc:  # applied all the same; applying it again changes nothing
                log.warning("cannot remove %s, which is recorded: %s", orphan.path, exc)
            orphan.file.close()

    def undone(self) -> None:
        for orphan in self.orphans:
            orphan.file.close()


class SentJournals:
    """The journals of one queue's sending threads (one each, made at its first record),
    and the applying of any that dead senders left behind."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._journals: dict[int, Journal] = {}  # by thread
        self._broken: set[int] = set()  # threads whose journal could not be written

    def record(self, sent: Sent) -> bool:
        """Journal it for this thread; False if that cannot be done (then commit it)."""
        thread = threading.get_ident()
        journal = self._journals.get(thread)
        if thread in self._broken:
            return False
        try:
            if journal is None:
                journal = Journal(self.folder, sent.owner)
                with self._lock:
                    self._journals[thread] = journal
            journal.record(sent)
        except OSError as exc:
            log.warning(
                "cannot write the sent journal in %s (%s); committing each", self.folder, exc
            )
            self._broken.add(thread)
            return False
        return True

    def apply(self, connection: Connection, *, everyone: bool = False) -> Applied:
        """Apply this thread's records (``everyone``: every thread's, once they have
        stopped) and the orphans', inside the caller's transaction; the caller tells the
        result ``done`` after its commit, ``undone`` if it failed."""
        orphans = list(_orphans(self.folder))
        if everyone:
            journals = list(self._journals.values())
        else:
            mine = self._journals.get(threading.get_ident())
            journals = [mine] if mine is not None else []
        try:
            _apply(connection, [r for orphan in orphans for r in orphan.records], orphaned=True)
            for journal in journals:
                _apply(connection, journal.pending, orphaned=False)
        except BaseException:
            for orphan in orphans:
                orphan.file.close()
            raise
        return Applied([(journal, len(journal.pending)) for journal in journals], orphans)

    def close(self) -> None:
        """Close every thread's file (removed where all was committed)."""
        with self._lock:
            journals, self._journals = list(self._journals.values()), {}
        for journal in journals:
            journal.close()

    def pending(self) -> int:
        return sum(len(journal.pending) for journal in self._journals.values())


def _apply(connection: Connection, records: list[Sent], *, orphaned: bool) -> None:
    for sent in records:
        if not sent.apply(connection):
            log.error(
                "delivery %s (%s): sent, but its lease had passed to another sender%s",
                sent.id,
                sent.kind,
                " (recorded from a stopped sender's journal)" if orphaned else "",
            )


def journals_for(store: Store) -> SentJournals | None:
    """The journals of a queue on ``store``; None where they are not used (PostgreSQL)."""
    folder = folder_for(store)
    return SentJournals(folder) if folder is not None else None


@contextmanager
def transaction(
    store: Store, journals: SentJournals | None, *, everyone: bool = False
) -> Iterator[Session]:
    """A transaction of ``store`` that first applies the calling thread's journaled sends
    (``everyone``: every thread's, once they have stopped) and those dead senders left,
    which must be in before any lease is taken over or given back; the files are emptied
    or removed only once it has committed."""
    applied: Applied | None = None
    try:
        with store.transaction() as session:
            if journals is not None:
                begin_write(session)  # one write lock for the outcomes and what follows
                applied = journals.apply(session.connection(), everyone=everyone)
            yield session
    except BaseException:
        if applied is not None:
            applied.undone()
        raise
    if applied is not None:
        applied.done()
