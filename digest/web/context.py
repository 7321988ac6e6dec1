"""``Web``: what every request handler shares, made once by :func:`digest.web.create_app`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

import httpx
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import Request

from digest.config import Settings
from digest.delivery import transactional
from digest.delivery.transactional import MailSender
from digest.domain.tokens import SignedLinks, Tokens
from digest.render import Renderer
from digest.store import Store
from digest.store.ratelimit import RateLimiter
from digest.web.access import AddressTokens
from digest.web.csrf import Csrf
from digest.web.mails import Mails
from digest.web.pages import Pages
from digest.web.preview import PreviewIndex
from digest.web.security import client_address


@dataclass
class Web:
    settings: Settings
    store: Store
    tokens: Tokens
    links: SignedLinks
    address_tokens: AddressTokens
    csrf: Csrf
    pages: Pages
    mails: Mails
    mail_sender: MailSender
    limiter: RateLimiter
    previews: PreviewIndex
    clock: Callable[[], datetime]
    make_renderer: Callable[[], Renderer]
    # For fetching seed papers from arXiv; tests put an httpx.MockTransport here.
    http_transport: httpx.BaseTransport | None = None
    _renderer: Renderer | None = field(default=None, repr=False)
    _renderer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def confirm_max_age(self) -> float:
        return self.settings.web.confirm_days * 86400

    def renderer(self) -> Renderer:
        """The digest renderer, loaded on first use (CSS inlining takes a moment)."""
        with self._renderer_lock:
            if self._renderer is None:
                self._renderer = self.make_renderer()
            return self._renderer

    def client(self, request: Request) -> str:
        return client_address(request.scope, self.settings.web.behind_proxy)

    def queue_mail(
        self,
        session: Session,
        message: EmailMessage,
        kind: str,
        recipient: str,
        subscriber_id: int | None,
    ) -> int:
        """Put ``message`` in the outbox within ``session``'s transaction: the change that
        asked for it and the mail are stored together, or neither is."""
        return transactional.enqueue(
            session,
            message,
            kind=kind,
            recipient=recipient,
            subscriber_id=subscriber_id,
            now=self.clock(),
        )

    def send_later(self, *mail_ids: int) -> BackgroundTask:
        """Send queued mail after the page is answered: the answer's timing never depends on
        the mail server; what the server does not take now is retried from the outbox."""
        return BackgroundTask(self.mail_sender.send, list(mail_ids))


def web_of(request: Request) -> Web:
    return request.app.state.web  # type: ignore[no-any-return]
