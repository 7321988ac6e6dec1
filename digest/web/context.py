"""``Web``: what every request handler shares, made once by :func:`digest.web.create_app`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request

from digest.config import Settings
from digest.render import Renderer
from digest.store import Store
from digest.tokens import Links, Tokens
from digest.web.access import AddressTokens
from digest.web.csrf import Csrf
from digest.web.mails import Mails
from digest.web.pages import Pages
from digest.web.preview import PreviewIndex
from digest.web.ratelimit import RateLimiter
from digest.web.security import client_address


@dataclass
class Web:
    settings: Settings
    store: Store
    tokens: Tokens
    links: Links
    address_tokens: AddressTokens
    csrf: Csrf
    pages: Pages
    mails: Mails
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

    def send_later(self, *mails: tuple[object, str]) -> BackgroundTask:
        """Send after the page is answered: the answer's timing never depends on the mail
        server, and a slow server never holds up the page."""

        def send_all() -> None:
            for message, recipient in mails:
                self.mails.send(message, recipient)  # type: ignore[arg-type]

        return BackgroundTask(send_all)


def web_of(request: Request) -> Web:
    return request.app.state.web  # type: ignore[no-any-return]
