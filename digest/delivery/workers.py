"""Senders: claim a small batch, send each message, record each outcome at once.

One ``Sender`` is one worker process's sending side. It runs ``smtp.max_connections``
lanes, each a thread with its own connection, sharing one rate limiter. The sender sees two
narrow interfaces (as in listmonk): the outbox that hands out the next batch, and a mailer
per lane. What a delivery's message looks like comes from a ``prepare`` function the
pipeline gives; this module knows nothing of papers.

Why it cannot lose or multiply mail:

- a delivery is marked sent in its own commit right after the server's 250, so at most the
  messages on the wire when a process dies (one per lane) can go out again, and a resend is
  the same message with the same Message-ID;
- a lane starts a message only while its lease outlasts the longest exchange the SMTP
  timeouts allow, so no live sender's message is ever claimed by another; it gives back the
  rest of its batch instead;
- the outcome of a send is recorded even if the database is briefly away: the lane retries
  the commit until its lease would run out.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from digest.config import Settings, max_send_seconds
from digest.delivery import bounces, outbox, policy
from digest.delivery.limits import RateLimiter
from digest.delivery.mailers import Mailer, SendError
from digest.errors import DeliveryError
from digest.models import Delivery
from digest.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One claimed delivery, ready to render and send."""

    delivery_id: int
    public_id: str
    subscriber_id: int
    recipient: str
    attempts: int  # including this one
    planned_at: datetime
    name: str  # names it in files and logs
    # Renders the message (an EmailMessage or its wire bytes); runs outside any transaction.
    build: Callable[[], EmailMessage | bytes]


Prepare = Callable[[Session, Delivery], Outgoing]
# Called once per claimed batch before ``Prepare`` runs for each of its deliveries, so what
# they need can be loaded with a few queries for the whole batch.
PrepareBatch = Callable[[Session, Sequence[Delivery]], None]


@dataclass(slots=True)
class SendSummary:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    released: int = 0  # claimed but given back untried (a stop, a short lease, a refusing server)
    errors: int = 0  # a lane stopped by an error it could not record (the database was away)
    capped: bool = False  # the daily cap was reached
    files: list[str] = field(default_factory=list)
    # Where the time went, summed over lanes: rendering messages, handing them to the mailer.
    render_seconds: float = 0.0
    send_seconds: float = 0.0

    @property
    def claimed(self) -> int:
        return self.sent + self.deferred + self.failed + self.unknown + self.released

    def add(self, other: SendSummary) -> None:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "capped":
                self.capped = mine or theirs
            else:
                setattr(self, f.name, mine + theirs)


class _ServerRefused(Exception):
    """The server will not take mail from us now; the lane stops until the retry time."""

    def __init__(self, retry_at: datetime, reason: str) -> None:
        self.retry_at = retry_at
        self.reason = reason


class Sender:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        prepare: Prepare,
        *,
        owner: str,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        only: Sequence[int] | None = None,
        batch: int | None = None,
        lease: timedelta | None = None,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
        prepare_batch: PrepareBatch | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.prepare = prepare
        self.prepare_batch = prepare_batch
        self.owner = owner
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.stop = stop or threading.Event()
        self.only = only
        self.batch = batch or settings.delivery.batch_size
        self.lease = lease or timedelta(seconds=settings.delivery.lease_seconds)
        self.limiter = limiter or RateLimiter(settings.smtp.messages_per_second)
        self.rng = rng or random.Random()
        smtp = settings.mail.transport == "smtp"
        # A message starts only while the lease outlasts the longest possible exchange.
        self.guard = timedelta(seconds=max_send_seconds(settings.smtp) if smtp else 5.0)
        self._lock = threading.Lock()

    # -- the lanes ------------------------------------------------------------------

    def run(self, make_mailer: Callable[[], Mailer], lanes: int | None = None) -> SendSummary:
        """Send until nothing is ready, over ``lanes`` connections at once."""
        count = lanes or (
            self.settings.smtp.max_connections if self.settings.mail.transport == "smtp" else 1
        )
        total = SendSummary()
        if count == 1:
            total.add(self._lane_with(make_mailer))
            return total

        def work() -> None:
            result = self._lane_with(make_mailer)
            with self._lock:
                total.add(result)

        threads = [
            threading.Thread(target=work, name=f"sender-{n}", daemon=True) for n in range(count)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return total

    def _lane_with(self, make_mailer: Callable[[], Mailer]) -> SendSummary:
        mailer = make_mailer()
        summary = SendSummary()
        try:
            self.lane(mailer, summary)
        except SQLAlchemyError as exc:  # an outage: the worker's loop waits and tries again
            log.warning("sender lane stopped: database unavailable (%s)", _first_line(exc))
            summary.errors += 1
        except Exception:  # a lane's failure is logged; the others go on
            log.exception("sender lane stopped")
            summary.errors += 1
        finally:
            mailer.close()
        return summary

    def lane(self, mailer: Mailer, summary: SendSummary | None = None) -> SendSummary:
        """Claim, send and record batch after batch until nothing is ready or a stop."""
        summary = summary if summary is not None else SendSummary()
        while not self.stop.is_set():
            now = self.clock()
            with self.store.transaction() as session:
                claimed = outbox.claim(
                    session,
                    now,
                    self.owner,
                    self.batch,
                    self.lease,
                    self.only,
                    policy=self.settings.delivery.unknown_policy,
                    daily_cap=self.settings.delivery.daily_cap,
                )
                ready: list[Outgoing] = []
                if claimed and self.prepare_batch is not None:
                    try:
                        self.prepare_batch(session, claimed)
                    except SQLAlchemyError:
                        raise
                    except Exception:  # each delivery's ``prepare`` then says what is wrong
                        log.exception("cannot prepare a batch of %d deliveries", len(claimed))
                for delivery in claimed:
                    try:
                        ready.append(self.prepare(session, delivery))
                    except SQLAlchemyError:
                        raise  # the database's trouble, not this delivery's
                    except Exception as exc:  # one bad delivery is set aside
                        log.exception("delivery %s: cannot prepare its message", delivery.id)
                        delivery.status = "failed"
                        delivery.lease_until = None
                        delivery.last_error = f"internal error: {exc!r}"[:2000]
                        summary.failed += 1
            if not claimed:
                if self.settings.delivery.daily_cap and self._cap_reached(now):
                    summary.capped = True
                return summary
            lease_end = now + self.lease
            for index, outgoing in enumerate(ready):
                self.limiter.acquire()
                if self.stop.is_set() or self.clock() + self.guard > lease_end:
                    summary.released += self._release(ready[index:])
                    break
                try:
                    self._send_one(mailer, outgoing, summary, lease_end)
                except _ServerRefused as refused:
                    summary.released += self._release(
                        ready[index + 1 :], refused.retry_at, f"not tried: {refused.reason}"
                    )
                    return summary
        return summary

    def _cap_reached(self, now: datetime) -> bool:
        with self.store.transaction() as session:
            return outbox.used_today(session, now) >= self.settings.delivery.daily_cap

    def _release(
        self, rest: Sequence[Outgoing], retry_at: datetime | None = None, reason: str | None = None
    ) -> int:
        if not rest:
            return 0
        ids = [o.delivery_id for o in rest]
        return self._record(lambda s: outbox.release(s, ids, self.owner, retry_at, reason), None)

    # -- one message ----------------------------------------------------------------

    def envelope_sender(self, outgoing: Outgoing) -> str:
        template = self.settings.delivery.return_path
        return (
            template.replace("{id}", outgoing.public_id)
            if template
            else (self.settings.mail.from_address)
        )

    def _send_one(
        self, mailer: Mailer, outgoing: Outgoing, summary: SendSummary, lease_end: datetime
    ) -> None:
        clock = time.perf_counter()
        try:
            message = outgoing.build()
        except Exception as exc:  # a bug in one message must not stop the rest
            log.exception("delivery %s: cannot render", outgoing.delivery_id)
            internal = f"internal error: {exc!r}"
            self._record(
                lambda s: outbox.mark_failed(s, outgoing.delivery_id, self.owner, internal),
                lease_end,
            )
            summary.failed += 1
            return
        sending = time.perf_counter()
        summary.render_seconds += sending - clock
        on_data = None
        if self.settings.delivery.unknown_policy == "hold":

            def on_data() -> None:
                self._record(
                    lambda s: outbox.mark_handed_over(
                        s, outgoing.delivery_id, self.owner, self.clock()
                    ),
                    lease_end,
                )

        try:
            reply = mailer.send(
                message,
                sender=self.envelope_sender(outgoing),
                recipient=outgoing.recipient,
                name=outgoing.name,
                on_data=on_data,
            )
        except SendError as exc:
            summary.send_seconds += time.perf_counter() - sending
            self._failed(outgoing, exc, exc.stage, exc.code, summary, lease_end)
            return
        except DeliveryError as exc:  # another mailer's plain error
            stage = "connection" if exc.temporary else "recipient"
            self._failed(outgoing, exc, stage, None, summary, lease_end)
            return
        except Exception as exc:  # the same: record it and go on
            log.exception("delivery %s: could not send", outgoing.delivery_id)
            internal = f"internal error: {exc!r}"
            self._record(
                lambda s: outbox.mark_failed(s, outgoing.delivery_id, self.owner, internal),
                lease_end,
            )
            summary.failed += 1
            return
        summary.send_seconds += time.perf_counter() - sending
        # Accepted: record it now, before anything else can happen to this process.
        recorded = self._record(
            lambda s: outbox.mark_sent(s, outgoing.delivery_id, self.owner, self.clock(), reply),
            lease_end,
        )
        if not recorded:
            log.error("delivery %s: sent, but its lease had passed to another sender", outgoing)
        summary.sent += 1
        if reply.startswith("written to "):
            summary.files.append(reply.removeprefix("written to "))

    def _failed(
        self,
        outgoing: Outgoing,
        exc: DeliveryError,
        stage: str,
        code: int | None,
        summary: SendSummary,
        lease_end: datetime,
    ) -> None:
        now = self.clock()
        reason = str(exc)
        settings = self.settings.delivery
        log.warning("delivery %s to %s: %s", outgoing.delivery_id, _mask(outgoing.recipient), exc)
        retry_at = policy.next_attempt(
            settings, now, outgoing.planned_at, outgoing.attempts, self.rng
        )
        if stage == "unknown":
            keep = retry_at if settings.unknown_policy == "resend" else None
            self._record(
                lambda s: outbox.mark_unknown(
                    s, outgoing.delivery_id, self.owner, reason, retry_at=keep
                ),
                lease_end,
            )
            summary.unknown += 1
            return
        if not exc.temporary:

            def fail(session: Session) -> None:
                if outbox.mark_failed(session, outgoing.delivery_id, self.owner, reason):
                    bounces.record(
                        session,
                        settings,
                        subscriber_id=outgoing.subscriber_id,
                        delivery_id=outgoing.delivery_id,
                        kind="failed",
                        status=str(code) if code else None,
                        diagnostic=reason,
                        now=now,
                    )

            self._record(fail, lease_end)
            summary.failed += 1
            return
        if retry_at is None:
            hours = settings.give_up_hours
            reason = f"gave up after {outgoing.attempts} attempts over {hours:g} hours: {reason}"
        self._record(
            lambda s: outbox.mark_failed(
                s, outgoing.delivery_id, self.owner, reason, retry_at=retry_at
            ),
            lease_end,
        )
        if retry_at is None:
            summary.failed += 1
            return
        summary.deferred += 1
        if stage == "server":
            raise _ServerRefused(retry_at, reason)

    # -- recording through a database outage ------------------------------------------

    def _record(self, work: Callable[[Session], Any], lease_end: datetime | None) -> Any:
        """Run ``work`` in a transaction, retrying while the database is unreachable, until
        ``lease_end`` (after it another sender may take the row, so the result is moot)."""
        delay = 0.1
        while True:
            try:
                with self.store.transaction() as session:
                    return work(session)
            except (OperationalError, DBAPIError) as exc:
                if isinstance(exc, DBAPIError) and not (
                    isinstance(exc, OperationalError) or exc.connection_invalidated
                ):
                    raise
                if lease_end is None or self.clock() + timedelta(seconds=delay) >= lease_end:
                    raise
                log.warning("database unavailable (%s); retrying in %.1f s", exc.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _mask(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
