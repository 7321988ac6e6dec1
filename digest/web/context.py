"""``Web``: what every request handler shares, made once by :func:`digest.web.create_app`:
the use cases' ``Services``, plus what only the web has (forms' CSRF, pages, the live
preview, the transactional mail sender)."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request

from digest.app.candidates import LivePreviews
from digest.app.services import Services
from digest.app.transactional import MailSender
from digest.web.csrf import Csrf
from digest.web.pages import Pages
from digest.web.security import client_address


@dataclass(kw_only=True)
class Web(Services):
    csrf: Csrf
    pages: Pages
    previews: LivePreviews
    mail_sender: MailSender
    # For fetching seed papers from arXiv; tests put an httpx.MockTransport here.
    http_transport: httpx.BaseTransport | None = field(default=None)

    def client(self, request: Request) -> str:
        return client_address(request.scope, self.settings.web.behind_proxy)

    def send_later(self, *mail_ids: int | None) -> BackgroundTask | None:
        """Send queued mail after the page is answered: the answer's timing never depends on
        the mail server; what the server does not take now is retried from the outbox."""
        ids = [i for i in mail_ids if i is not None]
        if not ids:
            return None
        return BackgroundTask(self.mail_sender.send, ids)


def web_of(request: Request) -> Web:
    return request.app.state.web  # type: ignore[no-any-return]
