"""`digest doctor`: is this installation ready for its first real send?

Each check gives one :class:`Check` per thing it judged: ``ok``, ``warn`` (works, but not as
it should, or could not be judged from here) or ``fail`` (mail will not arrive, or will be
marked as spam), with what was found and, unless ok, what to do. :func:`run` runs them in
this order (``only`` picks some):

    base-url     web.base_url is https (plain http only on this machine: a warning)
    healthz      GET {base_url}/healthz answers 200
    spf          the envelope sender's domain has one SPF record and it lets the relay send
    dkim         the selector's DNS record holds the public half of our DKIM key
    dmarc        _dmarc.<From domain> exists, has p=, and SPF or DKIM aligns with From
    relay        a session with smtp.host: TLS as configured, login; QUIT before any mail
    bounce-mx    the bounce address's domain receives mail (MX, else an A record)
    domains      Message-IDs and the VERP address use a real domain, not localhost
    unsubscribe  the one-click unsubscribe URL answers a POST (with a made-up token)
    html-size    the largest digest's HTML stays under Gmail's 102 KB clip

The checks of DNS records are in :mod:`digest.app.dns_checks`, those of the web app in
:mod:`digest.app.web_checks`, html-size in :mod:`digest.app.digest_size`; relay and domains
are here. Every DNS question goes through one :class:`~digest.delivery.dns_records.Dns` set
up from ``[doctor]``. Nothing is sent, nobody is unsubscribed, the database is not opened.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

import httpx

from digest.config import Settings
from digest.delivery.dns_records import Dns, DnsError
from digest.delivery.relay_probe import ProbeError, probe
from digest.domain.items import message_id
from digest.errors import ValidationError

log = logging.getLogger(__name__)

Level = Literal["ok", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("ok", "warn", "fail")  # least to most severe

CHECK_NAMES = (
    "base-url",
    "healthz",
    "spf",
    "dkim",
    "dmarc",
    "relay",
    "bounce-mx",
    "domains",
    "unsubscribe",
    "html-size",
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    message: str  # what was found
    advice: str = ""  # what to do; empty when ok

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def worst(checks: Collection[Check]) -> Level:
    """The overall level: the most severe one found (ok when there is nothing)."""
    return max((c.level for c in checks), key=LEVELS.index, default="ok")


@dataclass
class Doctor:
    """What the checks share: the settings, one resolver, one HTTP client, and what an
    earlier check found that a later one depends on."""

    settings: Settings
    dns: Dns
    http: httpx.Client
    tls: ssl.SSLContext | None = None  # None: the mailer's own (the system's trusted CAs)
    web_down: str | None = None  # set by healthz when the web app could not be reached

    @classmethod
    @contextmanager
    def make(cls, settings: Settings, tls: ssl.SSLContext | None = None) -> Iterator[Doctor]:
        doctor = settings.doctor
        dns = Dns(doctor.nameservers, doctor.timeout)  # a bad nameservers entry: ConfigError
        verify: ssl.SSLContext | bool = tls if tls is not None else True
        with httpx.Client(timeout=doctor.timeout, verify=verify, follow_redirects=False) as http:
            yield cls(settings, dns, http, tls)

    @property
    def from_domain(self) -> str:
        return _domain_of(self.settings.mail.from_address)

    @property
    def bounce_domain(self) -> str:
        """Where bounces go, and the envelope sender's domain of every digest."""
        return _domain_of(self.settings.delivery.return_path or self.settings.mail.from_address)


CheckFunction = Callable[[Doctor], list[Check]]


def run(
    settings: Settings, *, only: Collection[str] = (), tls: ssl.SSLContext | None = None
) -> list[Check]:
    """Every check (or those named in ``only``), in the order of :data:`CHECK_NAMES`."""
    unknown = sorted(set(only) - set(CHECK_NAMES))
    if unknown:
        raise ValidationError(
            f"no check named {', '.join(unknown)}; the checks: {', '.join(CHECK_NAMES)}"
        )
    functions = _functions()
    found: list[Check] = []
    with Doctor.make(settings, tls) as doctor:
        for name in CHECK_NAMES:
            if only and name not in only:
                continue
            try:
                found.extend(functions[name](doctor))
            except Exception as exc:  # one broken check must not hide the others' lines
                log.exception("doctor: the %s check failed", name)
                found.append(
                    Check(
                        name,
                        "fail",
                        f"the check itself failed: {type(exc).__name__}: {exc}",
                        "this is a bug in `digest doctor`; please report it with this line",
                    )
                )
    return found


def _functions() -> dict[str, CheckFunction]:
    # These modules import this one for Check and Doctor.
    from digest.app import digest_size, dns_checks, web_checks

    return {
        "base-url": web_checks.check_base_url,
        "healthz": web_checks.check_healthz,
        "spf": dns_checks.check_spf,
        "dkim": dns_checks.check_dkim,
        "dmarc": dns_checks.check_dmarc,
        "relay": check_relay,
        "bounce-mx": dns_checks.check_bounce_mx,
        "domains": check_domains,
        "unsubscribe": web_checks.check_unsubscribe,
        "html-size": digest_size.check_html_size,
    }


def dns_level(error: DnsError) -> Level:
    """No answer in time: cannot judge (warn). A server that answers with an error
    (SERVFAIL): receivers get it too, and defer or refuse the mail (fail)."""
    return "warn" if error.problem == "timeout" else "fail"


DNS_ADVICE = "run the check again once DNS answers; doctor.nameservers chooses the DNS server asked"


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def is_local_host(host: str) -> bool:
    """localhost, a name under .localhost, or a loopback address."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- the relay ------------------------------------------------------------------------------

_PROBE_ADVICE = {
    "connect": "check smtp.host and smtp.port, and that this machine may reach the relay",
    "greeting": "the relay turned the session away: see its answer",
    "ehlo": "the relay turned the session away: see its answer",
    "starttls": 'use the relay\'s STARTTLS port (587), or smtp.security = "tls" for port 465; '
    "a certificate must name smtp.host and come from a CA this machine trusts (a private "
    "CA's file can be given in SSL_CERT_FILE)",
    "tls": "check smtp.port (465 for implicit TLS); a certificate must name smtp.host and "
    "come from a CA this machine trusts (a private CA's file can be given in SSL_CERT_FILE)",
    "login": "check smtp.username and smtp.password (better set as DIGEST_SMTP__PASSWORD)",
}


def check_relay(doctor: Doctor) -> list[Check]:
    settings = doctor.settings
    smtp = settings.smtp
    where = f"{smtp.host}:{smtp.port}"
    if settings.mail.transport != "smtp":
        return [
            Check(
                "relay",
                "warn",
                f'mail.transport is "{settings.mail.transport}": mail is written to '
                f"{settings.paths.outbox_dir}, not sent; the relay {where} was not checked",
                'set mail.transport = "smtp" and the [smtp] settings before the first real send',
            )
        ]
    try:
        session = probe(smtp, settings.doctor.timeout, doctor.tls)
    except ProbeError as exc:
        return [Check("relay", "fail", str(exc), _PROBE_ADVICE[exc.step])]
    if session.tls:
        how = "STARTTLS" if smtp.security == "starttls" else "TLS"
        tls = f"{how} ({session.tls}, certificate verified)"
    else:
        tls = "no TLS"
    login = f"login as {smtp.username} accepted" if session.logged_in else "no login"
    found = f"{where} ({session.address}): {tls}, {login}; QUIT before any mail"
    if smtp.security == "none" and not session.loopback:
        return [
            Check(
                "relay",
                "warn",
                f"{found}; without TLS the login and every mail cross the network unencrypted",
                'set smtp.security = "starttls" (port 587) or "tls" (port 465)',
            )
        ]
    return [Check("relay", "ok", found)]


# -- the domains mails name -----------------------------------------------------------------

_RESERVED_TLDS = ("example", "invalid", "localhost", "test", "local")


def placeholder(domain: str) -> str | None:
    """Why ``domain`` cannot be a real mail domain, or None when it can be."""
    name = domain.lower().rstrip(".")
    labels = name.split(".")
    if name in ("localhost", "localhost.localdomain"):
        return "a name that only means this machine"
    if len(labels) < 2:
        return "a bare host name, not a domain"
    if labels[-2:] in (["example", "org"], ["example", "com"], ["example", "net"]):
        return "reserved for examples (RFC 2606)"
    if labels[-1] in _RESERVED_TLDS:
        return f"under .{labels[-1]}, which is reserved and never on the internet"
    return None


def check_domains(doctor: Doctor) -> list[Check]:
    settings = doctor.settings
    mid = message_id("x", settings.mail.from_address)
    mid_domain = mid.rpartition("@")[2].rstrip(">")
    return_path = settings.delivery.return_path
    problems = []
    reason = placeholder(mid_domain)
    if reason:
        problems.append(
            f"Message-IDs end in @{mid_domain} ({reason}; from mail.from_address = "
            f"{settings.mail.from_address})"
        )
    if return_path:
        reason = placeholder(doctor.bounce_domain)
        if reason:
            problems.append(
                f"the VERP address {return_path} is at {doctor.bounce_domain} ({reason})"
            )
    if problems:
        return [
            Check(
                "domains",
                "fail",
                "; ".join(problems),
                "set mail.from_address (and delivery.return_path) to addresses at a domain you own",
            )
        ]
    bounces = (
        f"bounces go to {return_path} (VERP)"
        if return_path
        else "delivery.return_path is not set: bounces go to mail.from_address"
    )
    return [Check("domains", "ok", f"Message-IDs end in @{mid_domain}; {bounces}")]
