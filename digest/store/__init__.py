"""The database: the engine, transactions, migrations. The only package that speaks SQL.

Every query lives in a module here, named after what it stores (``papers``, ``subscribers``,
``outbox``, ``digests``, ``feedback``, ``embeddings``, ``bounces``, ``reports``, ``locks``,
``ratelimit``); callers open a transaction with :meth:`Store.transaction` and pass its
session in, so a change commits whole or not at all. What the database says goes out as
``digest.errors``: a passing outage as ``Unavailable`` (retry), a lost race for a unique row
as ``Conflict`` (read again), anything else as ``StoreError``; nobody else catches
SQLAlchemy's own exceptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from digest.config import DatabaseSettings
from digest.errors import Conflict, StoreError, Unavailable

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

__all__ = ["Connection", "Session", "Store", "make_engine"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"
CHUNK = 500  # ids per IN (...) list: well under every database's parameter limit

T = TypeVar("T")


class Store:
    """An engine and its sessions; the queries are functions of the modules beside this."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: DatabaseSettings) -> Store:
        """Connect, and apply pending migrations (or refuse, when ``migrate`` is off)."""
        store = cls.connect(settings)
        waiting = store.pending_migrations()
        if waiting:
            if not settings.migrate:
                store.close()
                raise StoreError(
                    f"the database schema is behind by {len(waiting)} migration(s) "
                    f"({', '.join(waiting)}); run `digest db upgrade`"
                )
            store.upgrade()
        return store

    @classmethod
    def connect(cls, settings: DatabaseSettings) -> Store:
        """Connect without looking at migrations (`digest db`, `digest status`)."""
        return cls(make_engine(settings.url, busy_timeout_ms=settings.busy_timeout_ms))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises;
        the database's errors leave it as ``digest.errors`` (see the module's doc)."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException as exc:
            session.rollback()
            translated = translate(exc)
            if translated is not None:
                raise translated from exc
            raise
        finally:
            session.close()

    @contextmanager
    def connected(self) -> Iterator[Connection]:
        """A connection in a transaction that commits when the block succeeds, as
        :meth:`transaction` but without the ORM session: for a few prepared statements run
        once a message, where the session's own bookkeeping cost more than they did."""
        with self.translated(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def translated(self) -> Iterator[None]:
        """The database's errors inside the block leave it as ``digest.errors``."""
        try:
            yield
        except BaseException as exc:
            translated = translate(exc)
            if translated is not None:
                raise translated from exc
            raise

    def ping(self) -> None:
        """A query that touches nothing: raises ``Unavailable`` when the database is away."""
        with self.transaction() as session:
            session.execute(text("SELECT 1"))

    # -- migrations -------------------------------------------------------------------

    # Alembic is imported where migrations are looked at, not with the store: it takes a
    # quarter of a second, and the worker processes a parent starts (after checking the
    # schema itself) never look.

    def _alembic(self, connection: Any) -> AlembicConfig:
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        return config

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with _errors(self.engine), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def pending_migrations(self) -> list[str]:
        """Revisions not yet applied, oldest first."""
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS_DIR))
        current = self.current_revision()
        revisions = list(script.iterate_revisions(script.get_current_head(), current))
        return [rev.revision for rev in reversed(revisions)]

    def upgrade(self, revision: str = "head") -> list[str]:
        """Apply migrations up to ``revision``; returns the ones applied."""
        from alembic import command

        waiting = self.pending_migrations()
        with _errors(self.engine), self.engine.begin() as connection:
            command.upgrade(self._alembic(connection), revision)
        if waiting:
            log.info("applied migrations: %s", ", ".join(waiting))
        return waiting

    def check_schema(self) -> None:
        """Raise ``StoreError`` when the schema is behind (changing nothing)."""
        pending = self.pending_migrations()
        if pending:
            raise StoreError(
                f"the database schema is behind by {len(pending)} migration(s) "
                f"({', '.join(pending)}); run `digest db upgrade`"
            )


def translate(exc: BaseException) -> StoreError | None:
    """The ``digest.errors`` exception for one of SQLAlchemy's, or None for any other."""
    if not isinstance(exc, SQLAlchemyError):
        return None
    if isinstance(exc, IntegrityError):
        return Conflict(f"stored meanwhile by another process: {first_line(exc)}")
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return Unavailable(f"database unavailable: {first_line(exc)}")
    return StoreError(f"database error: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer now. On SQLite a plain (deferred)
    transaction that reads and then writes can fail when another process wrote in between;
    ``BEGIN IMMEDIATE`` takes the write lock first (waiting up to the busy timeout)."""
    if session.get_bind().dialect.name == "sqlite" and not session.info.get("writing"):
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        session.info["writing"] = True  # once per transaction (the session ends with it)


def make_engine(url: str, busy_timeout_ms: int = 5000) -> Engine:
    """An engine for ``url``; for SQLite, the folder is made and WAL + busy timeout set."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"database.url is not a database URL: {url!r}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database {parsed.render_as_string()}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    else:
        event.listen(engine, "checkin", _checked_in)
        event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


# A pooled connection unused this long is pinged before it is handed out (a server restart
# or an idle timeout may have closed it: the web app's connections wait between requests).
# One in constant use is not: a worker checks one out a few times a digest, and a ping each
# time cost about 0.1 ms of a ~5 ms digest on PostgreSQL. If the server goes away while one is
# in use, that transaction fails as ``Unavailable`` and its caller retries.
IDLE_PING_SECONDS = 5.0


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is not None and time.monotonic() - last < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and hands out a fresh one.
            raise DisconnectionError(f"a pooled connection was closed: {exc}") from exc
        if not alive:
            raise DisconnectionError("a pooled connection was closed")

    return on_checkout


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers (the web app) work while a writer (the sender) commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


@contextmanager
def _errors(engine: Engine) -> Iterator[None]:
    """Turn an unreachable database into one clear line."""
    try:
        yield
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"cannot use the database at {where}: {reason}") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from None


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def stored_addresses(database: Path) -> list[str]:
    """Every subscriber address in the SQLite file ``database``, read only; none when it is
    not a database of ours (no subscribers table) or not a database at all."""
    where = quote(str(database.resolve()))
    engine = create_engine(f"sqlite:///file:{where}?mode=ro&uri=true")
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(text("SELECT email FROM subscribers"))]
    except SQLAlchemyError:
        return []
    finally:
        engine.dispose()
