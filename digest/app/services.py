"""What the use cases share, made once per process by a shell (the web app, a command).

Holds no state of its own between calls beyond what is safe to share between threads: the
settings, the store, the clock, the link signer and the renderer (loaded on first use).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from digest.app.access import AddressTokens
from digest.app.sending import make_renderer
from digest.config import Settings, secret_key
from digest.domain.tokens import SignedLinks, Tokens
from digest.render import Renderer, default_templates_dir
from digest.render.mails import Mails
from digest.store import Store
from digest.store.ratelimit import RateLimiter


def templates_dir(settings: Settings) -> Path:
    folder = settings.paths.templates_dir
    return Path(folder) if folder else default_templates_dir()


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: Tokens
    links: SignedLinks
    address_tokens: AddressTokens
    mails: Mails
    limiter: RateLimiter
    clock: Callable[[], datetime]
    _renderer: Renderer | None = field(default=None, repr=False)
    _renderer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def make(
        cls,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] | None = None,
        **more: object,
    ) -> Services:
        secret = secret_key(settings)
        tokens = Tokens(secret)
        now = clock or (lambda: datetime.now(UTC))
        return cls(
            settings=settings,
            store=store,
            tokens=tokens,
            links=SignedLinks(settings.web.base_url, tokens),
            address_tokens=AddressTokens(secret),
            mails=Mails(settings, templates_dir(settings), now),
            limiter=RateLimiter(secret),
            clock=now,
            **more,  # type: ignore[arg-type]
        )

    @property
    def confirm_max_age(self) -> float:
        return self.settings.web.confirm_days * 86400

    def renderer(self) -> Renderer:
        """The digest renderer, loaded on first use (CSS inlining takes a moment)."""
        with self._renderer_lock:
            if self._renderer is None:
                self._renderer = make_renderer(self.settings)
            return self._renderer
