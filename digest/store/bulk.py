"""Many rows into one table in one go, handed straight to the driver.

SQLAlchemy's own executemany prepares every row's parameters in Python, which cost more than
the insert itself (a ranked batch's save 175 -> 127 µs a digest on SQLite,
docs/benchmarks.md), so the rows go to the driver as they are: an executemany on SQLite; on
PostgreSQL through psycopg a ``COPY ... FROM STDIN``, because an executemany is one INSERT a
row for the server, whose work on a ranked batch's 10,000 rows was half of the ranking stage
there (and an ``INSERT ... SELECT FROM unnest(arrays)`` took longer than the executemany).
Rows that may match a unique key already there (planning) go as an executemany everywhere,
with ``ON CONFLICT DO NOTHING``: COPY cannot skip a row.

COPY runs on the driver's own cursor, around SQLAlchemy's execution, so what SQLAlchemy does
when a statement fails is done here too: a connection found lost is invalidated (the pool
drops it and the session's rollback does not touch it) and the driver's error leaves as
SQLAlchemy's (``OperationalError``, ``IntegrityError``, ...), which the store turns into its
own (``Unavailable``, ``Conflict``) as for any other statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


def insert_rows(
    connection: Connection,
    table: str,
    plain: Sequence[str],
    json_columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    skip_conflicts: Sequence[str] = (),
) -> None:
    """``rows`` (values in the order of ``plain`` then ``json_columns``) into ``table``; a
    JSON column's value is its text. A broken constraint fails them all, except a row whose
    ``skip_conflicts`` columns (a unique key) match a row already there: that one is skipped."""
    if not rows:
        return
    names = ", ".join((*plain, *json_columns))
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg" and not skip_conflicts:
        # COPY's text form reads a JSON column's text as JSON, as a cast would. COPY cannot
        # skip a row, so rows that may conflict go as an executemany.
        _copy(connection, f"COPY {table} ({names}) FROM STDIN", rows)
        return
    # PostgreSQL through another driver reads a JSON column's text only when told it is JSON.
    mark, as_json = ("?", "?") if dialect.paramstyle == "qmark" else ("%s", "%s::json")
    marks = ", ".join([mark] * len(plain) + [as_json] * len(json_columns))
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    if skip_conflicts:
        statement += f" ON CONFLICT ({', '.join(skip_conflicts)}) DO NOTHING"
    connection.exec_driver_sql(statement, list(rows))


def _copy(connection: Connection, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    dialect = connection.dialect
    driver: Any = connection.connection.driver_connection  # a psycopg Connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, driver, None)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(
            statement,
            None,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from error
