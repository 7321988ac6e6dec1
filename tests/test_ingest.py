"""Cleaning, merging and upserting: one row per paper across sources and days."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import permutations

from sqlalchemy import delete, func, select

from digest.domain.text import parse_arxiv_id, title_key
from digest.ingest import clean, merge_batch, upsert
from digest.models import Paper
from digest.sources.records import PaperIn
from digest.store import Store
from digest.store import papers as stored_papers


def ingest(store: Store, records: list[PaperIn], now: datetime | None = None):
    papers, _skipped = merge_batch(records)
    with store.transaction() as session:
        by_id, by_title = stored_papers.by_keys(
            session, [p.key for p in papers], [p.title_key for p in papers]
        )
        return upsert(session, papers, by_id, by_title, now=now)


def all_papers(store: Store) -> list[Paper]:
    with store.transaction() as session:
        return list(session.scalars(select(Paper).order_by(Paper.id)))


def test_hostile_text_is_cleaned_once() -> None:
    record = PaperIn(
        source="huggingface",
        title="Evil\u202e title\r\nwith\x00 controls\u200b and   spaces " + "x" * 10_000,
        abstract="  Leading spaces, $\\alpha \\le \\beta$ TeX,\n  hard wraps.  ",
        arxiv_id="2104.12255v3",
        authors=["  Aurora  Ramírez ", "", "B\u202eob"],
    )
    paper = clean(record)
    assert paper is not None
    title = paper.record.title
    assert title.startswith("Evil title with controls and spaces x")
    assert len(title) <= 500 and title.endswith("…")
    assert not any(ch in title for ch in "\u202e\r\n\x00\u200b")
    assert paper.record.abstract == "Leading spaces, $\\alpha \\le \\beta$ TeX, hard wraps."
    assert paper.record.authors == ["Aurora Ramírez", "Bob"]
    assert (paper.key, paper.version) == ("2104.12255", 3)


def test_a_record_with_no_title_is_skipped() -> None:
    papers, skipped = merge_batch([PaperIn(source="sample", title="  \u200b ")])
    assert papers == [] and skipped == 1


def test_the_title_0_is_a_title() -> None:
    paper = clean(PaperIn(source="arxiv_api", title="0", arxiv_id="2104.12255v1"))
    assert paper is not None and paper.record.title == "0"


def test_ids_are_canonical_and_validated() -> None:
    assert parse_arxiv_id("http://arxiv.org/abs/astro-ph/0601001v1") == ("astro-ph/0601001", 1)
    assert parse_arxiv_id("oai:arXiv.org:2411.17700v1") == ("2411.17700", 1)
    assert parse_arxiv_id("arXiv:1111.2011v2") == ("1111.2011", 2)
    assert parse_arxiv_id("0808.05394") is None  # five digits were not used in 2008
    assert parse_arxiv_id("2413.00001") is None  # no month 13
    assert parse_arxiv_id("javascript:alert(1)") is None
    # An invalid id is dropped; the paper is keyed by its title instead.
    paper = clean(PaperIn(source="huggingface", title="A Paper", arxiv_id="../../etc/passwd"))
    assert paper is not None and paper.arxiv_id is None and paper.key.startswith("title:")


def test_title_key_ignores_case_accents_and_punctuation() -> None:
    assert title_key("Attention Is All You Need!") == title_key("attention is  all you need")
    assert title_key("Café au lait") == title_key("Cafe au Lait")
    assert title_key("Attention Is All You Need") != title_key("Attention Is Not All You Need")


def _hf(upvotes: int, **extra) -> PaperIn:
    return PaperIn(
        source="huggingface",
        title="Scaling Sparse Transformers",
        abstract="HF copy of the abstract.",
        arxiv_id="2608.01234",
        authors=["Ada Lovelace"],
        upvotes=upvotes,
        ai_summary="Sparse transformers scale.",
        announced_on=date(2026, 8, 13),
        **extra,
    )


def _arxiv(version: int = 1) -> PaperIn:
    return PaperIn(
        source="arxiv_api",
        title="Scaling Sparse Transformers",
        abstract="The arXiv abstract.",
        arxiv_id=f"2608.01234v{version}",
        authors=["Ada Lovelace", "Charles Babbage"],
        categories=["cs.LG", "cs.CL"],
        published_at=datetime(2026, 8, 10, tzinfo=UTC),
    )


def test_one_batch_with_two_sources_makes_one_paper() -> None:
    papers, _ = merge_batch([_hf(5), _arxiv(2)])
    assert len(papers) == 1
    merged = papers[0]
    assert merged.record.abstract == "The arXiv abstract."  # arXiv's text wins
    assert merged.record.categories == ["cs.LG", "cs.CL"]
    assert merged.record.upvotes == 5 and merged.record.ai_summary
    assert merged.version == 2
    assert merged.sources == ["huggingface", "arxiv_api"]


def test_the_same_paper_across_sources_and_days_is_one_row(store: Store) -> None:
    day1 = datetime(2026, 8, 13, 8, tzinfo=UTC)
    stats = ingest(store, [_hf(5)], now=day1)
    assert (stats.new, stats.updated) == (1, 0)

    day2 = day1 + timedelta(days=1)
    stats = ingest(store, [_arxiv(1)], now=day2)
    assert (stats.new, stats.updated) == (0, 1)
    stats = ingest(store, [_hf(42)], now=day2 + timedelta(hours=1))
    assert (stats.new, stats.updated) == (0, 1)
    stats = ingest(store, [_hf(42)], now=day2 + timedelta(hours=2))
    assert (stats.new, stats.updated, stats.unchanged) == (0, 0, 1)

    [row] = all_papers(store)
    assert row.canonical_id == "2608.01234"
    assert row.hf_upvotes == 42  # upvotes from Hugging Face, the latest count
    assert row.categories == ["cs.LG", "cs.CL"]  # categories from arXiv
    assert row.abstract == "The arXiv abstract."  # the later, lower-ranked copy did not win
    assert row.authors == ["Ada Lovelace", "Charles Babbage"]
    assert row.ai_summary == "Sparse transformers scale."
    assert sorted(row.sources) == ["arxiv_api", "huggingface"]
    assert row.first_seen_at == day1  # first seen stays the first sighting
    assert row.announced_on == date(2026, 8, 13)


def test_an_id_less_paper_takes_on_its_arxiv_id_later(store: Store) -> None:
    ingest(store, [PaperIn(source="sample", title="Object-Centric Learning with Slot Attention")])
    [row] = all_papers(store)
    assert row.arxiv_id is None and row.canonical_id.startswith("title:")

    later = PaperIn(
        source="arxiv_rss",
        title="Object-Centric Learning with Slot Attention",
        arxiv_id="2006.15055v2",
        categories=["cs.LG"],
    )
    stats = ingest(store, [later])
    assert (stats.new, stats.updated) == (0, 1)
    [row] = all_papers(store)
    assert (row.canonical_id, row.arxiv_id, row.version) == ("2006.15055", "2006.15055", 2)
    assert row.sources == ["sample", "arxiv_rss"]


def test_two_arxiv_papers_with_one_title_stay_two(store: Store) -> None:
    a = PaperIn(source="arxiv_api", title="Erratum", arxiv_id="2101.00001")
    b = PaperIn(source="arxiv_api", title="Erratum", arxiv_id="2101.00002")
    ingest(store, [a])
    ingest(store, [b])
    with store.transaction() as session:
        assert session.scalar(select(func.count(Paper.id))) == 2


def _rss(comment: str) -> PaperIn:
    return PaperIn(
        source="arxiv_rss",
        title="Scaling sparse transformers",
        arxiv_id="2608.01234v3",
        categories=["cs.CL", "stat.ML"],
        comment=comment,
        announced_on=date(2026, 8, 12),
        updated_at=datetime(2026, 8, 12, tzinfo=UTC),
    )


def _row_values(store: Store) -> dict[str, object]:
    [row] = all_papers(store)
    skip = {"id", "first_seen_at", "last_seen_at"}
    return {c.key: getattr(row, c.key) for c in Paper.__table__.columns if c.key not in skip}


def test_one_merge_rule_in_a_batch_and_across_days(store: Store) -> None:
    """Sightings of a paper give the same row whether they came in one fetch or on
    several days (in that order): one rule merges records, and records into stored rows."""
    variants = {
        "hf5": _hf(5),
        "hf42": _hf(42, github_repo="https://github.com/ada/sparse"),
        "api1": _arxiv(1),
        "api2": replace(_arxiv(2), doi="10.1000/xyz", journal_ref="NeurIPS 2026"),
        "rss": _rss("12 pages"),
        "idless": PaperIn(source="sample", title="Scaling Sparse Transformers", comment="old"),
    }
    for order in permutations(variants, 3):
        ingest(store, [variants[name] for name in order])
        batch = _row_values(store)
        with store.transaction() as session:
            session.execute(delete(Paper))
        for name in order:
            ingest(store, [variants[name]])
        assert _row_values(store) == batch, order
        with store.transaction() as session:
            session.execute(delete(Paper))


def test_what_each_kind_of_fact_keeps_when_sightings_disagree(store: Store) -> None:
    ingest(store, [replace(_arxiv(2), doi="10.1000/first", comment="v2: 10 pages")])
    ingest(store, [_hf(42), replace(_rss("v3: 12 pages"), doi="10.1000/second")])
    ingest(store, [_hf(5)])  # an older listing, fetched late
    [row] = all_papers(store)
    assert row.abstract == "The arXiv abstract."  # the best source's text
    assert row.title == "Scaling Sparse Transformers" and row.text_source == "arxiv_api"
    assert row.comment == "v3: 12 pages"  # changes with versions: the newest
    assert row.doi == "10.1000/first"  # does not change: the first known
    assert row.hf_upvotes == 42  # counts only grow
    assert row.version == 3 and row.categories == ["cs.LG", "cs.CL", "stat.ML"]
    assert row.announced_on == date(2026, 8, 12)  # the earliest listing day
