"""Sending from the outbox: the senders' queue kept in the database, and the digests' messages.

:class:`OutboxQueue` is the :class:`digest.delivery.sender.Queue` a sender works from:
it claims transactional mail first, then digests, loads what a claimed batch of digests
needs with a few queries, and records every outcome at once: on SQLite a message sent goes
to the sending thread's journal (``digest.store.sent_journal``) and into the database with
its next claim; everything else, and everything on PostgreSQL, is committed at once.
:class:`DigestMaker` turns a claimed digest into its message (rendered by the sending
thread, just before it is sent). :func:`send_all` is what `digest send`, a worker's round
and the scheduler's tick run.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypedDict, Unpack

from digest.app.ranked import RankedItems
from digest.config import Settings, secret_key
from digest.delivery import policy
from digest.delivery.mailers import Mailer, make_mailer
from digest.delivery.sender import Failure, Outgoing, Sender, SendSummary
from digest.domain.items import PaperCard, RankedItem, message_id, outbox_name
from digest.domain.states import Lease
from digest.domain.tokens import SignedLinks, Tokens
from digest.errors import StoreError
from digest.render import DigestInput, Renderer
from digest.store import (
    Connection,
    Session,
    Store,
    bounces,
    digests,
    mail_outbox,
    outbox,
    papers,
    sent_journal,
)
from digest.store.digests import Reader
from digest.store.group_commit import GroupCommit
from digest.store.mail_outbox import ClaimedMail
from digest.store.outbox import Stored

log = logging.getLogger(__name__)


def make_renderer(settings: Settings) -> Renderer:
    folder = settings.paths.templates_dir
    cache = Path(settings.paths.var_dir) / "cache" / "templates"
    return Renderer(settings.mail, Path(folder) if folder else None, cache_dir=cache)


def signed_links(settings: Settings) -> SignedLinks:
    return SignedLinks(settings.web.base_url, Tokens(secret_key(settings)))


def worker_name(settings: Settings | None = None) -> str:
    """The name a sender's claims carry: ``delivery.worker_name``, else host:pid."""
    if settings is not None and settings.delivery.worker_name:
        return settings.delivery.worker_name
    return f"{socket.gethostname()}:{os.getpid()}"


def digest_input(
    settings: Settings,
    links: SignedLinks,
    reader: Reader,
    delivery: Stored,
    items: Sequence[tuple[RankedItem, PaperCard]],
    *,
    manage_url: str | None = None,
    feed: bool = True,
) -> DigestInput:
    """What the renderer makes a digest from. ``manage_url`` replaces the preferences link
    and ``feed`` False leaves out the feed link (the archive page hands out neither: its
    links are never revoked, and both of those must be revoked by "sign out everywhere")."""
    template = settings.delivery.return_path
    return DigestInput(
        to_address=reader.email,
        local_date=delivery.local_date,
        items=list(items),
        profile_summary=reader.profile.describe(weights=False),
        message_id=message_id(delivery.public_id, settings.mail.from_address),
        date_header=delivery.planned_at,
        manage_url=manage_url or links.manage(reader.public_id, reader.token_version),
        unsubscribe_url=links.unsubscribe(reader.public_id),
        archive_url=links.archive(delivery.public_id),
        return_path=template.replace("{id}", delivery.public_id) if template else None,
        feedback_urls=links.feedback(delivery.public_id, len(items)),
        feed_url=links.feed(reader.public_id, reader.token_version) if feed else None,
    )


class DigestMaker:
    """Claimed digests' messages, loaded a claimed batch at a time: one query for the
    readers, one for the chosen items, one for the papers not seen yet (paper cards are kept
    for the run: the same papers go to everyone today; shared by the sending threads)."""

    MAX_CARDS = 50_000

    def __init__(self, settings: Settings, renderer: Renderer, links: SignedLinks) -> None:
        self.settings = settings
        self.renderer = renderer
        self.links = links
        self.cards: dict[int, PaperCard] = {}
        self._lock = threading.Lock()

    def prepare(
        self, session: Session, claimed: Sequence[Stored], kept: RankedItems | None = None
    ) -> dict[int, Outgoing | Exception]:
        """Each claimed digest's message-to-be (rendered when sent), or why it cannot be;
        the papers of those in ``kept`` from there, the others' from the database."""
        readers = digests.readers(session, {c.subscriber_id for c in claimed})
        chosen = kept.take(c.id for c in claimed) if kept is not None else {}
        if len(chosen) < len(claimed):
            chosen.update(digests.items_of(session, [c.id for c in claimed if c.id not in chosen]))
        cards = self._cards(session, {i.paper_id for items in chosen.values() for i in items})
        found: dict[int, Outgoing | Exception] = {}
        for one in claimed:
            try:
                reader = readers[one.subscriber_id]
                items = [(item, cards[item.paper_id]) for item in chosen[one.id]]
                data = digest_input(self.settings, self.links, reader, one, items)
            except Exception as exc:  # this one only; the rest of the batch goes on
                found[one.id] = exc
                continue
            found[one.id] = Outgoing(
                delivery_id=one.id,
                public_id=one.public_id,
                subscriber_id=one.subscriber_id,
                recipient=reader.email,
                attempts=one.attempts,
                planned_at=one.planned_at,
                name=outbox_name(one.local_date, reader.email, one.public_id),
                build=lambda data=data: self.renderer.render(data).raw,  # type: ignore[misc]
            )
        return found

    def _cards(self, session: Session, wanted: set[int]) -> dict[int, PaperCard]:
        with self._lock:
            if len(self.cards) > self.MAX_CARDS:
                self.cards.clear()
            cards = {i: self.cards[i] for i in wanted if i in self.cards}
        missing = wanted - cards.keys()
        if missing:
            loaded = papers.cards_by_ids(session, missing)
            cards.update(loaded)
            with self._lock:
                self.cards.update(loaded)
        return cards


class OutboxQueue:
    """A sender's work from the database: transactional mail first, then digests.

    ``maker`` None: transactional mail only (the web app's sender); ``mail`` False: digests
    only; ``mail_ids``: only these transactional mails; ``only``: these subscribers' mail.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        maker: DigestMaker | None,
        *,
        mail: bool = True,
        mail_ids: Sequence[int] | None = None,
        only: Sequence[int] | None = None,
        rng: random.Random | None = None,
        kept: RankedItems | None = None,
    ) -> None:
        self.settings = settings
        self.kept = kept
        self.store = store
        self.maker = maker
        self.mail = mail
        self.mail_ids = mail_ids
        self.only = only
        self.rng = rng or random.Random()
        # The sending threads' outcomes, committed together when they come together.
        self.outcomes = GroupCommit(store)
        # On SQLite, messages sent are journaled and applied with the thread's next claim.
        self.journals = sent_journal.journals_for(store)

    def claim(self, lease: Lease, limit: int, summary: SendSummary) -> list[Outgoing] | None:
        policy_name = self.settings.delivery.unknown_policy
        with sent_journal.transaction(self.store, self.journals) as session:
            if self.mail:
                mails = mail_outbox.claim(
                    session,
                    lease,
                    limit,
                    ids=self.mail_ids,
                    subscriber_ids=self.only,
                    policy=policy_name,
                )
                if mails:
                    return [_mail_outgoing(m) for m in mails]
            if self.maker is None:
                return None
            claimed = self._claim_digests(session, lease, limit)
        if not claimed:
            return None
        # Loaded after the claim's commit: the rows are leased to us, and on SQLite the
        # write lock, which every other sender's outcomes wait for, is not held meanwhile.
        with self.store.transaction() as session:
            prepared = self.maker.prepare(session, claimed, self.kept)
        ready: list[Outgoing] = []
        broken: list[tuple[Stored, Exception]] = []
        for one in claimed:
            made = prepared[one.id]
            if isinstance(made, Outgoing):
                ready.append(made)
            else:
                log.error("delivery %s: cannot prepare its message: %r", one.id, made)
                broken.append((one, made))
        if broken:
            with self.store.transaction() as session:
                for one, made in broken:
                    self._set_aside(session, one, lease.owner, made, lease.start, summary)
        return ready

    def _claim_digests(self, session: Session, lease: Lease, limit: int) -> list[Stored]:
        """The digests this process ranked and holds first (see ``digest.app.ranked``);
        those of them not claimable any more (another sender took them) are let go."""
        options = {
            "policy": self.settings.delivery.unknown_policy,
            "daily_cap": self.settings.delivery.daily_cap,
        }
        kept = self.kept
        mine = kept.reserve(limit) if kept is not None else []
        if kept is not None and mine:
            try:
                claimed = outbox.claim(session, lease, limit, self.only, ids=mine, **options)
            except BaseException:
                kept.forget(mine)
                raise
            taken = {one.id for one in claimed}
            kept.forget(one for one in mine if one not in taken)
            if claimed:
                return claimed
        return outbox.claim(session, lease, limit, self.only, **options)

    def _set_aside(
        self,
        session: Session,
        one: Stored,
        owner: str,
        exc: Exception,
        now: datetime,
        summary: SendSummary,
    ) -> None:
        """A claimed digest whose message could not be prepared (a bug, not the message's
        fault) waits for a later try, in the claim's own transaction; it fails only at the
        give-up age."""
        settings = self.settings.delivery
        reason = f"internal error while preparing the message: {exc!r}"
        retry_at = policy.next_attempt(settings, now, one.planned_at, one.attempts, self.rng)
        if retry_at is None:
            reason = policy.gave_up(settings, one.attempts, reason)
            summary.failed += 1
        else:
            summary.deferred += 1
        outbox.mark_failed(session, one.id, owner, reason, retry_at=retry_at)

    def mark_sent(self, outgoing: Outgoing, owner: str, now: datetime, reply: str) -> bool:
        if self.journals is not None:
            sent = sent_journal.Sent(outgoing.kind, outgoing.delivery_id, owner, now, reply[:1000])
            if self.journals.record(sent):
                return True  # a lease lost meanwhile is told when the record is applied
        model = outbox.OUTBOXES[outgoing.kind]
        return self.outcomes.run(
            lambda connection: outbox.mark_sent(
                connection, outgoing.delivery_id, owner, now, reply, model
            ),
            one_statement=True,
        )

    def mark_handed_over(self, outgoing: Outgoing, owner: str, now: datetime) -> bool:
        model = outbox.OUTBOXES[outgoing.kind]
        return self.outcomes.run(
            lambda connection: outbox.mark_handed_over(
                connection, outgoing.delivery_id, owner, now, model
            ),
            one_statement=True,
        )

    def mark_failed(self, outgoing: Outgoing, owner: str, failure: Failure) -> bool:
        def work(connection: Connection) -> bool:
            marked = _mark(
                outbox.mark_failed, connection, outgoing, owner, failure.reason, failure.retry_at
            )
            if marked and failure.bounce and outgoing.subscriber_id:
                # A session joined to the group's transaction: it commits with it.
                with Session(bind=connection) as session:
                    bounces.record(
                        session,
                        self.settings.delivery,
                        subscriber_id=outgoing.subscriber_id,
                        delivery_id=outgoing.delivery_id if outgoing.kind == "digest" else None,
                        kind="failed",
                        status=str(failure.code) if failure.code else None,
                        diagnostic=failure.reason,
                        now=failure.at,
                    )
            return marked

        return self.outcomes.run(work)

    def mark_unknown(self, outgoing: Outgoing, owner: str, failure: Failure) -> bool:
        return self.outcomes.run(
            lambda connection: _mark(
                outbox.mark_unknown, connection, outgoing, owner, failure.reason, failure.retry_at
            )
        )

    def release(self, outgoings: Sequence[Outgoing], owner: str, why: Failure | None) -> int:
        retry_at, reason = (why.retry_at, why.reason) if why else (None, None)
        released = 0
        with sent_journal.transaction(self.store, self.journals) as session:
            for kind, model in outbox.OUTBOXES.items():
                ids = [o.delivery_id for o in outgoings if o.kind == kind]
                if ids:
                    released += outbox.release(session, ids, owner, retry_at, reason, model)
        return released

    def cap_reached(self, now: datetime) -> bool:
        with self.store.transaction() as session:
            return outbox.used_today(session, now) >= self.settings.delivery.daily_cap

    def close(self) -> None:
        """Apply what the journals still hold (the threads have stopped) and close them; if
        the database is away, the files stay for the next claim, anyone's, to apply."""
        self.outcomes.close()
        if self.journals is None:
            return
        try:
            if self.journals.pending():
                with sent_journal.transaction(self.store, self.journals, everyone=True):
                    pass
        except StoreError as exc:
            log.warning(
                "%d sent message(s) not recorded yet (%s): %s keeps them for the next claim",
                self.journals.pending(),
                exc,
                self.journals.folder,
            )
        finally:
            self.journals.close()


def _mark(
    mark: Callable[..., bool],
    session: Session | Connection,
    outgoing: Outgoing,
    owner: str,
    reason: str,
    retry_at: datetime | None,
) -> bool:
    """A failed or unknown outcome, in whichever outbox the message is."""
    model = outbox.OUTBOXES[outgoing.kind]
    return mark(session, outgoing.delivery_id, owner, reason, retry_at=retry_at, model=model)


def _mail_outgoing(mail: ClaimedMail) -> Outgoing:
    payload = mail.payload
    return Outgoing(
        delivery_id=mail.id,
        public_id=mail.public_id,
        subscriber_id=mail.subscriber_id or 0,
        recipient=mail.recipient,
        attempts=mail.attempts,
        planned_at=mail.planned_at,
        name=f"{mail.kind}-{mail.planned_at:%Y%m%dT%H%M%S}-{mail.recipient}-{mail.public_id[:6]}",
        build=lambda: payload,
        kind="mail",
    )


class SenderOptions(TypedDict, total=False):
    renderer: Renderer | None
    links: SignedLinks | None
    clock: Callable[[], datetime] | None
    owner: str | None  # the name on its claims (default: delivery.worker_name or host:pid)
    batch: int | None
    lease: timedelta | None
    only: Sequence[int] | None  # only these subscribers' mail
    stop: threading.Event | None
    kept: RankedItems | None  # the papers of digests this process ranked (digest.app.ranked)


def make_sender(settings: Settings, store: Store, **options: Unpack[SenderOptions]) -> Sender:
    """A sender of the digests the pipeline ranked, and the transactional mail ahead of
    them; each sending thread renders a digest just before it sends it."""
    maker = DigestMaker(
        settings,
        options.get("renderer") or make_renderer(settings),
        options.get("links") or signed_links(settings),
    )
    return Sender(
        settings,
        OutboxQueue(settings, store, maker, only=options.get("only"), kept=options.get("kept")),
        owner=options.get("owner") or worker_name(settings),
        clock=options.get("clock"),
        stop=options.get("stop"),
        batch=options.get("batch"),
        lease=options.get("lease"),
    )


def send_all(
    settings: Settings,
    store: Store,
    *,
    mailers: Callable[[], Mailer] | None = None,
    lanes: int | None = None,
    **options: Unpack[SenderOptions],
) -> SendSummary:
    """Send everything ready over ``smtp.max_connections`` connections at once (or
    ``lanes``). One bad message is recorded and skipped; it never stops the run."""
    sender = make_sender(settings, store, **options)
    return sender.run(mailers or (lambda: make_mailer(settings)), lanes)


def send_ready(
    settings: Settings, store: Store, mailer: Mailer, **options: Unpack[SenderOptions]
) -> SendSummary:
    """Send everything ready over one connection, ``mailer``'s."""
    sender = make_sender(settings, store, **options)
    try:
        return sender.lane(mailer)
    finally:
        sender.close()


def recover(settings: Settings, store: Store, owner: str, now: datetime) -> int:
    """Take back what a sender named ``owner`` held before it restarted (its rows are
    treated as if their lease had run out now); how many. What dead senders journaled as
    sent is recorded first: those rows were sent."""
    with sent_journal.transaction(store, sent_journal.journals_for(store)) as session:
        return outbox.recover(session, owner, now, settings.delivery.unknown_policy)
