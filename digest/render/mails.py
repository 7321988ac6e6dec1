"""The web app's transactional mails: confirm a subscription, confirm a new address, and a
fresh link to the preferences page. Each has a plain-text and an HTML template under
``templates/email/``.

They are made here and handed to the outbox (``digest.delivery.transactional``), which
sends them at once and retries what a server turns away for now.

These mails carry no List-Unsubscribe (they are answers to something someone just did, not
list mail) and none of the text typed into the form: a sign-up form that echoes its input
into mail to any address is a spam relay. Each says plainly what to do if it was not you.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from digest.config import Settings
from digest.domain.addresses import wire_form
from digest.render.text import checked_url, one_line
from digest.render.wire import POLICY, UTF8_POLICY

TEMPLATES = ("confirm.html", "confirm.txt", "manage_link.html", "manage_link.txt")

# Why a preferences link is mailed; each template words its opening line by it.
LINK_REASONS = ("already", "requested", "signed_out")


class Mails:
    def __init__(
        self, settings: Settings, templates_dir: Path, clock: Callable[[], datetime]
    ) -> None:
        folder = templates_dir / "email"
        missing = [name for name in TEMPLATES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"web mail templates missing in {folder}: {', '.join(missing)}")
        self.settings = settings
        self.clock = clock
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), disabled_extensions=("txt",), default=True
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        mail = settings.mail
        self.brand = one_line(mail.from_name, 120) or "Trending Papers"
        self.sender = Address(display_name=self.brand, addr_spec=mail.from_address)
        self.domain = mail.from_address.rpartition("@")[2] or "localhost"
        self.site = urlsplit(settings.web.base_url).netloc

    def _days(self) -> str:
        days = self.settings.web.confirm_days
        return f"{days:g} day" if days == 1 else f"{days:g} days"

    def _build(self, kind: str, to: str, subject: str, **context: object) -> EmailMessage:
        context.update(brand=self.brand, to_address=to, site=self.site, subject=subject)
        text = self.env.get_template(f"{kind}.txt").render(context)
        html = self.env.get_template(f"{kind}.html").render(context)
        wire, utf8 = wire_form(to)  # an IDN domain in its ASCII form
        message = EmailMessage(policy=UTF8_POLICY if utf8 else POLICY)
        message["From"] = self.sender
        message["To"] = wire
        if self.settings.mail.reply_to:
            message["Reply-To"] = self.settings.mail.reply_to
        message["Subject"] = subject
        message["Date"] = format_datetime(self.clock())
        message["Message-ID"] = make_msgid("web", domain=self.domain)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        return message

    def confirm_subscription(self, to: str, url: str) -> EmailMessage:
        return self._build(
            "confirm",
            to,
            f"Confirm your subscription to {self.brand}",
            url=checked_url(url, "confirm url"),
            days=self._days(),
            new_address=False,
        )

    def confirm_new_address(self, to: str, url: str) -> EmailMessage:
        return self._build(
            "confirm",
            to,
            f"Confirm your new address for {self.brand}",
            url=checked_url(url, "confirm url"),
            days=self._days(),
            new_address=True,
        )

    def manage_link(self, to: str, url: str, reason: str) -> EmailMessage:
        if reason not in LINK_REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        subjects = {
            "already": f"You are already subscribed to {self.brand}",
            "requested": f"Your link to change your {self.brand} preferences",
            "signed_out": f"Your new link to your {self.brand} preferences",
        }
        return self._build(
            "manage_link", to, subjects[reason], url=checked_url(url, "manage url"), reason=reason
        )
