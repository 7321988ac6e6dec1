"""Helpers for the web app's in-process tests: settings that mail through a real aiosmtpd
server, a movable clock, and a synchronous client over ``httpx.ASGITransport``."""

from __future__ import annotations

import asyncio
import email
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any

import httpx
from smtp_server import Recorder
from sqlalchemy import select

from digest.app import fetching
from digest.config import Settings, load_settings
from digest.domain.profiles import build_profile
from digest.domain.schedules import Schedule
from digest.domain.tokens import Tokens
from digest.models import Paper, RateEvent, Subscriber
from digest.store import Store, subscribers
from digest.web import create_app

BASE = "https://digest.example.org"


@contextmanager
def serving(server: Any) -> Iterator[None]:
    """A uvicorn server (``digest.web.server.make_server``) running in a thread until the
    block ends."""
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


SECRET = "web-test-secret-0123456789"
NOW = datetime(2026, 9, 24, 9, 0, tzinfo=UTC)


def web_settings(settings: Settings, smtp_host: str, smtp_port: int, **extra: str) -> Settings:
    environ = {
        "DIGEST_DATABASE__URL": settings.database.url,
        "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
        "DIGEST_PATHS__OUTBOX_DIR": str(settings.paths.outbox_dir),
        "DIGEST_MAIL__TRANSPORT": "smtp",
        "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
        "DIGEST_SMTP__HOST": smtp_host,
        "DIGEST_SMTP__PORT": str(smtp_port),
        "DIGEST_SMTP__SECURITY": "none",
        "DIGEST_WEB__BASE_URL": BASE,
        "DIGEST_WEB__SECRET_KEY": SECRET,
        "DIGEST_RANKING__SEMANTIC": "false",  # keywords alone, as without the extra
    }
    environ.update({f"DIGEST_{key.upper()}": value for key, value in extra.items()})
    return load_settings(environ=environ)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Client:
    """A synchronous face on ``httpx.AsyncClient`` over the app, with its own cookie jar."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, ip: str = "203.0.113.7"):
        self.loop = loop
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url=BASE)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def csrf(self, url: str = "/") -> str:
        """Open a page with a form and return its CSRF token (the cookie is kept)."""
        return csrf_of(self.get(url).text)

    def submit(self, url: str, data: dict[str, Any], page: str | None = None) -> httpx.Response:
        """POST ``data`` the way the page at ``page`` (default: ``url``) would."""
        token = self.csrf(page or url)
        return self.post(url, data={"csrf_token": token, **data})

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@dataclass
class Harness:
    settings: Settings
    store: Store
    recorder: Recorder
    clock: Clock = field(default_factory=Clock)
    app: Any = None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    clients: list[Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = create_app(self.settings, self.store, clock=self.clock)
        self.tokens = Tokens(SECRET)

    def client(self, ip: str = "203.0.113.7") -> Client:
        made = Client(self.app, self.loop, ip)
        self.clients.append(made)
        return made

    def close(self) -> None:
        for made in self.clients:
            made.close()
        self.loop.close()

    # -- mail --------------------------------------------------------------------------

    def send_digests(self) -> int:
        """Plan, rank and send today's digests over SMTP, as a worker does; how many sent."""
        from digest.app import digests, sending
        from digest.delivery.mailers import SmtpMailer
        from digest.domain.tokens import SignedLinks
        from digest.render import Renderer

        now = self.clock()
        assert digests.plan_and_rank(self.settings, self.store, now, for_date=now.date()).planned
        mailer = SmtpMailer(self.settings.smtp)
        try:
            sent = sending.send_ready(
                self.settings,
                self.store,
                mailer,
                renderer=Renderer(self.settings.mail),
                links=SignedLinks(self.settings.web.base_url, Tokens(self.settings.web.secret_key)),
                clock=self.clock,
            )
        finally:
            mailer.close()
        return sent.sent

    def mails_to(self, address: str) -> list[EmailMessage]:
        found = []
        for received in self.recorder.to(address):
            parsed = email.message_from_bytes(received.data, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    def last_link(self, address: str, path: str) -> str:
        """The path of the last ``BASE + path…`` link mailed to ``address``."""
        [*_, message] = self.mails_to(address)
        text = message.get_body(("plain",)).get_content()
        links = re.findall(re.escape(BASE) + r"(" + re.escape(path) + r"[^\s<>\"]+)", text)
        assert links, f"no {path} link in the mail to {address}"
        return links[-1]

    # -- data --------------------------------------------------------------------------

    def subscriber(self, address: str) -> Subscriber | None:
        with self.store.transaction() as session:
            return subscribers.find(session, address)

    def add(self, address: str, status: str = "active", **interests: Any) -> Subscriber:
        with self.store.transaction() as session:
            person, _ = subscribers.upsert(
                session,
                address,
                build_profile(**interests),
                Schedule.checked("Europe/Berlin", 7),
                confirmed=status == "active",
                now=self.clock(),
            )
            if status == "unsubscribed":
                subscribers.unsubscribe(person, self.clock())
            elif status != "active":
                person.status = status
        found = self.subscriber(address)
        assert found is not None
        return found

    def manage_path(self, person: Subscriber) -> str:
        return f"/manage/{self.tokens.make('manage', person.public_id, person.token_version)}"

    def unsubscribe_path(self, person: Subscriber) -> str:
        return f"/unsubscribe/{self.tokens.make('unsubscribe', person.public_id)}"

    def rate_events(self) -> list[RateEvent]:
        with self.store.transaction() as session:
            return list(session.scalars(select(RateEvent)))

    def ingest_sample(self, seen_at: datetime | None = None) -> None:
        [summary] = fetching.fetch(self.settings, self.store, ["sample"])
        assert summary.status == "ok"
        with self.store.transaction() as session:
            for paper in session.scalars(select(Paper)):
                paper.first_seen_at = seen_at or self.clock() - timedelta(hours=6)


SUBSCRIBE_FORM = {
    "email": "reader@example.org",
    "include": "language model, reasoning",
    "exclude": "survey",
    "authors": "",
    "timezone": "Europe/Berlin",
    "send_hour": "7",
    "frequency": "daily",
    "weekday": "mon",
    "website": "",
}


def visible_text(html: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.split())
