"""arXiv API (export.arxiv.org/api/query) parser, against real recorded responses."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from digest.errors import SourceError
from digest.sources.arxiv_api import ApiPage, parse_api_feed
from digest.sources.xml import local_date, parse_iso, parse_iso_local, parse_rfc822

FIXTURES = Path(__file__).parents[1] / "fixtures" / "arxiv_api"
TESTING_0 = "query_all-testing_start0_max10.xml"
TESTING_10 = "query_all-testing_start10_max10_latex.xml"
ERROR = "error_incorrect_id_format_abc_http400.xml"
ZERO = "zero_results_id_0000.0000.xml"
ASTRO = "id_astro-ph_0601001_old_style_id_affiliations.xml"
DROPPED = "id_list_two_ids_one_silently_dropped.xml"
TITLE_0 = "id_2104.12255v1_versioned_title_0.xml"
LEGACY_SEARCH = "legacy2016_search_au-del_maestro.xml"
LEGACY_ID = "legacy2016_id_list_1111.2011v2_doi_journal_ref.xml"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_recorded_file_is_covered() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(
        [TESTING_0, TESTING_10, ERROR, ZERO, ASTRO, DROPPED, TITLE_0, LEGACY_SEARCH, LEGACY_ID]
    )


# --- current format --------------------------------------------------------------------------


def test_search_page_paging_and_ids() -> None:
    page = parse_api_feed(load(TESTING_0))
    assert isinstance(page, ApiPage)
    assert (page.total_results, page.start_index, page.items_per_page) == (214881, 0, 10)
    assert [p.arxiv_id for p in page.papers] == [
        "2202.12139v1",
        "2405.13786v1",
        "2005.14124v2",
        "2204.08348v3",
        "2302.03287v3",
        "1202.4527v1",
        "2503.05378v2",
        "1205.1866v1",
        "2502.07719v2",
        "1812.11470v1",
    ]
    assert {p.source for p in page.papers} == {"arxiv_api"}
    assert all(p.announced_on is None for p in page.papers)


def test_non_ascii_author_names_and_order() -> None:
    papers = parse_api_feed(load(TESTING_0)).papers
    assert papers[1].authors == [
        "Aurora Ramírez",
        "Mario Berrios",
        "José Raúl Romero",
        "Robert Feldt",
    ]


def test_optional_extras_present_and_absent() -> None:
    papers = {p.arxiv_id: p for p in parse_api_feed(load(TESTING_0)).papers}
    first = papers["2202.12139v1"]
    assert first.doi == "10.1109/ICSTW55395.2022.00035"
    assert first.journal_ref == (
        "Artificial Intelligence in Software Testing @ 2022 IEEE International Conference on "
        "Software Testing, Verification and Validation Workshops (ICSTW)"
    )
    assert first.comment == "Artificial Intelligence in Software Testing 2022 workshop @ ICST 2022"
    assert first.categories == ["cs.SE", "cs.LG"]
    survey = papers["2503.05378v2"]
    assert survey.doi is None
    assert survey.journal_ref is None
    assert survey.comment == "Web Testing, GUI Testing, front-end, survey, SBST, AI, fuzzing"
    # A DOI without a journal reference.
    assert papers["1205.1866v1"].doi == "10.5121/vlsic.2012.3205"
    assert papers["1205.1866v1"].journal_ref is None
    assert papers["1205.1866v1"].categories == ["cs.AR"]


def test_published_and_updated_are_aware_utc() -> None:
    papers = {p.arxiv_id: p for p in parse_api_feed(load(TESTING_0)).papers}
    fuzzing = papers["2005.14124v2"]
    assert fuzzing.published_at == datetime(2020, 5, 28, 16, 19, 50, tzinfo=UTC)
    assert fuzzing.updated_at == datetime(2020, 7, 16, 8, 15, 48, tzinfo=UTC)
    assert fuzzing.published_at.utcoffset() == timedelta(0)
    assert fuzzing.categories == ["cs.SE", "cs.CR", "cs.LG"]


def test_second_page_keeps_tex_untouched() -> None:
    page = parse_api_feed(load(TESTING_10))
    assert (page.total_results, page.start_index, page.items_per_page) == (214881, 10, 10)
    first = page.papers[0]
    assert first.arxiv_id == "2403.16981v2"
    assert first.categories == ["math.ST", "cs.IT", "stat.ML"]
    assert "prior distribution $(π, 1-π)$." in first.abstract
    assert "(i) all $0 \\le α, β\\le 1/8$ in the prior-free" in first.abstract
    assert "i.i.d.\\ samples" in first.abstract
    assert page.papers[-1].authors == ["Katharina Götz", "Patric Feldmeier", "Gordon Fraser"]


def test_old_style_id_entities_decoded_once_and_leading_spaces_kept() -> None:
    page = parse_api_feed(load(ASTRO))
    (paper,) = page.papers
    assert paper.arxiv_id == "astro-ph/0601001v1"
    assert paper.categories == ["astro-ph"]
    assert paper.abstract.startswith("  We derive the frequencies of hot Jupiters")
    assert "following Gould & Morgan (2003)" in paper.abstract
    assert "limit of V_max<17.5." in paper.abstract
    assert "&amp;" not in paper.abstract and "&lt;" not in paper.abstract
    # Affiliations are separate elements, never part of the name.
    assert paper.authors == ["Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski"]
    assert paper.journal_ref == "ActaAstron.56:1-50,2006"
    assert paper.comment is not None and paper.comment.startswith("62 pages including 16 figures")
    assert paper.doi is None
    assert paper.published_at == datetime(2006, 1, 2, 14, 57, 58, tzinfo=UTC)


def test_unknown_id_is_dropped_by_the_server() -> None:
    page = parse_api_feed(load(DROPPED))
    # Two ids were asked for (0808.05394 and 1707.08567); one comes back, no error.
    assert [p.arxiv_id for p in page.papers] == ["1707.08567v1"]
    assert page.total_results == 1
    paper = page.papers[0]
    assert len(paper.authors) == 34
    assert paper.authors[0] == "Kees A. Schouhamer Immink"
    assert paper.authors[32] == "Dirk Wübben"
    assert paper.authors[-1] == "Hirosuke Yamamoto"
    assert (
        paper.comment == "44 pages, editors for the proceedings: Yanling Chen and A. J. Han Vinck"
    )
    assert paper.categories == ["cs.IT"]


def test_title_zero_stays_a_string() -> None:
    (paper,) = parse_api_feed(load(TITLE_0)).papers
    assert paper.title == "0"
    assert isinstance(paper.title, str)
    assert paper.arxiv_id == "2104.12255v1"
    assert paper.abstract.startswith("What is the funniest number in cryptography? 0.")
    assert paper.authors == ["Quan Thoi Minh Nguyen"]
    assert paper.categories == ["cs.CR"]
    assert paper.published_at == datetime(2021, 4, 20, 16, 7, 14, tzinfo=UTC)


def test_zero_results_is_an_empty_page() -> None:
    page = parse_api_feed(load(ZERO))
    assert page == ApiPage(papers=[], total_results=0, start_index=0, items_per_page=100)


def test_error_entry_is_a_source_error_not_a_paper() -> None:
    with pytest.raises(SourceError) as info:
        parse_api_feed(load(ERROR))
    assert info.value.source == "arxiv_api"
    assert info.value.reason == "incorrect id format for abc"
    assert "incorrect id format" in str(info.value)


# --- legacy format (2016) --------------------------------------------------------------------


def test_legacy_id_list_hard_wraps_and_extras() -> None:
    page = parse_api_feed(load(LEGACY_ID))
    assert (page.total_results, page.start_index, page.items_per_page) == (1, 0, 10)
    (paper,) = page.papers
    assert paper.arxiv_id == "1111.2011v2"
    assert paper.title == (
        "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large\n"
        "  Connectivity Limit"
    )
    assert paper.abstract.startswith("  Theoretical description of anisotropic systems, such as")
    assert "layered\nsuperconductors" in paper.abstract
    assert paper.authors == ["James M. Murray", "Adrian Del Maestro", "Zlatko Tesanovic"]
    assert paper.doi == "10.1103/PhysRevB.85.115117"
    assert paper.journal_ref == "Phys. Rev. B 85, 115117 (2012)"
    assert paper.comment == "8 pages, 3 figures. Published version"
    assert paper.categories == ["cond-mat.str-el", "cond-mat.stat-mech"]
    assert paper.published_at == datetime(2011, 11, 8, 18, 48, 36, tzinfo=UTC)
    assert paper.updated_at == datetime(2012, 4, 2, 12, 38, 54, tzinfo=UTC)


def test_legacy_search_with_per_element_namespaces() -> None:
    page = parse_api_feed(load(LEGACY_SEARCH))
    assert (page.total_results, page.start_index, page.items_per_page) == (31, 0, 10)
    assert len(page.papers) == 10
    papers = {p.arxiv_id: p for p in page.papers}
    assert (
        papers["cond-mat/0412498v1"].title
        == "Thermal melting of density waves on the square lattice"
    )
    assert papers["cond-mat/0412498v1"].authors == ["Adrian Del Maestro", "Subir Sachdev"]
    entanglement = papers["1412.6529v2"]
    assert entanglement.categories == ["cond-mat.quant-gas", "quant-ph"]
    assert entanglement.comment == (
        "10 pages, 8 figures; updated figure 5, added references, revised\n  text, reformatted"
    )
    assert "R\\'{e}nyi entanglement entropy" in entanglement.abstract
    assert papers["0807.2873v1"].journal_ref == "Annals of Physics 324, 523 (2009)."
    assert all(p.doi for p in page.papers)


# --- synthetic variations of real bodies -----------------------------------------------------


def test_primary_category_first_even_when_listed_later() -> None:
    body = load(LEGACY_ID).replace(
        b'<category term="cond-mat.str-el" scheme="http://arxiv.org/schemas/atom"/>', b""
    )
    body = body.replace(
        b"</entry>",
        b'<category term="cond-mat.str-el" scheme="http://arxiv.org/schemas/atom"/></entry>',
    )
    (paper,) = parse_api_feed(body).papers
    assert paper.categories == ["cond-mat.str-el", "cond-mat.stat-mech"]


def test_missing_opensearch_values_get_defaults() -> None:
    body = re.sub(rb"\s*<opensearch:\w+>\d+</opensearch:\w+>", b"", load(TITLE_0))
    assert b"opensearch:totalResults" not in body
    page = parse_api_feed(body)
    assert (page.total_results, page.start_index, page.items_per_page) == (1, 0, 1)
    assert page.papers[0].title == "0"


# --- hostile bodies --------------------------------------------------------------------------


def test_truncated_feed_is_a_source_error() -> None:
    body = load(TESTING_0)
    with pytest.raises(SourceError) as info:
        parse_api_feed(body[: len(body) // 2])
    assert info.value.source == "arxiv_api"
    assert info.value.reason.startswith("malformed XML:")


def test_html_page_is_a_source_error() -> None:
    with pytest.raises(SourceError) as info:
        parse_api_feed(b"  <!doctype html>\n<html lang=en><title>Rate limited</title></html>")
    assert info.value.reason == "answered with an HTML page, not a feed"


def test_billion_laughs_is_refused_without_expansion() -> None:
    levels = [b'<!ENTITY lol0 "lol">']
    for n in range(1, 10):
        ref = b"&lol%d;" % (n - 1)
        levels.append(b'<!ENTITY lol%d "%s">' % (n, ref * 10))
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE feed [' + b"".join(levels) + b"]>\n"
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title></feed>'
    )
    with pytest.raises(SourceError) as info:
        parse_api_feed(body)
    assert info.value.source == "arxiv_api"
    assert info.value.reason == "the feed declares a DTD, which is refused"
    assert "lollol" not in str(info.value)


def test_rss_body_is_not_an_api_feed() -> None:
    body = (
        (Path(__file__).parents[1] / "fixtures" / "arxiv_rss")
        .joinpath("rss_empty_feed_test_archive_2024-11-28.xml")
        .read_bytes()
    )
    with pytest.raises(SourceError, match="not an Atom feed"):
        parse_api_feed(body)


def test_empty_body_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="malformed XML"):
        parse_api_feed(b"")


# --- date helpers ----------------------------------------------------------------------------


def test_date_helpers() -> None:
    assert parse_iso("2026-09-25T04:00:11.600680+00:00") == datetime(
        2026, 9, 25, 4, 0, 11, 600680, tzinfo=UTC
    )
    assert parse_iso("2016-10-09T00:00:00-04:00") == datetime(2016, 10, 9, 4, tzinfo=UTC)
    assert parse_iso("2024-04-04T04:18:46.165Z") == datetime(
        2024, 4, 4, 4, 18, 46, 165000, tzinfo=UTC
    )
    assert parse_iso("not a date") is None
    assert parse_iso(None) is None
    assert parse_rfc822("Thu, 28 Nov 2024 00:00:00 -0500") == datetime(2024, 11, 28, 5, tzinfo=UTC)
    assert parse_rfc822("yesterday") is None
    local = parse_iso_local("2026-09-25T00:00:00-04:00")
    assert local is not None
    assert local.utcoffset() == timezone(timedelta(hours=-4)).utcoffset(None)
    assert local_date(local) == date(2026, 9, 25)
