"""Two mailers behind one narrow interface: SMTP, and files under the outbox folder.

``send`` hands one message over and returns the server's reply (or where the file went);
it raises ``DeliveryError`` with ``temporary`` set for 4xx replies, timeouts and dropped
connections, and unset for 5xx replies. Connections are reused across messages.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Protocol

from digest.config import Settings, SmtpSettings
from digest.errors import DeliveryError


class Mailer(Protocol):
    def send(self, message: EmailMessage, *, sender: str, recipient: str, name: str) -> str:
        """Hand ``message`` over for ``recipient``; ``name`` names it in files and logs."""
        ...

    def close(self) -> None: ...


def make_mailer(settings: Settings) -> Mailer:
    if settings.mail.transport == "smtp":
        return SmtpMailer(settings.smtp)
    return FileMailer(Path(settings.paths.outbox_dir))


class FileMailer:
    """Writes ``<name>.eml`` and an ``<name>.html`` preview; the embedded default."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage, *, sender: str, recipient: str, name: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)[:150] or "message"
        target = self.folder / f"{safe}.eml"
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, message.as_bytes())
        html = message.get_body(("html",))
        if html is not None:
            preview = html.get_content()
            _write_atomically(target.with_suffix(".html"), preview.encode("utf-8"))
        return f"written to {target}"

    def close(self) -> None:
        pass


def _write_atomically(path: Path, data: bytes) -> None:
    # A crash mid-write leaves the old file or none, never half a message.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class SmtpMailer:
    """SMTP with STARTTLS or implicit TLS, login, timeouts; one connection reused."""

    def __init__(self, settings: SmtpSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.security == "tls":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=self.ssl_context
                )
            else:
                connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            connection.ehlo()
            if s.security == "starttls":
                if not connection.has_extn("starttls"):
                    connection.close()
                    # Required TLS never falls back to plain text.
                    raise DeliveryError(
                        f"{s.host}:{s.port} does not offer STARTTLS and smtp.security is "
                        "starttls; nothing was sent in plain text",
                        temporary=True,
                    )
                connection.starttls(context=self.ssl_context)
                connection.ehlo()
            if s.username:
                connection.login(s.username, s.password)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login refused: {_reply(exc)}", temporary=False) from None
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"cannot connect to {s.host}:{s.port}: {_describe(exc)}", temporary=True
            ) from None
        return connection

    def send(self, message: EmailMessage, *, sender: str, recipient: str, name: str) -> str:
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        payload = message.as_bytes(policy=SMTP_POLICY)
        try:
            # MAIL, RCPT and DATA one by one, so the reply to the final dot is kept.
            code, text = connection.mail(sender)
            if code != 250:
                raise smtplib.SMTPResponseException(code, text)
            code, text = connection.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPResponseException(code, text)
            code, text = connection.data(payload)
            if code != 250:
                raise smtplib.SMTPResponseException(code, text)
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise _classify(exc) from None
        except (OSError, smtplib.SMTPException) as exc:
            # The connection is gone (or in an unknown state); the next message opens a new one.
            self._drop()
            raise DeliveryError(f"connection lost: {_describe(exc)}", temporary=True) from None
        return f"{code} {_text(text)}"

    def _reset(self) -> None:
        # After a refused message the session can go on once the transaction is reset.
        if self._connection is None:
            return
        try:
            self._connection.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                self._connection = None


def _text(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(raw.split())


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _classify(exc: smtplib.SMTPResponseException) -> DeliveryError:
    # 5xx is permanent; 4xx (and anything odd) may succeed later.
    permanent = 500 <= exc.smtp_code < 600
    return DeliveryError(f"server replied {_reply(exc)}", temporary=not permanent)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
