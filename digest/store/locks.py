"""A lock across processes and machines: PostgreSQL's advisory locks; a no-op on SQLite,
where one process runs the jobs anyway."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from digest.store import Store


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL's bigint)."""
    return int.from_bytes(
        hashlib.sha256(f"digest:{name}".encode()).digest()[:8], "big", signed=True
    )


@contextmanager
def try_lock(store: Store, name: str) -> Iterator[bool]:
    """Hold the lock ``name`` for the block if no other process holds it; yields whether
    it was taken. The lock lives on one connection kept for the block, so a process that
    dies releases it with its connection."""
    if store.engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    with store.engine.connect() as connection:
        taken = bool(connection.scalar(select(func.pg_try_advisory_lock(key))))
        connection.commit()
        try:
            yield taken
        finally:
            if taken:
                try:
                    connection.scalar(select(func.pg_advisory_unlock(key)))
                    connection.commit()
                except DBAPIError:
                    pass  # the connection died, and the lock with it
