"""Links built from validated ids, never taken as given from a feed."""

from __future__ import annotations

from urllib.parse import quote

from digest.domain.text import parse_arxiv_id, valid_doi


def arxiv_abs(arxiv_id: str | None) -> str | None:
    parsed = parse_arxiv_id(arxiv_id)
    return f"https://arxiv.org/abs/{parsed[0]}" if parsed else None


def arxiv_pdf(arxiv_id: str | None) -> str | None:
    parsed = parse_arxiv_id(arxiv_id)
    return f"https://arxiv.org/pdf/{parsed[0]}" if parsed else None


def huggingface_page(arxiv_id: str | None) -> str | None:
    parsed = parse_arxiv_id(arxiv_id)
    return f"https://huggingface.co/papers/{parsed[0]}" if parsed else None


def doi_url(doi: str | None) -> str | None:
    checked = valid_doi(doi)
    return f"https://doi.org/{quote(checked, safe='/:;()._-')}" if checked else None
