"""The few exceptions the program raises on purpose.

DigestError                 anything the user or operator can act on; the CLI prints
│                           its message on one line and exits non-zero, no traceback
├── ConfigError             a setting is missing, unknown or of the wrong type
├── StoreError              the database is unreachable or its schema is behind
│   ├── Unavailable         the database cannot be used right now (down, restarting,
│   │                       locked): the work it interrupted is retried, never failed
│   └── Conflict            another process stored the same row first: read again
├── SourceError             a source answered with something that is not a listing
│                           (an error feed, HTML, truncated XML/JSON, a hung server)
├── ValidationError         a user's input (an address, a term, a date) is not acceptable
└── DeliveryError           a message could not be handed to the mail server;
                            ``temporary`` says whether a later try may succeed
"""

from __future__ import annotations


class DigestError(Exception):
    """Base class: the message is meant for a person and names what is wrong."""

    exit_code = 1


class ConfigError(DigestError):
    exit_code = 2


class StoreError(DigestError):
    exit_code = 3


class Unavailable(StoreError):
    """A passing outage: what it interrupted is retried later, never marked failed."""


class Conflict(StoreError):
    """A unique row another process stored between our read and our write."""


class SourceError(DigestError):
    """A source failed. ``source`` names it so a summary can say which one."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.reason = message


class ValidationError(DigestError):
    exit_code = 2


class DeliveryError(DigestError):
    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary
