"""Database tables. No behaviour lives here; queries are in ``store``."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from digest.domain.states import DeliveryState, SubscriberStatus


def public_id() -> str:
    """An opaque random id for links, tokens and Message-IDs (never a row id or an address);
    a row gets one when inserted without it."""
    return secrets.token_hex(16)


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


class Subscriber(Base):
    """A person and what they want; the profile is plain JSON (see ``profiles.Profile``)."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Opaque id for links and tokens; never the row id or the address.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=public_id)
    email: Mapped[str] = mapped_column(String(320))
    # The address folded for uniqueness: one subscription per address, whatever its case.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=SubscriberStatus.PENDING)
    timezone: Mapped[str] = mapped_column(String(64))
    send_hour: Mapped[int]
    frequency: Mapped[str] = mapped_column(String(8), default="daily")  # daily, weekly
    weekday: Mapped[int | None]  # 0 = Monday, for weekly
    max_papers: Mapped[int] = mapped_column(default=10)
    send_when_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Raised to revoke every manage link sent so far (address change, "sign out everywhere").
    token_version: Mapped[int] = mapped_column(default=1)
    paused_until: Mapped[datetime | None]
    # A new address waiting for its confirmation; the old one stays in use until then.
    pending_email: Mapped[str | None] = mapped_column(String(320))
    # Permanent failures and bounces so far; past a limit the address is suppressed.
    bounce_count: Mapped[int] = mapped_column(default=0)
    last_bounce_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Leased:
    """The columns of a row in an outbox (a digest, a transactional mail): its state, its
    sender's lease, its tries. ``digest.store.outbox`` marks either kind the same way."""

    # planned, sending (leased), sent, deferred, failed, unknown (the connection died after
    # the data, before the reply); digests also skipped (nothing to send and the subscriber
    # asked for no empty mails) and cancelled (the subscriber left before it went out)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryState.PLANNED)
    planned_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Set (under delivery.unknown_policy = "hold") just before the message's data goes to the
    # server: a lease that runs out with it set may have been delivered, so it is held.
    handed_over_at: Mapped[datetime | None]


class Delivery(Leased, Base):
    """One digest for one subscriber and local date; its papers are fixed once ranked."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # One digest per subscriber per local date: a constraint, not a hope.
        UniqueConstraint("subscriber_id", "local_date", name="uq_delivery_subscriber_date"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
        # The daily cap counts today's sends.
        Index("ix_deliveries_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Message-ID, archive link
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=public_id)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    local_date: Mapped[date]
    since: Mapped[datetime]  # candidates were papers first seen from here on
    ranked_at: Mapped[datetime | None]  # its papers are fixed from then on
    paper_count: Mapped[int] = mapped_column(default=0)


class TransactionalMail(Leased, Base):
    """A mail someone's action asked for (confirm a subscription or a new address, a link to
    the preferences page), waiting in an outbox of its own with the digests' leases, states
    and retries, and sent ahead of them. Its bytes are made when it is asked for (the links in
    it are signed then) and dropped once it is sent."""

    __tablename__ = "transactional_mails"
    __table_args__ = (Index("ix_transactional_mails_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=public_id)
    # The subscriber it concerns; a deleted subscriber's waiting mail goes with them.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # confirm, confirm_address, manage_link
    recipient: Mapped[str] = mapped_column(String(320))
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the message as it goes on the wire


class DeliveryItem(Base):
    """A paper chosen for a delivery, with its rank, score and reasons."""

    __tablename__ = "delivery_items"
    __table_args__ = (UniqueConstraint("delivery_id", "paper_id", name="uq_item_delivery_paper"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    position: Mapped[int]
    section: Mapped[str] = mapped_column(String(10), default="picks")
    score: Mapped[float] = mapped_column(Float)
    relevance: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[kind, label], ...]
    highlight: Mapped[list[str]] = mapped_column(default=list)


class SentPaper(Base):
    """The sent log: a paper goes to a subscriber at most once, ever."""

    __tablename__ = "sent_papers"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "paper_id", name="uq_sent_subscriber_paper"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    # The paper as the reader saw it when it was chosen ("worth another look" compares it
    # with the paper now); NULL in rows logged before this was recorded: never compared.
    upvotes_then: Mapped[int | None]
    code_then: Mapped[bool | None] = mapped_column(Boolean)
    version_then: Mapped[int | None]
    # The digest that brought it back once under "worth another look". No foreign key: it
    # records that this happened even if that digest is gone (and SQLite would have to
    # copy the table to add one).
    second_look_delivery_id: Mapped[int | None]


class Bounce(Base):
    """A permanent failure or a bounce report, mapped to the subscriber it concerns."""

    __tablename__ = "bounces"
    __table_args__ = (
        # The same report ingested twice (a retried hook call) is one bounce.
        UniqueConstraint("delivery_id", "kind", name="uq_bounce_delivery_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    received_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))  # failed (5xx at send), hard, soft, complaint
    status: Mapped[str | None] = mapped_column(String(20))  # e.g. 5.1.1
    diagnostic: Mapped[str | None] = mapped_column(Text)


class RateEvent(Base):
    """One counted event for a rate limit (a subscribe attempt, a confirmation mail)."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_bucket_key_at", "bucket", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(40))  # e.g. subscribe-ip, confirm-mail
    key: Mapped[str] = mapped_column(String(64))  # a hash of the address or client, never clear
    at: Mapped[datetime]


class Feedback(Base):
    """A reader's "more like this" (+1) or "fewer like this" (-1) on one paper.

    One row per (subscriber, paper): a new choice replaces the old one, and undo deletes it.
    """

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "paper_id", name="uq_feedback_subscriber_paper"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    # The digest the choice was made from; None for a seed (an uploaded list, a CLI --like).
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    value: Mapped[int]  # +1 more like this, -1 fewer like this
    created_at: Mapped[datetime]


class PaperEmbedding(Base):
    """A paper's sentence vector, computed once when the paper is stored (semantic extra)."""

    __tablename__ = "paper_embeddings"

    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(100))  # a new model means re-embedding
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32
    created_at: Mapped[datetime]
