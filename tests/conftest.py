"""Shared fixtures: settings on a temporary SQLite file, a store, and PostgreSQL when present."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from digest.config import DatabaseSettings, Settings, load_settings
from digest.store import Store

if TYPE_CHECKING:
    from doctor_support import Keys

# The helpers every test folder shares (SMTP servers, settings, the CLI runner).
sys.path.insert(0, str(Path(__file__).parent / "support"))
from common import IN_CI

# The semantic extra may be installed here (`make semantic`). Tests run as without it: the
# model takes seconds to load and a minute to embed the sample papers, so a command run in a
# subprocess gets semantic matching switched off, and in-process code gets an embedder that
# behaves as if the extra were missing (the `semantic_model` fixture lifts this).
os.environ.setdefault("DIGEST_RANKING__SEMANTIC", "false")


@pytest.fixture(autouse=True)
def _no_semantic_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "semantic_model" in request.fixturenames:
        return
    from digest.app import meaning
    from digest.ranking.semantic import Embedder

    def missing() -> object:
        raise ImportError("the semantic extra is switched off in tests")

    monkeypatch.setattr(meaning, "_shared", Embedder(loader=missing))  # type: ignore[arg-type]


@pytest.fixture
def semantic_model() -> None:
    """Marks a test that may load the real model (when the extra is installed)."""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Defaults, with the database and working files under the test's own folder."""
    monkeypatch.chdir(tmp_path)  # no config/digest.toml of the developer's is read
    return load_settings(
        environ={
            "DIGEST_DATABASE__URL": f"sqlite:///{tmp_path / 'digest.db'}",
            "DIGEST_PATHS__VAR_DIR": str(tmp_path / "var"),
            "DIGEST_PATHS__OUTBOX_DIR": str(tmp_path / "var" / "outbox"),
            "DIGEST_RANKING__SEMANTIC": "false",  # see the top of this file
        }
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = Store.open(settings.database)
    yield opened
    opened.close()


def _postgres_base_url() -> str | None:
    return os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards.

    Skips when no PostgreSQL is reachable, except under CI=true, where it must run.
    """
    base = _postgres_base_url()
    reason = "PostgreSQL not configured (set TEST_POSTGRES_URL)"
    engine = None
    if base:
        from sqlalchemy import create_engine, text

        try:
            engine = create_engine(base)
            with engine.connect() as connection:
                connection.execute(text("select 1"))
        except Exception as exc:  # unreachable, driver missing, auth refused
            reason = f"PostgreSQL at {base} unreachable: {exc.__class__.__name__}"
            engine = None
    if engine is None:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(text(f'drop schema "{schema}" cascade'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Store]:
    """A migrated store on the SQLite file, then on a fresh PostgreSQL schema (skipped
    without PostgreSQL, except under CI=true)."""
    if request.param == "sqlite":
        opened = Store.open(settings.database)
    else:
        url = request.getfixturevalue("postgres_url")
        opened = Store.open(DatabaseSettings(url=url))
    yield opened
    opened.close()


# Test files whose tests each take tens of seconds and share no module fixture: under
# pytest-xdist they are spread over the processes one test at a time. Every other file stays
# whole in one process (its module fixtures, a browser or a model, then start once).
SPREAD = {"test_workers.py", "test_restarts.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole processes, crashes, browsers, Docker and benchmarks are ``slow``: `make test`
    and CI run them all; `make test-fast` leaves them out while working. Each test is put in
    its file's group for `--dist loadgroup`, unless its file is in SPREAD."""
    for item in items:
        if "system" in item.path.parts or item.path.name == "test_browser.py":
            item.add_marker(pytest.mark.slow)
        if item.path.name not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(str(item.path)))


# -- made with openssl, once per module: DKIM keys, and a certificate for 127.0.0.1 ---------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Two fresh RSA keys with the p= openssl derives (doctor_support.make_keys)."""
    from doctor_support import make_keys

    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (doctor_support)."""
    from doctor_support import make_certificate

    return make_certificate(tmp_path_factory.mktemp("tls"))
