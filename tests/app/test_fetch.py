"""Sources through the shared fetcher and the pipeline: real recorded answers, served locally."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from cli_support import run_cli
from common import fixture_bytes
from sqlalchemy import select

from digest.app.fetching import fetch
from digest.config import ArxivApiSettings, HttpSettings, Settings, load_settings
from digest.models import FetchRun, Paper
from digest.sources.arxiv_api import ArxivApiSource
from digest.sources.http import Fetcher
from digest.store import Store

HF_0813 = "huggingface/daily_papers_2026-08-13_reserialized.json"
RSS_MULTI = "arxiv_rss/rss_multi_category_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_4_items.xml"
RSS_ERROR = "arxiv_rss/rss_error_bad_archive_astroph_2024-11-28.xml"
API_ERROR = "arxiv_api/error_incorrect_id_format_abc_http400.xml"


def with_sources(settings: Settings, *enabled: str, **env: str) -> Settings:
    return load_settings(
        environ={
            "DIGEST_DATABASE__URL": settings.database.url,
            "DIGEST_SOURCES__ENABLED": ",".join(enabled),
            "DIGEST_HTTP__RETRIES": "0",
            **env,
        }
    )


def transport_for(routes: dict[str, Callable[[httpx.Request], httpx.Response]]):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        for prefix, answer in routes.items():
            if str(request.url).startswith(prefix):
                return answer(request)
        return httpx.Response(404, text="no route")

    return httpx.MockTransport(handler), seen


def papers_in(store: Store) -> list[Paper]:
    with store.transaction() as session:
        return list(session.scalars(select(Paper).order_by(Paper.id)))


def fetch_runs(store: Store) -> list[FetchRun]:
    with store.transaction() as session:
        return list(session.scalars(select(FetchRun).order_by(FetchRun.id)))


def test_huggingface_day_is_fetched_and_stored(settings: Settings, store: Store) -> None:
    transport, seen = transport_for(
        {
            "https://huggingface.co/api/daily_papers": lambda r: httpx.Response(
                200, content=fixture_bytes(HF_0813)
            )
        }
    )
    [summary] = fetch(
        with_sources(settings, "huggingface"), store, day=date(2026, 8, 13), transport=transport
    )
    assert (summary.status, summary.fetched, summary.new) == ("ok", 20, 20)
    assert seen[0].url.params["date"] == "2026-08-13"
    assert seen[0].headers["User-Agent"].startswith("trending-digest/")
    rows = papers_in(store)
    assert len(rows) == 20
    assert all(row.hf_upvotes is not None and row.arxiv_id for row in rows)
    assert all(row.announced_on == date(2026, 8, 13) for row in rows)
    assert fetch_runs(store)[-1].status == "ok"


def test_the_listing_feed_keeps_new_and_cross_by_default(settings: Settings, store: Store) -> None:
    transport, seen = transport_for(
        {
            "https://rss.arxiv.org/rss/": lambda r: httpx.Response(
                200, content=fixture_bytes(RSS_MULTI)
            )
        }
    )
    configured = with_sources(
        settings, "arxiv_rss", DIGEST_SOURCES__ARXIV_RSS__CATEGORIES="cs.LG,cs.AI,cs.CL,stat.ML"
    )
    [summary] = fetch(configured, store, transport=transport)
    assert seen[0].url.path == "/rss/cs.LG+cs.AI+cs.CL+stat.ML"
    assert (summary.fetched, summary.new) == (3, 3)  # new, new, cross; the replacement skipped
    cross = [row for row in papers_in(store) if row.categories[0] == "stat.ME"]
    assert len(cross) == 1  # the cross-listed item keeps its own primary category first

    also_replacements = with_sources(
        settings,
        "arxiv_rss",
        DIGEST_SOURCES__ARXIV_RSS__ANNOUNCE_TYPES="new,cross,replace",
    )
    [summary] = fetch(also_replacements, store, transport=transport)
    assert (summary.fetched, summary.new, summary.unchanged) == (4, 1, 3)


def test_api_pages_with_start_and_max_results_three_seconds_apart() -> None:
    pages = {
        "0": fixture_bytes("arxiv_api/query_all-testing_start0_max10.xml"),
        "10": fixture_bytes("arxiv_api/query_all-testing_start10_max10_latex.xml"),
    }
    transport, seen = transport_for(
        {
            "https://export.arxiv.org/api/query": lambda r: httpx.Response(
                200, content=pages[r.url.params["start"]]
            )
        }
    )
    sleeps: list[float] = []
    source = ArxivApiSource(ArxivApiSettings(query="testing", max_results=20, page_size=10))
    with Fetcher(HttpSettings(), transport=transport, sleep=sleeps.append) as fetcher:
        records = source.fetch(fetcher, None)
    assert len(records) == 20
    assert [r.url.params["start"] for r in seen] == ["0", "10"]
    assert all(r.url.params["max_results"] == "10" for r in seen)
    assert seen[0].url.params["search_query"] == "testing"
    assert len(sleeps) == 1 and 2.9 < sleeps[0] <= 3.0  # arXiv's politeness interval


def test_api_date_narrows_the_query_to_that_day() -> None:
    transport, seen = transport_for(
        {
            "https://export.arxiv.org/api/query": lambda r: httpx.Response(
                200, content=fixture_bytes("arxiv_api/zero_results_id_0000.0000.xml")
            )
        }
    )
    source = ArxivApiSource(ArxivApiSettings(query="cat:cs.LG"))
    with Fetcher(HttpSettings(), transport=transport) as fetcher:
        assert source.fetch(fetcher, date(2026, 9, 24)) == []
    query = seen[0].url.params["search_query"]
    assert query == "(cat:cs.LG) AND submittedDate:[202609240000 TO 202609242359]"
    assert len(seen) == 1  # zero results: no second page is asked for


@pytest.mark.parametrize(
    ("source", "url", "answer", "message"),
    [
        (
            "arxiv_api",
            "https://export.arxiv.org/api/query",
            httpx.Response(400, content=fixture_bytes(API_ERROR)),
            "incorrect id format for abc",
        ),
        (
            "arxiv_rss",
            "https://rss.arxiv.org/rss/",
            httpx.Response(200, content=fixture_bytes(RSS_ERROR)),
            "Bad archive 'astroph'",
        ),
        (
            "huggingface",
            "https://huggingface.co/api/daily_papers",
            httpx.Response(200, html="<!DOCTYPE html><html><body>Sign in</body></html>"),
            "HTML page",
        ),
        (
            "huggingface",
            "https://huggingface.co/api/daily_papers",
            httpx.Response(200, content=fixture_bytes(HF_0813)[:5000]),
            "malformed JSON",
        ),
        (
            "arxiv_rss",
            "https://rss.arxiv.org/rss/",
            httpx.Response(200, content=fixture_bytes(RSS_MULTI)[:3000]),
            "malformed XML",
        ),
        (
            "arxiv_api",
            "https://export.arxiv.org/api/query",
            httpx.Response(500, text="oops"),
            "HTTP 500",
        ),
    ],
)
def test_error_answers_are_errors_and_store_nothing(
    settings: Settings, store: Store, source: str, url: str, answer: httpx.Response, message: str
) -> None:
    transport, _ = transport_for({url: lambda r: answer})
    [summary] = fetch(with_sources(settings, source), store, transport=transport)
    assert summary.status == "failed"
    assert message in (summary.error or "")
    assert papers_in(store) == []
    run = fetch_runs(store)[-1]
    assert (run.source, run.status) == (source, "failed") and message in (run.error or "")


def test_one_failing_source_never_stops_the_others(settings: Settings, store: Store) -> None:
    transport, _ = transport_for(
        {
            "https://rss.arxiv.org/rss/": lambda r: httpx.Response(
                200, content=fixture_bytes(RSS_ERROR)
            ),
            "https://huggingface.co/api/daily_papers": lambda r: httpx.Response(
                200, content=fixture_bytes(HF_0813)
            ),
        }
    )
    summaries = fetch(
        with_sources(settings, "arxiv_rss", "huggingface"), store, transport=transport
    )
    assert [(s.source, s.status) for s in summaries] == [
        ("arxiv_rss", "failed"),
        ("huggingface", "ok"),
    ]
    assert len(papers_in(store)) == 20


def test_conditional_requests_turn_an_unchanged_listing_into_no_work(
    settings: Settings, store: Store
) -> None:
    body = fixture_bytes(HF_0813)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, content=body, headers={"ETag": '"v1"'})

    transport, seen = transport_for({"https://huggingface.co/api/daily_papers": answer})
    configured = with_sources(settings, "huggingface")
    first = fetch(configured, store, day=date(2026, 8, 13), transport=transport)[0]
    second = fetch(configured, store, day=date(2026, 8, 13), transport=transport)[0]
    assert (first.status, first.new) == ("ok", 20)
    assert (second.status, second.fetched) == ("not_modified", 0)
    assert seen[1].headers["If-None-Match"] == '"v1"'


def test_sample_source_twice_is_the_same_store(settings: Settings, store: Store) -> None:
    first = fetch(settings, store, ["sample"])[0]
    second = fetch(settings, store, ["sample"])[0]
    assert first.new == first.fetched > 250
    assert (second.new, second.updated, second.unchanged) == (0, 0, first.fetched)


def test_a_bad_sample_listing_names_the_line(settings: Settings, store: Store, tmp_path) -> None:
    listing = tmp_path / "mine.jsonl"
    listing.write_text('{"title": "Fine", "abstract": "ok"}\n{"title": \n')
    configured = with_sources(settings, "sample", DIGEST_SOURCES__SAMPLE__LISTING=str(listing))
    [summary] = fetch(configured, store)
    assert summary.status == "failed" and "line 2: malformed JSON" in (summary.error or "")
    assert papers_in(store) == []


# -- the command, against a real server on 127.0.0.1 -------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        for prefix, (status, body) in self.routes.items():
            if self.path.startswith(prefix):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_command_reports_per_source_and_fails_for_a_bad_one(
    tmp_path: Path, local_server: str
) -> None:
    _Handler.routes = {
        "/api/daily_papers?date=2026-08-13": (200, fixture_bytes(HF_0813)),
        "/rss/astroph": (200, fixture_bytes(RSS_ERROR)),
    }
    env = {
        "DIGEST_SOURCES__HUGGINGFACE__BASE_URL": local_server,
        "DIGEST_SOURCES__ARXIV_RSS__BASE_URL": local_server,
        "DIGEST_SOURCES__ARXIV_RSS__CATEGORIES": "astroph",
        "DIGEST_SOURCES__ENABLED": "huggingface,arxiv_rss",
        "DIGEST_HTTP__RETRIES": "0",
        "COLUMNS": "200",
    }
    done = run_cli(tmp_path, "fetch", "--date", "2026-08-13", **env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error: arxiv_rss: Bad archive 'astroph'" in done.stderr
    huggingface_row = next(line for line in done.stdout.splitlines() if "huggingface" in line)
    assert "ok" in huggingface_row and "20" in huggingface_row
    listed = run_cli(tmp_path, "papers", "--json", "--limit", "100", **env)
    assert listed.returncode == 0
    papers = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(papers) == 20 and all(p["url"].startswith("https://arxiv.org/abs/") for p in papers)


def test_fetch_command_rejects_a_bad_date_and_source(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "fetch", "--date", "13/08/2026")
    assert done.returncode == 2 and "--date: expected a date as YYYY-MM-DD" in done.stderr
    done = run_cli(tmp_path, "fetch", "--source", "arxiv")
    assert done.returncode == 2 and "unknown source 'arxiv'" in done.stderr
    assert "Traceback" not in done.stderr
