"""Senders: claim a small batch, send each message, record each outcome at once.

One ``Sender`` is one worker process's sending side. It runs ``smtp.max_connections``
lanes, each a thread with its own connection, sharing one rate limiter. The sender sees two
narrow interfaces (as in listmonk): a :class:`Queue` that hands out the next batch and
records outcomes (``digest.app.sending`` keeps it in the database), and a mailer per lane.
It knows nothing of papers, tables or SQL.

Why it cannot lose or multiply mail:

- a delivery is recorded as sent right after the server's 250, before its connection
  carries another message (the queue commits it, or on SQLite writes it to the sending
  thread's journal, which its next claim commits), so at most the messages on the wire
  when a process dies (one per lane) can go out again, and a resend is the same message
  with the same Message-ID;
- a lane hands a message to the server only while its lease outlasts the longest exchange
  the SMTP timeouts allow (checked again after rendering, which takes time too), so no live
  sender's message is ever claimed by another; it gives back the rest of its batch instead;
- only the message's own fault fails it for good (a permanent refusal, an address the
  server cannot take); anything else (the database, a rendering error, the network) leaves
  it to be tried again later, until the give-up age;
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
from functools import partial
from typing import Literal, Protocol, TypeVar

from digest.config import Settings, max_send_seconds
from digest.delivery import policy
from digest.delivery.limits import RateLimiter
from digest.delivery.mailers import Envelope, Mailer, SendError
from digest.domain.states import Lease
from digest.errors import DeliveryError, StoreError, Unavailable

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")


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
    # Which outbox it is in: a digest, or a transactional mail (sent ahead of digests).
    kind: Literal["digest", "mail"] = "digest"


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


@dataclass(frozen=True, slots=True)
class Failure:
    """A message not delivered (failed, of unknown fate, or given back untried): it waits
    until ``retry_at``, or is done with (None); ``bounce``: a permanent refusal of the
    address (``code`` the server's), which counts toward suppressing it."""

    reason: str
    at: datetime
    retry_at: datetime | None = None
    bounce: bool = False
    code: int | None = None


class Queue(Protocol):
    """Where a sender's work comes from and its outcomes go. Each call is its own
    transaction; a passing database outage raises ``digest.errors.Unavailable``."""

    def claim(self, lease: Lease, limit: int, summary: SendSummary) -> list[Outgoing] | None:
        """Up to ``limit`` messages given ``lease``; None when nothing is ready. One
        that cannot be prepared is set aside (counted in ``summary``), not returned."""
        ...

    def mark_sent(self, outgoing: Outgoing, owner: str, now: datetime, reply: str) -> bool:
        """Recorded where a crash cannot lose it before this returns; False when the lease
        is known to have passed to another sender (a journaling queue tells that later)."""
        ...

    def mark_handed_over(self, outgoing: Outgoing, owner: str, now: datetime) -> bool: ...

    def mark_failed(self, outgoing: Outgoing, owner: str, failure: Failure) -> bool: ...

    def mark_unknown(self, outgoing: Outgoing, owner: str, failure: Failure) -> bool:
        """The connection died after the final dot: resend at ``failure.retry_at``, or hold."""
        ...

    def release(self, outgoings: Sequence[Outgoing], owner: str, why: Failure | None) -> int:
        """Give back claimed messages never tried (to wait until ``why.retry_at``, if given)."""
        ...

    def cap_reached(self, now: datetime) -> bool:
        """Whether today's sends reached ``delivery.daily_cap``."""
        ...

    def close(self) -> None:
        """Give back what the queue holds between calls (a database connection)."""
        ...


@dataclass(frozen=True, slots=True)
class _Rendered:
    """A message rendered (or the error that stopped it), and how long that took."""

    outgoing: Outgoing
    message: EmailMessage | bytes | None
    error: Exception | None
    seconds: float


RENDER_AHEAD = 3  # messages rendered ahead of their turn while a reply is awaited, at most


class _Ahead:
    """A batch's messages rendered before their turn, by their place in the batch."""

    def __init__(self, ready: Sequence[Outgoing]) -> None:
        self.ready = ready
        self._rendered: dict[int, _Rendered] = {}

    def render(self, index: int, render: Callable[[Outgoing], _Rendered]) -> None:
        if index not in self._rendered:
            self._rendered[index] = render(self.ready[index])

    def take(self, index: int) -> _Rendered | None:
        return self._rendered.pop(index, None)


class _ServerRefused(Exception):
    """The server will not take mail from us now; the lane stops until the retry time."""

    def __init__(self, retry_at: datetime, reason: str) -> None:
        self.retry_at = retry_at
        self.reason = reason


class _Released(Exception):
    """The lane stops here: the rest of its batch goes back, from this message on, or from
    the next one when this one's outcome is recorded (``recorded``)."""

    def __init__(self, recorded: bool = False) -> None:
        self.recorded = recorded


class Sender:
    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        *,
        owner: str,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        batch: int | None = None,
        lease: timedelta | None = None,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.owner = owner
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.stop = stop or threading.Event()
        self.batch = batch or settings.delivery.batch_size
        self.lease = lease or timedelta(seconds=settings.delivery.lease_seconds)
        self.limiter = limiter or RateLimiter(settings.smtp.messages_per_second)
        self.rng = rng or random.Random()
        smtp = settings.mail.transport == "smtp"
        # A message goes to the mailer only while the lease outlasts the longest exchange.
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
            try:
                total.add(self._lane_with(make_mailer))
            finally:
                self.close()
            return total

        def work() -> None:
            result = self._lane_with(make_mailer)
            with self._lock:
                total.add(result)

        threads = [
            threading.Thread(target=work, name=f"sender-{n}", daemon=True) for n in range(count)
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            self.close()
        return total

    def close(self) -> None:
        """Give back what the queue holds between calls; :meth:`run` does at its end, a
        caller of :meth:`lane` when it is done with the sender."""
        self.queue.close()

    def _lane_with(self, make_mailer: Callable[[], Mailer]) -> SendSummary:
        mailer = make_mailer()
        summary = SendSummary()
        try:
            self.lane(mailer, summary)
        except StoreError as exc:  # an outage: the worker's loop waits and tries again
            log.warning("sender lane stopped: %s", exc)
            summary.errors += 1
        except Exception:  # a lane's failure is logged; the others go on
            log.exception("sender lane stopped")
            summary.errors += 1
        finally:
            mailer.close()
        return summary

    def lane(self, mailer: Mailer, summary: SendSummary | None = None) -> SendSummary:
        """Claim, send and record batch after batch until nothing is ready or a stop. A
        database error while claiming rolls the claim back and stops the lane."""
        summary = summary if summary is not None else SendSummary()
        while not self.stop.is_set():
            now = self.clock()
            lease = Lease(self.owner, now, self.lease)
            ready = self.queue.claim(lease, self.batch, summary)
            if ready is None:
                if self.settings.delivery.daily_cap and self.queue.cap_reached(now):
                    summary.capped = True
                return summary
            lease_end = lease.until
            ahead = _Ahead(ready)  # the messages rendered ahead of their turn
            for index in range(len(ready)):
                self.limiter.acquire()
                try:
                    self._send_one(mailer, ahead, index, summary, lease_end)
                except _Released as stopped:
                    summary.released += self._release(ready[index + stopped.recorded :], None)
                    break
                except _ServerRefused as refused:
                    why = Failure(f"not tried: {refused.reason}", self.clock(), refused.retry_at)
                    summary.released += self._release(ready[index + 1 :], why)
                    return summary
        return summary

    def _release(self, rest: Sequence[Outgoing], why: Failure | None) -> int:
        if not rest:
            return 0
        return self._record(partial(self.queue.release, rest, self.owner, why), None)

    # -- one message ----------------------------------------------------------------

    def envelope_sender(self, outgoing: Outgoing) -> str:
        template = self.settings.delivery.return_path
        if template and outgoing.kind == "digest":  # bounces name the digest they concern
            return template.replace("{id}", outgoing.public_id)
        return self.settings.mail.from_address

    def _must_stop(self, lease_end: datetime) -> bool:
        return self.stop.is_set() or self.clock() + self.guard > lease_end

    def _render(self, outgoing: Outgoing) -> _Rendered:
        clock = time.perf_counter()
        try:
            message = outgoing.build()
        except Exception as exc:
            log.exception("delivery %s: cannot render", outgoing.delivery_id)
            return _Rendered(outgoing, None, exc, time.perf_counter() - clock)
        return _Rendered(outgoing, message, None, time.perf_counter() - clock)

    def _send_one(
        self,
        mailer: Mailer,
        ahead: _Ahead,
        index: int,
        summary: SendSummary,
        lease_end: datetime,
    ) -> None:
        """Render (unless ``ahead`` holds it already) and send the batch's message at
        ``index`` and record how it went; raises ``_Released`` when the lane must stop before
        it (a stop, or a lease too short for one more exchange). The message that follows is
        rendered into ``ahead`` while the server takes this one in (and, while the reply has
        not begun to come, the ones after it, up to ``RENDER_AHEAD``); its envelope goes ahead
        to the mailer, whose commands for it may travel behind this one's final dot."""
        if self._must_stop(lease_end):
            raise _Released
        outgoing = ahead.ready[index]
        after = ahead.ready[index + 1] if index + 1 < len(ahead.ready) else None
        rendered = ahead.take(index)
        if rendered is None:
            rendered = self._render(outgoing)
        summary.render_seconds += rendered.seconds
        if rendered.message is None:
            # Rendering is a pure function of stored rows, so a failure here is a bug or the
            # machine's trouble (memory, a race), never the reader's: the message is tried
            # again later like any temporary failure, and given up only at the give-up age.
            error = DeliveryError(
                f"internal error while rendering: {rendered.error!r}", temporary=True
            )
            self._failed(outgoing, error, "render", None, summary, lease_end)
            return
        if self.stop.is_set():
            raise _Released
        if self._must_stop(lease_end):
            # Rendering used up the lease: sending now could collide with a sender that took
            # the row over. Not sent; tried again after the backoff like a temporary failure
            # (so a render that always takes this long cannot spin, and ends at the give-up).
            error = DeliveryError(
                "not sent: rendering took longer than the lease leaves for sending",
                temporary=True,
            )
            self._failed(outgoing, error, "render", None, summary, lease_end)
            raise _Released(recorded=True)
        on_data = None
        if self.settings.delivery.unknown_policy == "hold":

            def on_data() -> None:
                self._record(
                    partial(self.queue.mark_handed_over, outgoing, self.owner, self.clock()),
                    lease_end,
                )

        sending = time.perf_counter()
        then = None if after is None else self._envelope(after)
        try:
            finish = mailer.start(rendered.message, self._envelope(outgoing), on_data, then=then)
        except SendError as exc:
            summary.send_seconds += time.perf_counter() - sending
            self._failed(outgoing, exc, exc.stage, exc.code, summary, lease_end)
            return
        except DeliveryError as exc:  # another mailer's plain error
            stage = "connection" if exc.temporary else "recipient"
            self._failed(outgoing, exc, stage, None, summary, lease_end)
            return
        except Exception as exc:  # a mailer's bug: not the message's fault either
            log.exception("delivery %s: could not send", outgoing.delivery_id)
            error = DeliveryError(f"internal error while sending: {exc!r}", temporary=True)
            self._failed(outgoing, error, "connection", None, summary, lease_end)
            return
        summary.send_seconds += time.perf_counter() - sending
        # The next message is rendered while the server takes this one in: its reply is
        # then read without waiting for it (and with PIPELINING, so are the next's). While
        # the reply has not begun to arrive, the ones after it are rendered too (a few):
        # the core would otherwise sit idle until the server, which waits for one, answers.
        if after is not None and not self.stop.is_set():
            ahead.render(index + 1, self._render)
            further = index + 2
            last = min(len(ahead.ready), index + 1 + RENDER_AHEAD)
            while further < last and not mailer.reply_waiting() and not self.stop.is_set():
                ahead.render(further, self._render)
                further += 1
        sending = time.perf_counter()
        try:
            reply = finish()
        except SendError as exc:
            summary.send_seconds += time.perf_counter() - sending
            self._failed(outgoing, exc, exc.stage, exc.code, summary, lease_end)
            return
        except Exception as exc:  # a mailer's bug: what became of the message is not known
            log.exception("delivery %s: no reply read", outgoing.delivery_id)
            error = SendError(
                f"internal error while sending: {exc!r}", temporary=True, stage="unknown"
            )
            self._failed(outgoing, error, "unknown", None, summary, lease_end)
            return
        summary.send_seconds += time.perf_counter() - sending
        # Accepted: record it now, before anything else can happen to this process.
        recorded = self._record(
            partial(self.queue.mark_sent, outgoing, self.owner, self.clock(), reply), lease_end
        )
        if not recorded:
            log.error("delivery %s: sent, but its lease had passed to another sender", outgoing)
        summary.sent += 1
        if reply.startswith("written to "):
            summary.files.append(reply.removeprefix("written to "))

    def _envelope(self, outgoing: Outgoing) -> Envelope:
        return Envelope(self.envelope_sender(outgoing), outgoing.recipient, outgoing.name)

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
            unknown = Failure(reason, now, keep)
            self._record(partial(self.queue.mark_unknown, outgoing, self.owner, unknown), lease_end)
            summary.unknown += 1
            return
        if not exc.temporary:
            # Only a refused recipient counts toward suppressing the address; a message this
            # server cannot carry (an address needing SMTPUTF8) says nothing about it.
            failure = Failure(reason, now, bounce=stage == "recipient", code=code)
            fail = partial(self.queue.mark_failed, outgoing, self.owner, failure)
            self._record(fail, lease_end)
            summary.failed += 1
            return
        if retry_at is None:
            reason = policy.gave_up(self.settings.delivery, outgoing.attempts, reason)
        failure = Failure(reason, now, retry_at)
        defer = partial(self.queue.mark_failed, outgoing, self.owner, failure)
        self._record(defer, lease_end)
        if retry_at is None:
            summary.failed += 1
            return
        summary.deferred += 1
        if stage == "server":
            raise _ServerRefused(retry_at, reason)

    # -- recording through a database outage ------------------------------------------

    def _record(self, work: Callable[[], T], lease_end: datetime | None) -> T:
        """Run ``work`` (one queue call, one transaction), retrying while the database is
        away, until ``lease_end`` (after it another sender may take the row: moot)."""
        delay = 0.1
        while True:
            try:
                return work()
            except Unavailable as exc:
                if lease_end is None or self.clock() + timedelta(seconds=delay) >= lease_end:
                    raise
                log.warning("%s; retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _mask(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"
