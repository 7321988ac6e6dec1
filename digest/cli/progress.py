"""Progress on a terminal (counts, rate, elapsed, time left), nothing at all elsewhere."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from digest.cli import common
from digest.config import Settings

if TYPE_CHECKING:
    from digest.app.fetching import FetchSummary
    from digest.store import Store


class _RateColumn(ProgressColumn):
    """Items per second, once there is a rate to show."""

    def __init__(self, unit: str = "/s") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}{self.unit}" if speed else "", style="progress.data.speed")


def make_progress(out: Console | None = None) -> Progress:
    """A progress display on stderr, shown only when that is a terminal: nothing at all is
    written to a pipe, a file or a log collector."""
    out = out or common.err_console
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=out,
        disable=not out.is_terminal,
        transient=False,
    )


def fetch_with_progress(
    settings: Settings,
    store: Store,
    names: Sequence[str] | None = None,
    day: date | None = None,
) -> list[FetchSummary]:
    """``digest.app.fetching.fetch``, with a bar over the sources on a terminal."""
    from digest.app.fetching import fetch

    chosen = list(names or settings.sources.enabled)
    with make_progress() as progress:
        task = progress.add_task("fetching", total=len(chosen))
        started: list[str] = []

        def on_source(name: str) -> None:
            if started:
                progress.advance(task)
            started.append(name)
            progress.update(task, description=f"fetching {name}")

        summaries = fetch(settings, store, chosen, day, on_source=on_source)
        new = sum(s.new for s in summaries)
        progress.update(task, completed=len(chosen), description=f"fetched: {new} new papers")
    return summaries


@contextmanager
def send_progress(
    progress: Progress, store: Store, only: Sequence[int] | None, *, every: float = 0.5
) -> Iterator[None]:
    """A bar over the digests ready to send, updated from the database while sending (the
    senders run on their own threads and record each outcome as it happens)."""
    from digest.app.digests import remaining as still_to_go

    if progress.disable:
        yield
        return
    started = datetime.now(UTC)

    def remaining() -> int:
        return still_to_go(store, started, only)

    total = remaining()
    task: TaskID = progress.add_task("sending", total=total)
    done = threading.Event()

    def poll() -> None:
        while not done.wait(every):
            try:
                progress.update(task, completed=max(total - remaining(), 0))
            except Exception as exc:  # a display must never break a send
                logging.getLogger(__name__).debug("progress: %s", exc)

    thread = threading.Thread(target=poll, name="send-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
        progress.update(task, completed=max(total - remaining(), 0))
