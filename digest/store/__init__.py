"""The database: engine, sessions, transactions, migrations, and the queries the stages need.

All storage goes through here; no other module builds an engine or runs raw SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.exc import SQLAlchemyError as _SAError
from sqlalchemy.orm import Session, sessionmaker

from digest.config import DatabaseSettings
from digest.errors import StoreError
from digest.models import FetchRun, HttpValidator, Paper

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"


class Store:
    """An engine and a session factory, plus the queries the pipeline needs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: DatabaseSettings) -> Store:
        """Connect, and apply pending migrations (or refuse, when ``migrate`` is off)."""
        store = cls(make_engine(settings.url, busy_timeout_ms=settings.busy_timeout_ms))
        waiting = store.pending_migrations()
        if waiting:
            if not settings.migrate:
                raise StoreError(
                    f"the database schema is behind by {len(waiting)} migration(s) "
                    f"({', '.join(waiting)}); run `digest db upgrade`"
                )
            store.upgrade()
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # -- migrations -------------------------------------------------------------------

    def _alembic(self, connection: Any) -> AlembicConfig:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        return config

    def current_revision(self) -> str | None:
        with _errors(self.engine), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def pending_migrations(self) -> list[str]:
        """Revisions not yet applied, oldest first."""
        script = ScriptDirectory(str(MIGRATIONS_DIR))
        current = self.current_revision()
        revisions = list(script.iterate_revisions(script.get_current_head(), current))
        return [rev.revision for rev in reversed(revisions)]

    def upgrade(self, revision: str = "head") -> list[str]:
        """Apply migrations up to ``revision``; returns the ones applied."""
        waiting = self.pending_migrations()
        with _errors(self.engine), self.engine.begin() as connection:
            command.upgrade(self._alembic(connection), revision)
        if waiting:
            log.info("applied migrations: %s", ", ".join(waiting))
        return waiting

    # -- queries: papers --------------------------------------------------------------

    def papers_by_keys(
        self, session: Session, canonical_ids: Iterable[str], title_keys: Iterable[str]
    ) -> tuple[dict[str, Paper], dict[str, Paper]]:
        """Existing rows for a batch: by canonical id, and id-less rows by title key."""
        ids = list(set(canonical_ids))
        keys = list(set(title_keys))
        by_id: dict[str, Paper] = {}
        by_title: dict[str, Paper] = {}
        for chunk in _chunks(ids, 500):
            for paper in session.scalars(select(Paper).where(Paper.canonical_id.in_(chunk))):
                by_id[paper.canonical_id] = paper
        for chunk in _chunks(keys, 500):
            rows = session.scalars(select(Paper).where(Paper.title_key.in_(chunk)))
            for paper in rows:
                # Only an id-less row may be claimed by title; two arXiv papers can share one.
                if paper.arxiv_id is None:
                    by_title.setdefault(paper.title_key, paper)
        return by_id, by_title

    def list_papers(self, since: datetime | None = None, limit: int | None = None) -> list[Paper]:
        query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id.desc())
        if since is not None:
            query = query.where(Paper.first_seen_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.transaction() as session:
            return list(session.scalars(query))

    def count_papers(self) -> int:
        from sqlalchemy import func

        with self.transaction() as session:
            return session.scalar(select(func.count(Paper.id))) or 0

    # -- queries: fetch bookkeeping ---------------------------------------------------

    def record_fetch(self, run: FetchRun) -> None:
        with self.transaction() as session:
            session.add(run)

    def last_fetches(self) -> dict[str, FetchRun]:
        with self.transaction() as session:
            runs = session.scalars(select(FetchRun).order_by(FetchRun.started_at))
            return {run.source: run for run in runs}

    def validators(
        self, urls: Iterable[str] | None = None
    ) -> dict[str, tuple[str | None, str | None]]:
        with self.transaction() as session:
            query = select(HttpValidator)
            if urls is not None:
                query = query.where(HttpValidator.url.in_(list(urls)))
            return {v.url: (v.etag, v.last_modified) for v in session.scalars(query)}

    def save_validators(
        self, session: Session, found: dict[str, tuple[str | None, str | None]], now: datetime
    ) -> None:
        for url, (etag, last_modified) in found.items():
            row = session.get(HttpValidator, url)
            if row is None:
                session.add(
                    HttpValidator(url=url, etag=etag, last_modified=last_modified, stored_at=now)
                )
            else:
                row.etag, row.last_modified, row.stored_at = etag, last_modified, now


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
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database {parsed.render_as_string()}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    return engine


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
    except _SAError as exc:
        raise StoreError(f"database error: {exc}") from None


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
