"""The one small interface every source implements, and the registry of sources."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from digest.config import Settings
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


def build_source(name: str, settings: Settings) -> Source:
    # Imported here so that a source's parser is loaded only when that source is used.
    if name == "huggingface":
        from digest.sources.huggingface import HuggingFaceSource

        return HuggingFaceSource(settings.sources.huggingface)
    if name == "arxiv_rss":
        from digest.sources.arxiv_rss import ArxivRssSource

        return ArxivRssSource(settings.sources.arxiv_rss)
    if name == "arxiv_api":
        from digest.sources.arxiv_api import ArxivApiSource

        return ArxivApiSource(settings.sources.arxiv_api)
    if name == "sample":
        from digest.sources.sample import SampleSource

        return SampleSource(settings.sources.sample)
    raise ConfigError(
        f"unknown source {name!r}; choose from sample, huggingface, arxiv_rss, arxiv_api"
    )


SOURCE_NAMES = ("sample", "huggingface", "arxiv_rss", "arxiv_api")
