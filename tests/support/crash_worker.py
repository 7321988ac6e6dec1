"""The sender process the crash tests kill: the real `digest worker --once` loop, started
from a fork server that has the package imported already (a fresh interpreter per run
would spend a second importing)."""

from __future__ import annotations

from digest import scheduler
from digest.app import digests  # noqa: F401
from digest.config import load_settings
from digest.store import Store


def main(environ: dict[str, str], owner: str) -> None:
    settings = load_settings(environ=environ)
    store = Store.open(settings.database)
    try:
        scheduler.run_worker(settings, store, once=True, plan=False, owner=owner)
    finally:
        store.close()
