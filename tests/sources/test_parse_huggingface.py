"""Hugging Face daily papers parser, against real recorded responses."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.errors import SourceError
from digest.sources.huggingface import parse_daily_papers

FIXTURES = Path(__file__).parents[1] / "fixtures" / "huggingface"
RAW_2024 = "daily_papers_2024-04-04_raw_bytes.json"
NO_AI_2026 = "daily_papers_2026-07-16_reserialized_no_ai_summary.json"
FULL_2026 = "daily_papers_2026-08-13_reserialized.json"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_recorded_file_is_covered() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted([RAW_2024, NO_AI_2026, FULL_2026])


# --- 2024 shape ---------------------------------------------------------------------------


def test_2024_shape_ids_upvotes_and_order() -> None:
    papers = parse_daily_papers(load(RAW_2024))
    assert [p.arxiv_id for p in papers] == [
        "2404.02258",
        "2404.02905",
        "2404.02575",
        "2404.02883",
        "2404.02733",
        "2404.02893",
        "2404.02747",
        "2404.02514",
    ]
    assert [p.upvotes for p in papers] == [33, 31, 28, 13, 12, 10, 9, 8]
    assert {p.source for p in papers} == {"huggingface"}


def test_2024_title_comes_unwrapped_from_top_level_but_abstract_keeps_hard_wraps() -> None:
    first = parse_daily_papers(load(RAW_2024))[0]
    # paper.title is "...transformer-based\n  language models"; the top-level copy is not.
    assert first.title == (
        "Mixture-of-Depths: Dynamically allocating compute in transformer-based language models"
    )
    assert first.abstract.startswith(
        "Transformer-based language models spread FLOPs uniformly across input\nsequences."
    )
    # TeX is left for ingest.
    assert "upwards of 50\\% faster" in first.abstract


def test_2024_authors_dates_and_missing_extras() -> None:
    papers = parse_daily_papers(load(RAW_2024))
    first = papers[0]
    assert first.authors == [
        "David Raposo",
        "Sam Ritter",
        "Blake Richards",
        "Timothy Lillicrap",
        "Peter Conway Humphreys",
        "Adam Santoro",
    ]
    assert first.published_at == datetime(2024, 4, 2, 19, 28, 11, tzinfo=UTC)
    # No submittedOnDailyAt in 2024: the top-level publishedAt (2024-04-04T04:18:46Z) decides.
    assert {p.announced_on for p in papers} == {date(2024, 4, 4)}
    assert all(p.ai_summary is None and p.github_repo is None for p in papers)
    # An author carrying a `user` object and `status` still contributes just the name.
    assert papers[1].authors[0] == "Keyu Tian"
    assert "Jürgen Schmidhuber" in papers[6].authors
    assert papers[6].arxiv_id == "2404.02747"


# --- 2026 shape ---------------------------------------------------------------------------


def test_2026_without_ai_summary() -> None:
    papers = parse_daily_papers(load(NO_AI_2026))
    assert len(papers) == 16
    assert [p.upvotes for p in papers] == [87, 72, 71, 42, 37, 29, 20, 20, 10, 9, 6, 6, 5, 5, 3, 2]
    assert all(p.ai_summary is None for p in papers)
    first = papers[0]
    assert first.arxiv_id == "2607.13125"
    assert first.title == (
        "Boogu-Image-0.1: Boosting Open-Source Unified Multimodal Understanding and Generation"
    )
    assert len(first.authors) == 33
    assert first.authors[:2] == ["Guoxuan Chen", "Chufeng Xiao"]
    # The TeX-escaped dollar is not touched here.
    assert "approximately \\$400K." in first.abstract
    assert first.github_repo == "https://github.com/boogu-project/Boogu-Image"
    assert sum(p.github_repo is not None for p in papers) == 9
    assert papers[6].authors[0] == "GigaWorld Team"


def test_2026_announced_on_is_the_daily_date_not_the_publication_date() -> None:
    papers = parse_daily_papers(load(NO_AI_2026))
    assert {p.announced_on for p in papers} == {date(2026, 7, 16)}
    policy = papers[5]
    assert policy.arxiv_id == "2607.05910"
    assert policy.published_at == datetime(2026, 7, 7, 7, 4, 28, tzinfo=UTC)


def test_2026_with_ai_summary_github_and_paper_publishedat() -> None:
    papers = parse_daily_papers(load(FULL_2026))
    assert len(papers) == 20
    assert all(p.ai_summary for p in papers)
    first = papers[0]
    assert first.arxiv_id == "2608.00677"
    assert first.upvotes == 98
    assert first.ai_summary is not None
    assert first.ai_summary.startswith("OpenART introduces a scalable red-teaming arena")
    assert first.github_repo == "https://github.com/AI45Lab/OpenART"
    # paper.publishedAt, not the top-level one that sits 4 h earlier (2026-07-31T20:00Z).
    assert first.published_at == datetime(2026, 8, 1, tzinfo=UTC)
    assert first.published_at.tzinfo is UTC
    assert sum(p.github_repo is not None for p in papers) == 10
    assert papers[-1].authors == ["Igor Itkin"]
    assert papers[-1].title.startswith("Poor Man's Agentic Modeling")
    assert "costs $8.1 per manuscript" in papers[2].abstract


def test_day_argument_overrides_entry_dates() -> None:
    papers = parse_daily_papers(load(FULL_2026), day=date(2026, 8, 14))
    assert {p.announced_on for p in papers} == {date(2026, 8, 14)}


# --- odd entries --------------------------------------------------------------------------


def _first_entry(name: str) -> dict:
    return json.loads(load(name))[0]


def test_malformed_entries_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    good = _first_entry(FULL_2026)
    no_title = _first_entry(FULL_2026)
    no_title["title"] = ""
    no_title["paper"]["title"] = None
    body = json.dumps([good, "not an object", no_title, 42]).encode()
    with caplog.at_level(logging.WARNING, logger="digest.sources.huggingface"):
        papers = parse_daily_papers(body)
    assert [p.arxiv_id for p in papers] == ["2608.00677"]
    skipped = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 3


def test_entry_without_a_valid_arxiv_id_is_kept_with_none() -> None:
    entry = _first_entry(NO_AI_2026)
    entry["paper"]["id"] = "not-an-arxiv-id"
    papers = parse_daily_papers(json.dumps([entry]).encode())
    assert len(papers) == 1
    assert papers[0].arxiv_id is None
    assert papers[0].title.startswith("Boogu-Image-0.1")


def test_paper_title_used_when_top_level_title_missing() -> None:
    entry = _first_entry(RAW_2024)
    del entry["title"]
    (paper,) = parse_daily_papers(json.dumps([entry]).encode())
    assert paper.title == (
        "Mixture-of-Depths: Dynamically allocating compute in transformer-based\n  language models"
    )


def test_non_github_repo_and_non_int_upvotes_are_dropped() -> None:
    entry = _first_entry(FULL_2026)
    entry["paper"]["githubRepo"] = "http://github.com/AI45Lab/OpenART"
    entry["paper"]["upvotes"] = "98"
    (paper,) = parse_daily_papers(json.dumps([entry]).encode())
    assert paper.github_repo is None
    assert paper.upvotes is None
    entry["paper"]["githubRepo"] = "https://gitlab.com/AI45Lab/OpenART"
    entry["paper"]["upvotes"] = True
    (paper,) = parse_daily_papers(json.dumps([entry]).encode())
    assert paper.github_repo is None
    assert paper.upvotes is None


def test_empty_list_is_no_papers() -> None:
    assert parse_daily_papers(b"[]") == []


# --- hostile bodies -----------------------------------------------------------------------


def test_truncated_json_is_a_source_error() -> None:
    body = load(RAW_2024)
    with pytest.raises(SourceError) as info:
        parse_daily_papers(body[: len(body) // 2])
    assert info.value.source == "huggingface"
    assert info.value.reason.startswith("malformed JSON:")


def test_html_page_is_a_source_error() -> None:
    body = b"\xef\xbb\xbf\n  <!DOCTYPE HTML>\n<html><body>Service unavailable</body></html>"
    with pytest.raises(SourceError) as info:
        parse_daily_papers(body)
    assert info.value.reason == "answered with an HTML page, not a feed"


def test_error_object_names_the_error() -> None:
    with pytest.raises(SourceError) as info:
        parse_daily_papers(b'{"error": "Invalid date"}')
    assert info.value.source == "huggingface"
    assert "Invalid date" in str(info.value)


def test_other_top_level_values_are_rejected() -> None:
    with pytest.raises(SourceError, match="expected a JSON list"):
        parse_daily_papers(b'{"papers": []}')
    with pytest.raises(SourceError, match="malformed JSON"):
        parse_daily_papers(b"")
    with pytest.raises(SourceError, match="malformed JSON"):
        parse_daily_papers(b"\xff\xfe[")
