"""The benchmark's workload: papers made from real ones, subscribers with realistic profiles.

Papers come from the bundled sample (the 251-paper listing, the recorded Hugging Face and
arXiv answers) and the recorded fixtures in ``tests/fixtures/``, read through the product's
own parsers. To reach any count each base paper is copied with a distinct arXiv id, its
abstract's sentences rotated and a sentence of another paper added, and its title given a
subtitle from another paper, so no two papers share a text (per-paper caches get no help
from duplicates); authors, categories, upvotes and TL;DRs are lent from the real records
where a base paper has none. They are stored with the product's ingest (clean, merge, upsert).

Subscribers get 3-15 include terms drawn from the papers' own vocabulary (words weighted by
how many papers use them, and two- or three-word phrases from titles), some with weights;
about a third have exclude terms, categories or followed authors; a fifth want the "also
trending" section; they live in several time zones, each with a send hour that has already
come today, so all are due when the benchmark starts. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from digest.domain.profiles import build_profile
from digest.ingest import merge_batch, upsert
from digest.models import Subscriber
from digest.sources.arxiv_api import parse_api_feed
from digest.sources.arxiv_rss import parse_listing
from digest.sources.huggingface import parse_daily_papers
from digest.sources.records import PaperIn
from digest.sources.sample import read_listing
from digest.store import Store
from digest.store import papers as stored_papers

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLE = resources.files("digest") / "data" / "sample"

ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Moscow",
    "Africa/Lagos",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
)

_STOP = frozenset(
    re.findall(
        r"\w+",
        "a an the and or of for in on to with by from at as is are be been was were this that "
        "these those we our us it its via using use based towards toward into over under than "
        "can not no new more most less least both each such their them they which what when "
        "where how why who also only very well between through without within across about "
        "after before while do does did has have had will would should could may might must "
        "one two three four five six seven eight nine ten first second third paper propose "
        "proposed show shows present presents approach method methods results result study "
        "work task tasks ",
    )
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def base_records() -> list[PaperIn]:
    """Every real record the repository holds, read by the product's parsers."""
    records = read_listing((SAMPLE / "listing.jsonl").read_bytes(), "listing.jsonl")
    records += parse_daily_papers(
        (SAMPLE / "huggingface_daily_papers_2026-08-13.json").read_bytes(), date(2026, 8, 13)
    )
    records += parse_listing((SAMPLE / "arxiv_rss_2026-09-24.xml").read_bytes())
    records += parse_api_feed((SAMPLE / "arxiv_api_query_testing.xml").read_bytes()).papers
    for path in sorted((FIXTURES / "huggingface").glob("*.json")):
        try:
            records += parse_daily_papers(path.read_bytes(), None)
        except Exception:  # a fixture recorded to test a failure
            continue
    for path in sorted((FIXTURES / "arxiv_rss").glob("*.xml")):
        try:
            records += parse_listing(path.read_bytes())
        except Exception:
            continue
    for path in sorted((FIXTURES / "arxiv_api").glob("*.xml")):
        try:
            records += parse_api_feed(path.read_bytes()).papers
        except Exception:
            continue
    seen: set[str] = set()
    unique = []
    for record in records:
        key = record.title.strip().lower()
        if key and key not in seen and record.abstract:
            seen.add(key)
            unique.append(record)
    return unique


def make_papers(count: int, seed: int = 7) -> list[PaperIn]:
    """``count`` distinct papers made from the real ones (see the module doc)."""
    rng = random.Random(seed)
    base = base_records()
    donors = [r for r in base if r.authors]
    hf = [r for r in base if r.ai_summary]
    categories = [r.categories for r in base if r.categories]
    papers: list[PaperIn] = []
    for n in range(count):
        record = base[n % len(base)]
        copy = n // len(base)
        other = base[rng.randrange(len(base))]
        sentences = _SENTENCE.split(record.abstract)
        if copy:
            shift = copy % len(sentences)
            sentences = sentences[shift:] + sentences[:shift]
            extra = _SENTENCE.split(other.abstract)
            sentences.append(extra[rng.randrange(len(extra))])
        title = record.title
        if copy:
            subtitle = other.title.split(":")[0].strip()
            title = f"{title.split(':')[0].strip()}: {subtitle}"
        donor = donors[rng.randrange(len(donors))]
        summary = record.ai_summary
        if summary is None and rng.random() < 0.4:
            summary = hf[rng.randrange(len(hf))].ai_summary
        upvotes = record.upvotes
        if upvotes is None and rng.random() < 0.5:
            upvotes = int(rng.paretovariate(1.2)) - 1
        papers.append(
            replace(
                record,
                source="huggingface" if upvotes is not None else "arxiv_api",
                title=title,
                abstract=" ".join(sentences),
                arxiv_id=f"26{(n // 90000) % 12 + 1:02d}.{n % 90000 + 10000:05d}",
                authors=list(record.authors or donor.authors),
                categories=list(record.categories or categories[rng.randrange(len(categories))]),
                upvotes=upvotes,
                ai_summary=summary,
                github_repo=record.github_repo,
            )
        )
    return papers


def store_papers(store: Store, papers: list[PaperIn], seen_at: datetime) -> int:
    """Store through the product's ingest; returns how many rows were added."""
    merged, _ = merge_batch(papers)
    added = 0
    for start in range(0, len(merged), 1000):
        chunk = merged[start : start + 1000]
        with store.transaction() as session:
            by_id, by_title = stored_papers.by_keys(
                session, (p.key for p in chunk), (p.title_key for p in chunk)
            )
            added += upsert(session, chunk, by_id, by_title, now=seen_at).new
    return added


class Vocabulary:
    """Words (by how many papers use them), title phrases, categories and authors."""

    def __init__(self, papers: list[PaperIn]) -> None:
        document_frequency: Counter[str] = Counter()
        phrases: Counter[str] = Counter()
        authors: Counter[str] = Counter()
        categories: Counter[str] = Counter()
        in_titles: set[str] = set()
        for paper in papers:
            words = {
                w
                for w in re.findall(r"[a-z][a-z-]{3,}", f"{paper.title} {paper.abstract}".lower())
                if w not in _STOP and not w.endswith(("-", "ly"))
            }
            document_frequency.update(words)
            title = re.findall(r"[a-z][a-z-]+", paper.title.lower())
            in_titles.update(title)
            for size in (2, 3):
                for i in range(len(title) - size + 1):
                    gram = title[i : i + size]
                    if not any(w in _STOP for w in gram):
                        phrases[" ".join(gram)] += 1
            authors.update(paper.authors)
            categories.update(paper.categories[:1])
        # Topic words: used in some title, and in at least two papers. Sorted (ties too): the
        # counters were filled from sets, whose order changes with each process's hash seed,
        # and the same seed must give the same profiles in every run.
        self.words = sorted(w for w, n in document_frequency.items() if n >= 2 and w in in_titles)
        self.word_weights = [document_frequency[w] ** 0.7 for w in self.words]
        self.phrases = sorted(p for p, n in phrases.items() if n >= 2) or sorted(phrases)
        self.authors = _most_common(authors, 400)
        self.categories = _most_common(categories, 40)


def _most_common(counts: Counter[str], size: int) -> list[str]:
    """The ``size`` most frequent, ties in alphabetical order."""
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def _profile_json(vocab: Vocabulary, rng: random.Random) -> dict[str, object]:
    size = rng.randint(3, 15)
    phrase_count = min(size - 1, int(rng.random() * 0.35 * size + 0.5))
    include = set(rng.choices(vocab.words, vocab.word_weights, k=size - phrase_count))
    include.update(rng.sample(vocab.phrases, min(phrase_count, len(vocab.phrases))))
    terms = []
    for term in sorted(include):
        roll = rng.random()
        weight = "^2" if roll < 0.08 else "^0.5" if roll < 0.12 else ""
        terms.append(f'"{term}"{weight}' if " " in term else f"{term}{weight}")
    exclude: list[str] = []
    if rng.random() < 0.3:
        exclude = rng.sample(vocab.words, rng.randint(1, 3))
        exclude = [w for w in exclude if w not in include]
    categories = rng.sample(vocab.categories, rng.randint(1, 2)) if rng.random() < 0.3 else []
    authors = rng.sample(vocab.authors, 1) if vocab.authors and rng.random() < 0.1 else []
    profile = build_profile(
        include=[", ".join(terms)],
        exclude=[", ".join(exclude)] if exclude else [],
        categories=categories,
        authors=authors,
        also_trending=rng.random() < 0.2,
    )
    return profile.to_json()


def due_zones(now: datetime) -> list[tuple[str, int]]:
    """Zones where it is between 01:00 and 21:59 now (no local midnight during a run), with
    their local hour."""
    found = []
    for name in ZONES:
        local = now.astimezone(ZoneInfo(name))
        if 1 <= local.hour <= 21:
            found.append((name, local.hour))
    return found


def add_subscribers(
    store: Store, count: int, papers: list[PaperIn], now: datetime, seed: int = 11
) -> None:
    """``count`` active subscribers, all due at ``now`` (see the module doc)."""
    rng = random.Random(seed)
    vocab = Vocabulary(papers)
    zones = due_zones(now)
    batch: list[dict[str, object]] = []
    for n in range(count):
        zone, hour = zones[n % len(zones)]
        email = f"reader{n:06d}@bench{n % 97}.example.org"
        roll = rng.random()
        batch.append(
            {
                "public_id": secrets.token_hex(16),
                "email": email,
                "email_key": email,
                "status": "active",
                "timezone": zone,
                "send_hour": rng.randint(max(0, hour - 8), hour),
                "frequency": "daily",
                "max_papers": 10 if roll < 0.8 else 5 if roll < 0.9 else 15,
                "send_when_empty": rng.random() < 0.5,
                "profile": _profile_json(vocab, rng),
                "token_version": 1,
                "bounce_count": 0,
                "created_at": now - timedelta(days=30),
                "confirmed_at": now - timedelta(days=30),
                "updated_at": now - timedelta(days=30),
            }
        )
        if len(batch) == 2000:
            _insert(store, batch)
            batch = []
    if batch:
        _insert(store, batch)


def _insert(store: Store, rows: list[dict[str, object]]) -> None:
    with store.transaction() as session:
        for start in range(0, len(rows), 500):
            session.execute(insert(Subscriber), rows[start : start + 500])


def describe(papers: list[PaperIn]) -> dict[str, object]:
    return {
        "papers": len(papers),
        "base_records": len(base_records()),
        "with_upvotes": sum(p.upvotes is not None for p in papers),
        "with_tldr": sum(p.ai_summary is not None for p in papers),
    }


if __name__ == "__main__":  # a quick look at what is generated
    sample = make_papers(20)
    print(json.dumps(describe(sample), indent=2))
    vocab = Vocabulary(make_papers(1000))
    rng = random.Random(1)
    for _ in range(5):
        print(json.dumps(_profile_json(vocab, rng)))
