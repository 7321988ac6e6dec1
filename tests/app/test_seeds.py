"""Seeding a profile from papers a reader already likes: the files, and fetching from arXiv.

The files under fixtures/seeds/ are small but shaped like the real exports: Zotero's BibTeX
(ids in url, doi and note), Better BibTeX / biblatex (eprint + eprinttype), Google Scholar
("arXiv preprint arXiv:…" in journal), Zotero's CSL-JSON and RIS, and a pasted list.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from common import FIXTURES, fixture_bytes
from sqlalchemy import select

from digest.app import feedback, fetching
from digest.app.feedback import find_papers
from digest.config import Settings
from digest.domain.schedules import Schedule
from digest.domain.seeds import MAX_SEED_IDS, SeedError, bibtex_entries, read_seed
from digest.models import Paper
from digest.store import Store

NOW = datetime(2026, 9, 25, 12, 0, tzinfo=UTC)
SEEDS = FIXTURES / "seeds"


def seed(name: str) -> object:
    return read_seed((SEEDS / name).read_bytes(), name)


@pytest.mark.parametrize(
    ("name", "kind", "ids", "skipped"),
    [
        ("zotero.bib", "bibtex", ["1706.03762", "1707.08567"], ['"Deep learning"']),
        ("betterbibtex.bib", "bibtex", ["2106.09685", "2010.11929", "astro-ph/0601001"], []),
        ("scholar.bib", "bibtex", ["1810.04805"], []),
        ("zotero.json", "csl-json", ["2010.11929", "1706.06083"], ['"Deep learning"']),
        ("zotero.ris", "ris", ["2106.09685", "1512.03385"], ['"Deep learning"']),
        (
            "ids.txt",
            "list",
            ["2104.12255", "1707.08567", "hep-th/9901001", "2106.09685"],
            ["'not-an-id' is not an arXiv id"],
        ),
    ],
)
def test_each_export_gives_its_arxiv_ids(
    name: str, kind: str, ids: list[str], skipped: list[str]
) -> None:
    found = seed(name)
    assert found.format == kind  # type: ignore[attr-defined]
    assert found.ids == ids  # type: ignore[attr-defined]
    assert found.skipped == skipped  # type: ignore[attr-defined]


def test_the_format_is_recognised_without_a_file_name() -> None:
    assert read_seed((SEEDS / "zotero.ris").read_bytes()).format == "ris"
    assert read_seed((SEEDS / "zotero.json").read_text()).format == "csl-json"
    assert read_seed("@article{x, eprint={2104.12255}, archivePrefix={arXiv}}").ids == [
        "2104.12255"
    ]
    assert read_seed("arXiv:2104.12255v3\n2104.12255").ids == ["2104.12255"]  # once


def test_bibtex_values_nest_concatenate_and_may_be_bare() -> None:
    [entry] = bibtex_entries(
        '@Article{key, title = {A {Nested} Title} # " and more", year = 2021, '
        "month = aug, note={x}}"
    )
    assert entry["@type"] == "article" and entry["@key"] == "key"
    assert entry["title"] == "A {Nested} Title and more"
    assert entry["year"] == "2021" and entry["month"] == "aug"
    assert bibtex_entries("@comment{ignored} @string{x = {y}}") == []
    assert bibtex_entries("@misc(key, eprint = {2104.12255})")[0]["eprint"] == "2104.12255"


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (
            (SEEDS / "broken.bib").read_bytes(),
            "broken.bib",
            "entry starting on line 7 is not closed",
        ),
        (b'[{"title": "x", "URL": ', "mine.json", "not valid CSL-JSON: Expecting value on line 1"),
        (b'{"a": 1, "b": [1]}', "x.json", "no arXiv ids found in the CSL-JSON file"),
        (b"[1, 2]", "x.json", "not CSL-JSON"),
        (b"@article{k, title={No id here}}", "x.bib", "no arXiv ids found in the BibTeX file"),
        (b"hello world", None, "no arXiv ids found in the list"),
        (b"", None, "no arXiv ids found"),
        (b"x" * (3 * 1024 * 1024), None, "larger than 2 MB"),
    ],
)
def test_a_malformed_file_gets_a_clear_message(data: bytes, name: str | None, message: str) -> None:
    with pytest.raises(SeedError, match=message):
        read_seed(data, name)


def test_too_many_ids_are_cut_and_said() -> None:
    ids = [f"2104.{n:05d}" for n in range(1, MAX_SEED_IDS + 11)]
    found = read_seed("\n".join(ids))
    assert len(found.ids) == MAX_SEED_IDS
    assert found.skipped == [f"10 more ids (at most {MAX_SEED_IDS})"]


# -- papers for the ids: the store first, then the arXiv API --------------------------------


class ArxivApi:
    """A MockTransport answering with recorded arXiv API responses, keeping the requests."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, content=self.body)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def test_missing_papers_are_fetched_by_id_list_and_unknown_ids_reported(
    settings: Settings, store: Store
) -> None:
    # Recorded: arXiv was asked for two ids and knew one (1707.08567).
    api = ArxivApi(fixture_bytes("arxiv_api/id_list_two_ids_one_silently_dropped.xml"))
    found = find_papers(settings, store, ["1707.08567", "0812.0539"], NOW, transport=api.transport)
    [request] = api.requests
    assert request.url.host == "export.arxiv.org"
    assert request.url.params["id_list"] == "1707.08567,0812.0539"
    assert [p.canonical_id for p in found.papers] == ["1707.08567"]
    assert found.fetched == 1 and found.unknown == ["0812.0539"] and found.problem is None
    with store.transaction() as session:
        paper = session.scalar(select(Paper).where(Paper.canonical_id == "1707.08567"))
        assert paper is not None and paper.title.startswith("Proceedings of Workshop AEW10")
        # Not news: dated by arXiv, so no digest takes it for a paper of the day.
        assert paper.first_seen_at.year == 2017

    again = find_papers(settings, store, ["1707.08567"], NOW, transport=api.transport)
    assert len(api.requests) == 1  # stored now: arXiv is not asked again
    assert [p.canonical_id for p in again.papers] == ["1707.08567"] and again.fetched == 0


def test_arxiv_failing_is_reported_not_fatal(settings: Settings, store: Store) -> None:
    api = ArxivApi(fixture_bytes("arxiv_api/error_incorrect_id_format_abc_http400.xml"), 400)
    found = find_papers(settings, store, ["2104.12255"], NOW, transport=api.transport)
    assert found.papers == [] and found.unknown == ["2104.12255"]
    assert found.problem and "arXiv could not be reached" in found.problem


# -- the command line -----------------------------------------------------------------------


def test_digest_profile_seeds_likes_and_dislikes(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from digest.cli import app
    from digest.domain.profiles import build_profile
    from digest.sources.http import Fetcher
    from digest.store import subscribers

    [summary] = fetching.fetch(settings, store, ["sample"])
    assert summary.status == "ok"
    with store.transaction() as session:
        subscribers.upsert(
            session,
            "reader@example.org",
            build_profile(include=["testing"]),
            Schedule.checked("UTC", 7),
            confirmed=True,
        )
    api = ArxivApi(fixture_bytes("arxiv_api/id_list_two_ids_one_silently_dropped.xml"))
    # The command has no transport to inject: its fetcher gets the recorded answers.
    monkeypatch.setattr(
        feedback, "Fetcher", lambda http, **_: Fetcher(http, transport=api.transport)
    )
    env = {
        "DIGEST_DATABASE__URL": settings.database.url,
        "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
        "DIGEST_RANKING__SEMANTIC": "false",
    }
    done = CliRunner().invoke(
        app,
        [
            "profile",
            "reader@example.org",
            "--seed",
            str(SEEDS / "zotero.bib"),
            "--like",
            "arXiv:2202.12139",  # stored already (the sample's arXiv API page)
            "--dislike",
            "2405.13786",
            "--description",
            "Software testing with language models.",
        ],
        env=env,
    )
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert "added 2 liked and 1 disliked paper(s) (1 fetched from arXiv)" in output
    assert "not found on arXiv: 1706.03762" in output
    assert 'left out (no arXiv id): "Deep learning"' in output
    assert "learned words" in output and "personal model │ not yet" in output
    assert "Software testing with language models." in output
    with store.transaction() as session:
        profile = subscribers.profile_of(subscribers.get(session, "reader@example.org"))
    assert profile.learned.likes == 2 and profile.learned.dislikes == 1
    assert profile.include[0].text == "testing"  # the rest of the profile is kept

    broken = CliRunner().invoke(
        app, ["profile", "reader@example.org", "--seed", str(SEEDS / "broken.bib")], env=env
    )
    assert broken.exit_code != 0
    assert "broken.bib: the BibTeX entry starting on line 7 is not closed" in (
        broken.output + str(broken.exception)
    )
