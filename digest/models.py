"""Database tables. No behaviour lives here; queries are in ``store``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Date, DateTime, Integer, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, whatever the database keeps (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        date: Date(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Paper(Base):
    """One row per paper, whichever sources reported it."""

    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # arXiv id without version ("2104.12255", "astro-ph/0601001"), or "title:<hash>" for a
    # paper that came with no arXiv id.
    canonical_id: Mapped[str] = mapped_column(String(64), unique=True)
    arxiv_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    # Hash of the normalised title: finds the id-less row when the same paper arrives with
    # an arXiv id later.
    title_key: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int | None]
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(default=list)
    categories: Mapped[list[str]] = mapped_column(default=list)  # primary first
    published_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    announced_on: Mapped[date | None] = mapped_column(index=True)
    first_seen_at: Mapped[datetime] = mapped_column(index=True)
    last_seen_at: Mapped[datetime]
    doi: Mapped[str | None] = mapped_column(String(200))
    journal_ref: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    hf_upvotes: Mapped[int | None]
    ai_summary: Mapped[str | None] = mapped_column(Text)
    github_repo: Mapped[str | None] = mapped_column(String(300))
    sources: Mapped[list[str]] = mapped_column(default=list)
    # Which source's text (title, abstract, authors) the row holds; a better source replaces it.
    text_source: Mapped[str] = mapped_column(String(20))


class FetchRun(Base):
    """One fetch of one source: when, what it brought, or why it failed."""

    __tablename__ = "fetch_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(40), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))  # ok, not_modified, failed
    fetched: Mapped[int] = mapped_column(default=0)
    new: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)


class HttpValidator(Base):
    """The ETag / Last-Modified a URL answered with, for conditional requests."""

    __tablename__ = "http_validators"

    url: Mapped[str] = mapped_column(String(1000), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    stored_at: Mapped[datetime]
