"""The Typer application, its global options, and what every command shares.

A ``DigestError`` becomes one line on stderr and its exit code; never a traceback for a
user's mistake. Tables go to stdout (plain when piped); progress bars go to stderr, only when
it is a terminal; logs go to stderr as set by ``[logging]`` (see :mod:`digest.logs`).

Commands import the use cases they call inside their own body: `digest --help` and an
argument error then load only Typer and the settings, not the database, ranking and
rendering libraries.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console

from digest import __version__, logs
from digest.collector import freeze_at_exit
from digest.config import Settings, load_settings
from digest.errors import DigestError, ValidationError

if TYPE_CHECKING:
    from digest.store import Store

app = typer.Typer(
    help="Trending-papers digest: fetch new papers and mail each subscriber their daily picks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema: apply or inspect migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
outbox_app = typer.Typer(
    help="The outbox: deliveries by state; retry failed or held ones.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")

console = Console()
err_console = Console(stderr=True)

# Long-running commands: at logging.level = "auto" they log every event (info), the others
# only problems (warning).
SERVICES = frozenset({"serve", "worker", "web"})


class State:
    """What the global options set up, shared by the commands."""

    def __init__(self, config: Path | None) -> None:
        self.config_path = config
        self._settings: Settings | None = None
        # The logging options given on the command line, for processes this one starts.
        self.log_options = logs.LogOptions()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def store(self) -> Store:
        """The database, migrated (or refused, when ``database.migrate`` is off)."""
        from digest.store import Store

        return Store.open(self.settings.database)

    def connect(self) -> Store:
        """The database as it is: for commands that look at the schema themselves."""
        from digest.store import Store

        return Store.connect(self.settings.database)

    @contextmanager
    def opened(self, *, migrate: bool = True) -> Iterator[Store]:
        """The database for one command, closed after it (``migrate`` False: as it is)."""
        store = self.store() if migrate else self.connect()
        try:
            yield store
        finally:
            store.close()


def _version(value: bool) -> None:
    if value:
        console.print(f"digest {__version__}")
        raise typer.Exit()


LogFormat = Literal["auto", "text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (default: config/digest.toml)"),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log everything (the debug level)")
    ] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="auto (coloured on a terminal), text (one plain line per event) or json "
            "(default: logging.format)",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error (default: logging.level; auto: info for "
            "serve, worker and web, warning otherwise)",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    state = State(config)
    settings = state.settings  # a wrong setting stops here, before any work
    service = ctx.invoked_subcommand in SERVICES
    # One line per event on stderr; addresses and tokens masked (see digest.logs).
    logs.setup(
        settings.logging, verbose=verbose, format=log_format, level=log_level, service=service
    )
    state.log_options = logs.LogOptions(verbose=verbose, format=log_format, level=log_level)
    ctx.obj = state


def wide_console() -> Console:
    return Console(width=max(shutil.get_terminal_size((120, 20)).columns, 100))


def parse_day(value: str | None, option: str = "--date") -> date | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text == "today":
        return datetime.now(UTC).date()
    if text == "yesterday":
        return date.fromordinal(datetime.now(UTC).date().toordinal() - 1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{option}: expected a date as YYYY-MM-DD, got {value!r}") from None


def start_of(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, UTC) if day else None


def end_of(day: date | None) -> datetime:
    """The moment a command acts as of: the end of ``day``, or now."""
    if day is None:
        return datetime.now(UTC)
    return datetime.combine(day, time(23, 59, 59), UTC)


def main() -> None:
    freeze_at_exit()  # a worker's or a big run's heap is not collected on the way out
    try:
        app()
    except DigestError as exc:
        # One plain line, never wrapped, so logs and scripts see it whole.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
