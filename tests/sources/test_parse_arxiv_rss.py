"""arXiv listing feed parser (rss.arxiv.org, RSS 2.0 and Atom), against real recordings."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from digest.errors import SourceError
from digest.sources.arxiv_rss import parse_listing, split_creators

FIXTURES = Path(__file__).parents[1] / "fixtures" / "arxiv_rss"
ALL_ARCHIVES = "rss_all_archives_2024-11-28_truncated_52_of_1504_items.xml"
EMPTY = "rss_empty_feed_test_archive_2024-11-28.xml"
ERROR = "rss_error_bad_archive_astroph_2024-11-28.xml"
MULTI = "rss_multi_category_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_4_items.xml"
ATOM = "atom_cs.LG_2026-09-25_hand_trimmed_3_entries.xml"
EVERY_TYPE = ("new", "cross", "replace", "replace-cross")


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def by_id(name: str) -> dict:
    return {p.arxiv_id: p for p in parse_listing(load(name), EVERY_TYPE)}


def test_every_recorded_file_is_covered() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(
        [ALL_ARCHIVES, EMPTY, ERROR, MULTI, ATOM]
    )


# --- RSS 2.0, all archives (2024) -----------------------------------------------------------


def test_default_keeps_new_and_cross_and_skips_replacements() -> None:
    papers = parse_listing(load(ALL_ARCHIVES))
    assert Counter(p.announce_type for p in papers) == {"new": 23, "cross": 9}
    everything = parse_listing(load(ALL_ARCHIVES), EVERY_TYPE)
    assert len(everything) == 52
    assert Counter(p.announce_type for p in everything) == {"new": 23, "cross": 9, "replace": 20}
    # 20 replace items are what the default leaves out.
    assert len(everything) - len(papers) == 20
    assert papers[0].arxiv_id == "2411.17700v1"
    assert papers[-1].arxiv_id == "2411.17699v1"
    assert {p.source for p in papers} == {"arxiv_rss"}


def test_only_replacements_when_asked() -> None:
    papers = parse_listing(load(ALL_ARCHIVES), ("replace",))
    assert len(papers) == 20
    assert papers[0].arxiv_id == "1401.3665v4"
    assert papers[0].title == "The existence of designs"
    assert papers[0].authors == ["Peter Keevash"]


def test_description_prefix_is_removed_and_version_kept() -> None:
    papers = parse_listing(load(ALL_ARCHIVES), EVERY_TYPE)
    first = papers[0]
    assert first.arxiv_id == "2411.17700v1"
    assert first.abstract.startswith("This study investigates the influence of generative")
    assert first.abstract.endswith("regression and structural equations (PLS-SEM).")
    assert not any(p.abstract.startswith(("arXiv:", "Abstract", " ", "\n")) for p in papers)
    assert all("Announce Type:" not in p.abstract[:40] for p in papers)


def test_announce_date_is_the_pubdate_day_and_rss_has_no_submission_time() -> None:
    papers = parse_listing(load(ALL_ARCHIVES), EVERY_TYPE)
    assert {p.announced_on for p in papers} == {date(2024, 11, 28)}
    assert all(p.published_at is None and p.updated_at is None for p in papers)


def test_creators_keep_tex_accents_and_lose_affiliations() -> None:
    papers = by_id(ALL_ARCHIVES)
    assert papers["2411.17709v1"].authors == [
        "Martyna Poziomska",
        "Marian Dovgialo",
        "Przemys{\\l}aw Olbratowski",
        "Pawe{\\l} Niedbalski",
        "Pawe{\\l} Ogniewski",
        "Joanna Zych",
        "Jacek Rogala",
        "Jaros{\\l}aw \\.Zygierewicz",
    ]
    assert papers["2411.17748v1"].authors == [
        "Mohammed Riadh Berramdane",
        "Alexandre Battiston",
        "Michele Bardi",
        "Nicolas Blet",
        "Benjamin R\\'emy",
        "Matthieu Urbain",
    ]
    assert papers["2201.11192v2"].authors[2] == 'Bj\\"orn L\\"utjens'
    assert len(papers["2411.17713v1"].authors) == 20


def test_categories_in_feed_order() -> None:
    papers = by_id(ALL_ARCHIVES)
    assert papers["2411.17707v1"].categories == ["eess.SP", "cs.AI", "cs.SY", "eess.SY"]
    assert papers["2411.16552v1"].categories == [
        "stat.AP",
        "cs.LG",
        "econ.EM",
        "stat.ME",
        "stat.ML",
    ]
    assert papers["2411.17700v1"].categories == ["cs.CY"]


def test_doi_and_journal_reference() -> None:
    papers = parse_listing(load(ALL_ARCHIVES), EVERY_TYPE)
    assert sum(p.doi is not None for p in papers) == 7
    assert sum(p.journal_ref is not None for p in papers) == 6
    indexed = {p.arxiv_id: p for p in papers}
    fluids = indexed["2202.06515v3"]
    assert fluids.doi == "10.1063/5.0236964"
    assert fluids.journal_ref == "Physics of Fluids 36, 117158 (2024)"
    # A DOI without a journal reference.
    assert indexed["2203.01101v3"].doi == "10.1103/PhysRevLett.129.040501"
    assert indexed["2203.01101v3"].journal_ref is None


def test_entities_decoded_once_and_tex_left_alone() -> None:
    papers = by_id(ALL_ARCHIVES)
    assert papers["2411.18380v1"].title == (
        "SoK: Privacy Personalised -- Mapping Personal Attributes \\& Preferences of Privacy "
        "Mechanisms for Shoulder Surfing"
    )
    qcd = papers["2103.07442v3"]
    assert qcd.title == "Quark Density in Lattice QC$_2$D at Imaginary and Real Chemical Potential"
    assert "$\\mu_q$ and $T>T_c$." in qcd.abstract
    assert papers["2411.17699v1"].abstract.startswith("Generating functions $h_r(\\tau)$ of D4-")


# --- RSS 2.0, combined categories (2026) ----------------------------------------------------


def test_multi_category_feed() -> None:
    papers = parse_listing(load(MULTI))
    assert [p.arxiv_id for p in papers] == ["2609.26811v1", "2609.26820v1", "2205.06398v2"]
    assert [p.announce_type for p in papers] == ["new", "new", "cross"]
    cross = papers[2]
    # The primary of a cross-list comes first even though it was not requested.
    assert cross.categories == ["stat.ME", "stat.AP", "stat.ML"]
    assert cross.doi == "10.1093/bioinformatics/btac431"
    assert cross.authors == ["Pritam Dey", "Zhengwu Zhang", "David B. Dunson"]
    assert {p.announced_on for p in papers} == {date(2026, 9, 24)}
    assert papers[0].authors == ["Fabien Polly"]
    assert papers[0].abstract.startswith("Local learning trains each layer")


def test_multi_category_replace_item_carries_old_id() -> None:
    papers = parse_listing(load(MULTI), EVERY_TYPE)
    assert len(papers) == 4
    replaced = papers[3]
    assert replaced.arxiv_id == "2009.13987v3"
    assert replaced.announce_type == "replace"
    assert replaced.title == "Random Polytope Descriptors"
    assert replaced.categories == ["cs.LG", "math.MG", "stat.ML"]


# --- Atom listing (2026) ---------------------------------------------------------------------


def test_atom_listing() -> None:
    papers = parse_listing(load(ATOM))
    assert [p.arxiv_id for p in papers] == ["2609.28553v1", "2402.10149v3"]
    first = papers[0]
    assert first.title == (
        "SMILESGNN: Interpretable Clinical Toxicity Prediction via SMILES-Graph "
        "Cross-Attention Fusion"
    )
    assert first.abstract == (
        "Drug toxicity prediction is critical for reducing late-stage attrition in drug "
        "discovery, yet remains challenging due to severe class imbalance, scaffold-based "
        "generalization, and the clinical need for interpretable predictions."
    )
    assert first.categories == ["cs.LG", "cs.AI"]
    assert first.doi == "10.1109/MAPR72750.2026.11685822"
    assert first.journal_ref == (
        "2026 International Conference on Multimedia Analysis and Pattern Recognition (MAPR)"
    )
    # No <author> elements: names come from dc:creator.
    assert first.authors[0] == "Quang Minh Nguyen"
    assert len(first.authors) == 6
    # <published> 2026-09-25T00:00:00-04:00 is the announce day; <updated> is build time.
    assert {p.announced_on for p in papers} == {date(2026, 9, 25)}
    assert papers[1].categories == ["hep-ph", "cs.LG", "hep-ex"]
    assert papers[1].journal_ref is None


def test_atom_listing_replace_entry() -> None:
    papers = parse_listing(load(ATOM), EVERY_TYPE)
    assert papers[2].arxiv_id == "2401.08875v3"
    assert papers[2].announce_type == "replace"
    assert papers[2].authors == ["Jiaming Tang", "Jingxuan Wen", "Liping Jing"]


# --- empty and error feeds -------------------------------------------------------------------


def test_empty_feed_is_not_an_error() -> None:
    assert parse_listing(load(EMPTY)) == []
    assert parse_listing(load(EMPTY), EVERY_TYPE) == []


def test_error_feed_raises_with_the_feed_text() -> None:
    with pytest.raises(SourceError) as info:
        parse_listing(load(ERROR))
    assert info.value.source == "arxiv_rss"
    assert info.value.reason == (
        "Bad archive 'astroph'. Valid archive names are: astro-ph, cond-mat, cs, econ, eess, "
        "gr-qc, hep-ex, hep-lat, hep-ph, hep-th, math, math-ph, nlin, nucl-ex, nucl-th, "
        "physics, q-bio, q-fin, quant-ph, stat, test."
    )


# --- fallbacks -------------------------------------------------------------------------------


def test_id_falls_back_to_the_description_prefix() -> None:
    body = load(MULTI).replace(b'<guid isPermaLink="false">oai:arXiv.org:2609.26811v1</guid>', b"")
    assert b"oai:arXiv.org:2609.26811v1" not in body
    papers = parse_listing(body)
    assert papers[0].arxiv_id == "2609.26811v1"
    assert papers[0].abstract.startswith("Local learning trains each layer")


def test_creator_splitting_rules() -> None:
    assert split_creators("A. One, B. Two and C. Three") == ["A. One", "B. Two", "C. Three"]
    assert split_creators("A. One, B. Two, and C. Three") == ["A. One", "B. Two", "C. Three"]
    # Commas and "and" inside an affiliation do not split names.
    assert split_creators("Ana Sand (Univ. X, Paris and Lyon), Bo Andersen") == [
        "Ana Sand",
        "Bo Andersen",
    ]
    # arXiv's numbered form: the trailing group of affiliations disappears.
    assert split_creators("A. One (1), B. Two (1 and 2) ((1) Uni X, (2) Uni Y)") == [
        "A. One",
        "B. Two",
    ]
    assert split_creators("") == []


# --- hostile bodies --------------------------------------------------------------------------


def test_truncated_feed_is_a_source_error() -> None:
    body = load(ALL_ARCHIVES)
    with pytest.raises(SourceError) as info:
        parse_listing(body[: len(body) // 2])
    assert info.value.source == "arxiv_rss"
    assert info.value.reason.startswith("malformed XML:")


def test_html_page_is_a_source_error() -> None:
    with pytest.raises(SourceError) as info:
        parse_listing(b"\n\n<html><head><title>503</title></head><body>busy</body></html>")
    assert info.value.reason == "answered with an HTML page, not a feed"


def test_entity_expansion_is_refused() -> None:
    body = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE rss [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
        b"<rss><channel><title>&lol3;</title></channel></rss>"
    )
    with pytest.raises(SourceError) as info:
        parse_listing(body)
    # Said in words, not as defusedxml's repr (DTDForbidden(name='rss', ...)).
    assert info.value.reason == "the feed declares a DTD, which is refused"
    assert "lollol" not in str(info.value)


def test_external_entity_is_refused() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<rss><channel><title>&xxe;</title></channel></rss>"
    )
    with pytest.raises(
        SourceError, match=r"^arxiv_rss: the feed declares a DTD, which is refused$"
    ):
        parse_listing(body)


def test_unknown_root_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="not an RSS or Atom listing"):
        parse_listing(b"<opml version='2.0'><body/></opml>")
