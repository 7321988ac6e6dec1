"""Links built from validated ids, never taken as given from a feed."""

from __future__ import annotations

from urllib.parse import quote, urlencode

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


def arxiv_title_search(title: str) -> str | None:
    """arXiv's search for a paper by its title: for a listing row without an arXiv id."""
    words = " ".join(title.split())[:300]
    if not words:
        return None
    return "https://arxiv.org/search/?" + urlencode(
        {"query": words, "searchtype": "title", "source": "header"}
    )


def huggingface_search(title: str) -> str | None:
    """Hugging Face's paper search for a title."""
    words = " ".join(title.split())[:300]
    return "https://huggingface.co/papers?" + urlencode({"q": words}) if words else None
