"""A session with the relay like the mailer's, without sending: for `digest doctor`.

Connect, read the greeting, EHLO, then STARTTLS (``smtp.security = "starttls"``, required)
or TLS from the first byte (``"tls"``), log in when ``smtp.username`` is set, and QUIT. No
MAIL FROM is ever given. A step that fails raises :class:`ProbeError` naming the step and
what the server said; certificates are checked as the mailer checks them
(:func:`digest.delivery.mailers.tls_context`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import smtplib
import ssl
from dataclasses import dataclass
from typing import Literal

from digest.config import SmtpSettings
from digest.delivery.mailers import tls_context

Step = Literal["connect", "greeting", "ehlo", "starttls", "tls", "login"]


class ProbeError(Exception):
    def __init__(self, step: Step, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True, slots=True)
class RelaySession:
    address: str  # the IP address connected to
    tls: str | None  # "TLSv1.3", or None without TLS
    logged_in: bool

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address.split("%")[0]).is_loopback


def _problem(exc: Exception, step: Step, where: str, timeout: float) -> ProbeError:
    """What went wrong at ``step``, in the operator's words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return ProbeError(
            "tls" if step in ("tls", "connect") else "starttls",
            f"{where}: the TLS certificate was refused: {reason}",
        )
    if isinstance(exc, ssl.SSLError):
        return ProbeError(step, f"{where}: the TLS handshake failed: {exc.reason or exc}")
    if isinstance(exc, smtplib.SMTPConnectError):  # a greeting other than 220
        said = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return ProbeError("greeting", f"{where} greeted with {said}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        said = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return ProbeError("login", f"the relay refused the login: {said}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ProbeError("login", f"{where} offers no AUTH, so smtp.username cannot log in")
    if isinstance(exc, smtplib.SMTPResponseException):
        said = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return ProbeError(step, f"{where} refused {step.upper()}: {said}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        when = "before its greeting" if step in ("connect", "tls") else f"at {step.upper()}"
        return ProbeError(step, f"{where} closed the connection {when}")
    if isinstance(exc, TimeoutError):
        return ProbeError(step, f"{where} did not answer within {timeout:g} s")
    return ProbeError(step, f"cannot connect to {where}: {_reason(exc)}")


def probe(
    settings: SmtpSettings, timeout: float, context: ssl.SSLContext | None = None
) -> RelaySession:
    """Open a session with the relay and close it; ``context`` replaces the mailer's TLS
    context (tests trust their own certificate with it)."""
    context = context or tls_context()
    where = f"{settings.host}:{settings.port}"
    implicit = settings.security == "tls"
    client: smtplib.SMTP | None = None
    step: Step = "tls" if implicit else "connect"
    try:
        # Given the host, smtplib connects at once and keeps the name for the certificate
        # check of STARTTLS too (connect() alone would leave it empty).
        if implicit:
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        assert client.sock is not None
        address = str(client.sock.getpeername()[0])
        step = "ehlo"
        _ehlo(client, where)
        if settings.security == "starttls":
            step = "starttls"
            if not client.has_extn("starttls"):
                raise ProbeError(step, f"{where} does not offer STARTTLS")
            client.starttls(context=context)
            step = "ehlo"
            _ehlo(client, where)
        logged_in = False
        if settings.username:
            step = "login"
            client.login(settings.username, settings.password)
            logged_in = True
        version = client.sock.version() if isinstance(client.sock, ssl.SSLSocket) else None
        session = RelaySession(address, version, logged_in)
    except (ProbeError, OSError, smtplib.SMTPException) as exc:
        _close(client)
        if isinstance(exc, ProbeError):
            raise
        raise _problem(exc, step, where, timeout) from None
    with contextlib.suppress(OSError, smtplib.SMTPException):
        client.quit()
    _close(client)
    return session


def _ehlo(client: smtplib.SMTP, where: str) -> None:
    code, text = client.ehlo()
    if code != 250:
        raise ProbeError("ehlo", f"{where} refused EHLO: {code} {_text(text)}")


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()


def _text(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(raw.split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
