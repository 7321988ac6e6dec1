"""The web app with mail going to a real SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from smtp_server import smtp_server
from web_support import Harness, web_settings

from digest.config import Settings
from digest.store import Store


@pytest.fixture
def web(settings: Settings, store: Store) -> Iterator[Harness]:
    with smtp_server() as (host, port, recorder):
        harness = Harness(web_settings(settings, host, port), store, recorder)
        yield harness
        harness.close()
