"""The command line: thin commands over ``digest.app``, one module per group.

    common       the Typer app, global options, what commands share; ``main``
    papers       fetch, papers
    subscribers  subscribe, subscribers, unsubscribe, profile, reactivate
    digests      preview, rank, send, run-once, demo
    service      serve, web, worker
    operator     db, outbox, bounce, status
    quality      quality (how digests are received)
    doctor       doctor (the preflight before the first real send)

Importing the package registers every command on ``app``, in this order.
"""

from digest.cli import papers, subscribers  # noqa: I001  (the order of `digest --help`)
from digest.cli import digests, service, operator, quality, doctor
from digest.cli.common import app, db_app, main, outbox_app
from digest.cli.operator import EX_TEMPFAIL

__all__ = [
    "EX_TEMPFAIL",
    "app",
    "db_app",
    "digests",
    "doctor",
    "main",
    "operator",
    "outbox_app",
    "papers",
    "quality",
    "service",
    "subscribers",
]
