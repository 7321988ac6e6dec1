"""Group commit: the outcomes that a process's sending threads record at about the same time
share one transaction.

A sender records each message's outcome as soon as the server has answered, and waits until
it is committed: a crash then resends at most the messages in flight, one per connection.
Committing is the expensive part (on SQLite it takes the one write lock that every process
waits for; on PostgreSQL it waits for the WAL on disk), so a thread that arrives while
another thread's commit is under way does not start its own: it queues its work, and the
next commit carries all that queued. Each caller still returns only once its own work is
committed, so the crash guarantee is unchanged; what is saved is commits when connections
finish together. One connection serves commit after commit until :meth:`GroupCommit.close`.

On PostgreSQL a work that is one statement (recording a message sent), when nothing else
shares its commit, runs on a connection in autocommit mode: the statement is its own
transaction, committed (and flushed to the WAL) before its reply comes back, in one round trip
instead of three (BEGIN, the statement, COMMIT). What is committed, and when the caller
learns it, is the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from digest.store import Connection, Store

T = TypeVar("T")
log = logging.getLogger(__name__)


class _Ticket(Generic[T]):
    __slots__ = ("done", "error", "one_statement", "value", "work")

    def __init__(self, work: Callable[[Connection], T], one_statement: bool) -> None:
        self.work = work
        self.one_statement = one_statement
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[no-any-return]


class GroupCommit:
    """``run(work)``: ``work(connection)`` committed, in a transaction it may share with other
    threads' work. If that transaction fails, every work in it gets the error (each caller
    retries its own, as it would have). A connection, not an ORM session: the work is a
    prepared statement or two, and a session's bookkeeping cost more than they do."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._changed = threading.Condition()
        self._queued: list[_Ticket[Any]] = []
        self._committing = False
        self.commits = 0  # transactions, for tests and the benchmark
        # The connection of the last commit, kept for the next until ``close``: checking one
        # out of the pool and back for every message cost more than the statement did.
        self._kept: Connection | None = None
        # The same for a lone statement in autocommit mode (PostgreSQL's, see the module doc).
        self._kept_autocommit: Connection | None = None
        self._autocommit = store.dialect == "postgresql"

    def run(self, work: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """``work(connection)``, committed. ``one_statement``: ``work`` runs a single
        statement, so when it is alone in its commit that statement may be its own
        transaction."""
        ticket: _Ticket[T] = _Ticket(work, one_statement)
        with self._changed:
            self._queued.append(ticket)
            while self._committing and not ticket.done:
                self._changed.wait()
            if ticket.done:
                return ticket.result()
            # No commit under way: this thread writes everything queued so far.
            self._committing = True
            batch, self._queued = self._queued, []
        connection: Connection | None = None
        alone = self._autocommit and len(batch) == 1 and batch[0].one_statement
        try:
            with self.store.translated():
                if alone:
                    connection, self._kept_autocommit = self._autocommit_connection(), None
                    batch[0].value = batch[0].work(connection)
                    # Ends SQLAlchemy's own bookkeeping; the database has committed already.
                    connection.commit()
                    self._kept_autocommit, connection = connection, None
                else:
                    connection, self._kept = self._kept or self.store.engine.connect(), None
                    with connection.begin():
                        for one in batch:
                            one.value = one.work(connection)
                    self._kept, connection = connection, None  # for the next commit
        except BaseException as exc:
            for one in batch:
                one.error = exc
        finally:
            if connection is not None:  # its transaction failed: it may be broken, drop it
                _close(connection)
            with self._changed:
                self.commits += 1
                for one in batch:
                    one.done = True
                self._committing = False
                self._changed.notify_all()
        return ticket.result()

    def close(self) -> None:
        """Give the kept connection back to the pool (after a commit under way ends)."""
        with self._changed:
            while self._committing:
                self._changed.wait()
            kept = [c for c in (self._kept, self._kept_autocommit) if c is not None]
            self._kept = self._kept_autocommit = None
        for connection in kept:
            _close(connection)

    def _autocommit_connection(self) -> Connection:
        if self._kept_autocommit is not None:
            return self._kept_autocommit
        return self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _close(connection: Connection) -> None:
    try:
        connection.close()
    except Exception as exc:  # a broken connection: the pool has already let it go
        log.warning("closing a database connection failed: %s", exc)
