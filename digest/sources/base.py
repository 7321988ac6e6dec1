"""The one small interface every source implements, and the registry of sources."""

from __future__ import annotations

from datetime import date
from importlib import import_module
from typing import Protocol

from digest.config import SOURCE_NAMES, Settings
from digest.errors import ConfigError
from digest.sources.http import Fetcher
from digest.sources.records import PaperIn


class Source(Protocol):
    """Turns one listing (a day's, or the latest) into plain records. No database here."""

    name: str

    def fetch(self, fetcher: Fetcher, day: date | None) -> list[PaperIn]:
        """The records of ``day`` (None: the latest listing); raises ``SourceError``.

        Returns [] when the server says the listing has not changed (304) or is empty.
        """
        ...


# One line per source: its module and class; its settings are ``settings.sources.<name>``
# and its name is declared once, with the settings (``digest.config.SourceName``).
_REGISTRY = {
    "sample": ("digest.sources.sample", "SampleSource"),
    "huggingface": ("digest.sources.huggingface", "HuggingFaceSource"),
    "arxiv_rss": ("digest.sources.arxiv_rss", "ArxivRssSource"),
    "arxiv_api": ("digest.sources.arxiv_api", "ArxivApiSource"),
}
assert set(_REGISTRY) == set(SOURCE_NAMES), "every source name needs a registry line"


def build_source(name: str, settings: Settings) -> Source:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown source {name!r}; choose from {', '.join(SOURCE_NAMES)}")
    # Imported here so that a source's parser is loaded only when that source is used.
    module, kind = _REGISTRY[name]
    source: Source = getattr(import_module(module), kind)(getattr(settings.sources, name))
    return source
