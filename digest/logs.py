"""Logging: one line per event, readable on a terminal, JSON for a log collector.

``setup(settings.logging, ...)`` configures the root logger once per process:

- ``format = "auto"``: coloured lines (rich) when stderr is a terminal, plain one-line text
  otherwise (``docker compose logs``, journald); ``"text"``: always the plain lines;
  ``"json"``: one JSON object per line with ``ts``, ``level``, ``logger``, ``msg``, ``pid``
  (and ``exc`` for a traceback, on the same line).
- ``level = "auto"``: ``info`` for the long-running services (``serve``, ``worker``, ``web``),
  ``warning`` for one-off commands, whose own output says what they did.
- Every line, whatever its format, passes through :func:`redact`: email addresses become
  ``a…@example.org`` and signed link tokens ``[token]``, including inside exception text and
  library messages (an SMTP reply quoting the recipient, a URL with a token in its path).
  Logs are kept longer and read by more people than the database; they never need an address.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from digest.config import LoggingSettings

# An address as it appears in log text: a local part, "@", a domain with at least one dot.
_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
# A signed token from itsdangerous: [.]base64url payload [. timestamp] . signature (27+ chars;
# a run of lowercase hex is a public id, as in a Message-ID, and is kept).
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_.-])\.?[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]{4,})?"
    r"\.(?![0-9a-f]{27,}(?![A-Za-z0-9_-]))[A-Za-z0-9_-]{27,}"
)
# Secrets in headers or query strings that a library might echo.
_BEARER = re.compile(r"(?i)\b(bearer|x-digest-secret:?)\s+[^\s,;\"']+")
_SECRET_PARAM = re.compile(r"(?i)\b(token|password|secret)=([^\s&,;\"']+)")

# Noisy libraries: quiet at the default level, detailed with -v.
_CHATTY = ("httpx", "httpcore", "apscheduler", "alembic", "cssutils")

# Attributes every LogRecord has; anything else came from ``extra=`` and goes into JSON
# (but not uvicorn's copy of its message with terminal colour codes).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def redact(text: str) -> str:
    """Text with every address masked and every token, bearer or password cut out."""
    if not text:
        return text
    text = _TOKEN.sub("[token]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    return _EMAIL.sub(_mask_match, text)


# Our own Message-IDs look like addresses (<digest.<public id>@domain>) and name no one.
_MESSAGE_ID_LOCAL = re.compile(r"digest\.[0-9a-f]{8,}")


def _mask_match(match: re.Match[str]) -> str:
    if _MESSAGE_ID_LOCAL.fullmatch(match["local"]):
        return match.group()
    return f"{match['local'][:1]}…@{match['domain']}"


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``2026-09-24T07:00:01Z WARNING digest.delivery.workers: message``, one line per event
    (a traceback follows on the same line, its line breaks written as ``\\n``). Fields given
    with ``extra=`` appear in JSON only: the message already says what they say."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info)
        elif record.exc_text:
            line += " | " + record.exc_text
        return _one_line(redact(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "pid": record.process,
        }
        for key, value in _extra(record).items():
            data.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            data["exc"] = redact(record.exc_text)
        return json.dumps(data, ensure_ascii=False, default=lambda v: redact(str(v)))


class RedactingFormatter(logging.Formatter):
    """For the terminal handler: the message (and any traceback) with addresses masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def resolve_format(configured: str, stream: IO[str] | None = None) -> str:
    """``rich``, ``text`` or ``json``: what ``auto`` means for this stream."""
    if configured != "auto":
        return configured
    stream = stream or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "rich" if tty and os.environ.get("TERM") != "dumb" else "text"


def resolve_level(configured: str, service: bool) -> str:
    """What ``auto`` means: every event of a long-running service (its log is its record),
    only problems for a one-off command (its output already says what it did)."""
    if configured != "auto":
        return configured
    return "info" if service else "warning"


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The command line's logging options (-v, --log-format, --log-level), kept so that
    processes a command starts log as it does."""

    verbose: bool = False
    format: str | None = None
    level: str | None = None


def setup(
    settings: LoggingSettings,
    *,
    verbose: bool = False,
    format: str | None = None,
    level: str | None = None,
    service: bool = True,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Configure the root logger: one handler on ``stream`` (stderr), replacing any other.

    ``verbose`` (-v) means debug; ``format`` and ``level`` override the settings (the CLI's
    --log-format and --log-level); ``service`` says whether this process is a long-running
    one, for ``level = "auto"``. Returns the handler, for tests.
    """
    chosen = resolve_format(format or settings.format, stream)
    name = "debug" if verbose else resolve_level(level or settings.level, service)
    numeric = getattr(logging, name.upper())
    stream = stream or sys.stderr
    handler: logging.Handler
    if chosen == "rich":
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(file=stream, stderr=stream is sys.stderr),
            show_path=False,
            show_time=True,
            omit_repeated_times=False,
            log_time_format="%H:%M:%S",
            markup=False,
            rich_tracebacks=False,
        )
        handler.setFormatter(RedactingFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    library_level = logging.DEBUG if verbose else max(numeric, logging.WARNING)
    for noisy in _CHATTY:
        logging.getLogger(noisy).setLevel(library_level)
    return handler
