"""Transactional mail (confirmations, preferences links): stored with the action that asked
for it, tried at once, and retried from the outbox like a digest.

The web app puts each mail in the outbox inside the transaction that changes the
subscriber (:func:`enqueue`), so the two are stored together or
not at all, then asks this module's :class:`MailSender` to try it at once, after the page is
answered. A mail the server does not take now (greylisting's 4xx, a relay that is down)
stays in the outbox and is tried again after the usual backoff: by the web process's own
retry thread, and by any `digest worker` or `digest serve`, which claim transactional mail
ahead of digests. Leases keep two of them from sending the same mail.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

from digest.app.sending import OutboxQueue
from digest.config import Settings
from digest.delivery.mailers import Mailer, payload_of
from digest.delivery.sender import Sender, SendSummary
from digest.errors import StoreError
from digest.store import Session, Store, mail_outbox

log = logging.getLogger(__name__)

KINDS = ("confirm", "confirm_address", "manage_link")
IDLE_SECONDS = 60.0  # the longest the retry thread sleeps when nothing is due sooner


def enqueue(
    session: Session,
    message: EmailMessage,
    *,
    kind: str,
    recipient: str,
    subscriber_id: int | None,
    now: datetime,
) -> int:
    """Store ``message`` for ``recipient`` in the outbox (in ``session``'s transaction)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of mail {kind!r}")
    return mail_outbox.enqueue(
        session,
        kind=kind,
        recipient=recipient,
        payload=payload_of(message),
        subscriber_id=subscriber_id,
        now=now,
    )


class MailSender:
    """Sends a process's transactional mail now, and what is due again later."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        mailer_factory: Callable[[], Mailer],
        clock: Callable[[], datetime],
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.mailer_factory = mailer_factory
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:web"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, ids: Sequence[int]) -> SendSummary:
        """Try these mails now; what the server does not take waits for a retry. Never
        raises: it runs after the page is answered, and the outbox keeps the mail."""
        if not ids:
            return SendSummary()
        return self._run(ids)

    def send_due(self) -> SendSummary:
        """Send every transactional mail whose time has come (first tries and retries)."""
        return self._run(None)

    def _run(self, ids: Sequence[int] | None) -> SendSummary:
        # Transactional mail only (no digest maker): digests are the workers' job.
        queue = OutboxQueue(self.settings, self.store, None, mail_ids=ids)
        sender = Sender(
            self.settings,
            queue,
            owner=self.owner,
            clock=self.clock,
            stop=self._stop,
            batch=len(ids) if ids else None,
        )
        summary = SendSummary()
        mailer: Mailer | None = None
        try:
            mailer = self.mailer_factory()
            sender.lane(mailer, summary)
        except StoreError as exc:
            log.warning("transactional mail: %s; retrying later", exc)
            summary.errors += 1
        except Exception:
            log.exception("transactional mail: sender stopped; retrying later")
            summary.errors += 1
        finally:
            sender.close()
            if mailer is not None:
                try:
                    mailer.close()
                except Exception:
                    log.exception("closing the mailer failed")
        self._wake.set()  # something may now be due later: the retry thread looks again
        return summary

    # -- the retry thread -------------------------------------------------------------

    def start(self) -> None:
        """Retry deferred mail in a background thread until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mail-retry", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = IDLE_SECONDS
            try:
                now = self.clock()
                with self.store.transaction() as session:
                    due = mail_outbox.due(session, now, self.settings.delivery.unknown_policy)
                if due is not None and due <= now:
                    if self.send_due().claimed:
                        continue
                    wait = 1.0  # another process holds it: look again soon
                elif due is not None:
                    wait = min(IDLE_SECONDS, max((due - now) / timedelta(seconds=1), 0.5))
            except StoreError as exc:
                log.warning("transactional mail: %s", exc)
            self._wake.wait(wait)
            self._wake.clear()
