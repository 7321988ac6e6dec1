"""Write ``corpus.jsonl``: every paper of the bundled sample, one JSON object a line.

    .venv/bin/python benchmarks/ranking/build_corpus.py

Each line has ``index``, ``title``, ``abstract``, ``authors``, ``categories``, ``arxiv_id``
(or null) and ``origin`` ("listing" or the recorded file the paper came from). Deterministic:
the same bundled files always give the same bytes.

How it is built:

- The records are exactly what ``SampleSource(SampleSettings()).fetch`` returns (the bundled
  listing, then the Hugging Face, arXiv RSS and arXiv API recordings, read through the
  product's own parsers), in that order.
- Indices 0..250 are the 251 lines of ``digest/data/sample/listing.jsonl`` in order, with their
  title and abstract exactly as in the file, so the judgements' indices stay the listing's line
  numbers.
- The recorded records (everything after the listing) are cleaned and merged with the
  product's ``digest.ingest.merge_batch``, so one arXiv id gives one paper (cleaned text, the
  better source's text leading, as in the product); the merged papers keep the order in which
  ``SampleSource`` first yields each id and take indices from 251 on.
- A recorded paper whose title (``digest.text.title_key``: case, punctuation and spacing
  ignored) equals a listing title is not given a new index: its arXiv id, authors and
  categories are filled into that listing paper, whose title, abstract and origin stay the
  listing's. With the bundled files no recorded title matches a listing title, and the 33
  recorded records are 33 distinct arXiv ids, so the corpus has 251 + 33 = 284 papers.
- ``arxiv_id`` is the canonical id without version (``2609.26811``), as the product stores it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from digest.config import SampleSettings
from digest.domain.text import title_key
from digest.ingest import merge_batch
from digest.sources.http import Fetcher
from digest.sources.records import PaperIn
from digest.sources.sample import SampleSource

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LISTING = ROOT / "digest" / "data" / "sample" / "listing.jsonl"
OUT = HERE / "corpus.jsonl"

# Which bundled file each source's records come from (SampleSource reads one file per source).
ORIGIN = {
    "huggingface": "huggingface_daily_papers_2026-08-13.json",
    "arxiv_rss": "arxiv_rss_2026-09-24.xml",
    "arxiv_api": "arxiv_api_query_testing.xml",
}


def listing_rows() -> list[dict[str, Any]]:
    rows = []
    lines = [line for line in LISTING.read_text(encoding="utf-8").splitlines() if line.strip()]
    for index, line in enumerate(lines):
        doc = json.loads(line)
        rows.append(
            {
                "index": index,
                "title": doc["title"],
                "abstract": doc.get("abstract") or "",
                "authors": [],
                "categories": [],
                "arxiv_id": None,
                "origin": "listing",
            }
        )
    return rows


def recorded(records: list[PaperIn], listed: int) -> list[PaperIn]:
    """The records after the listing's (SampleSource yields the listing first)."""
    if len(records) < listed or any(r.source != "sample" for r in records[:listed]):
        raise SystemExit("SampleSource no longer yields the bundled listing first")
    return records[listed:]


def build() -> list[dict[str, Any]]:
    rows = listing_rows()
    by_title = {title_key(row["title"]): row["index"] for row in rows}
    # The fetcher is unused: the bundled sample never touches the network.
    records = SampleSource(SampleSettings()).fetch(cast(Fetcher, None), None)
    papers, skipped = merge_batch(recorded(records, len(rows)))
    if skipped:
        raise SystemExit(f"{skipped} recorded records had no usable title")
    for paper in papers:
        record = paper.record
        source = paper.sources[0]
        fields = {
            "authors": list(record.authors),
            "categories": list(record.categories),
            "arxiv_id": paper.arxiv_id,
        }
        match = by_title.get(paper.title_key)
        if match is not None:
            rows[match].update(fields)
            continue
        rows.append(
            {
                "index": len(rows),
                "title": record.title,
                "abstract": record.abstract,
                **fields,
                "origin": ORIGIN.get(source, source),
            }
        )
    return rows


def main() -> None:
    rows = build()
    with OUT.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    extra = sum(1 for row in rows if row["origin"] != "listing")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(rows)} papers ({extra} from recorded files)")


if __name__ == "__main__":
    main()
