"""The Subject header folded by the renderer's own rules against the email package's.

``wire._subject_line`` folds the shapes real subjects have (printable ASCII words, one
title cut short with "…") itself and hands anything else to the email package; either way
the bytes must be the package's, for every title of the bundled listing and Hugging Face
sample, and for generated titles built to land on every line-break edge.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
import test_render as base

from digest.render import wire
from digest.render.text import make_subject
from digest.sources.huggingface import parse_daily_papers
from digest.sources.sample import read_listing


def real_titles() -> list[str]:
    listing = read_listing((base.SAMPLE / "listing.jsonl").read_bytes(), "listing.jsonl")
    body = (base.SAMPLE / "huggingface_daily_papers_2026-08-13.json").read_bytes()
    hf = parse_daily_papers(body, base.HF_DAY)
    return sorted({r.title for r in listing} | {r.title for r in hf})


def generated_titles(count: int, seed: int) -> list[str]:
    """Words of every length (a 70-letter one included), punctuation the Q encoding must
    escape, non-ASCII letters, "=?", double spaces: the fast path's every refusal too."""
    rng = random.Random(seed)
    words = [
        "a",
        "Learning",
        "GPT-4o",
        "Q&A",
        "x" * 70,
        "Very-Long-Hyphenated-Word-Indeed",
        "(LLMs)",
        "naïve",
        "=?utf-8?q?x?=",
        "3D",
        "Scale:",
        "_under_",
        "",
        "Rényi",
    ]
    letters = "abcXYZ09 -:,.()=?_…é—\"'\\/!*+#"
    titles = []
    for _ in range(count):
        titles.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 24))))
        titles.append("".join(rng.choice(letters) for _ in range(rng.randint(1, 150))))
    return titles


def subjects(titles: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    day = date(2026, 1, 1)
    return [
        make_subject(day + timedelta(days=rng.randint(0, 365)), title, more)
        for title in titles
        for more in (0, 1, 9, 17, 123)
    ]


def test_real_titles_fold_as_the_email_package_folds_them() -> None:
    found = subjects(real_titles(), seed=1)
    assert len(found) > 1000
    for subject in found:
        assert wire._subject_line(subject) == wire._fold("Subject", subject), subject
    # The point of the function: nearly every real subject takes the fast path (the sample
    # titles' accents and the like go to the package).
    fast = [s for s in found if wire._fold_simple_subject(s) is not None]
    assert len(fast) > 0.9 * len(found)
    assert any(not s.isascii() for s in fast)  # a title cut short with "…"
    assert any("\r\n " in wire._subject_line(s).decode() for s in fast)  # folded lines


@pytest.mark.parametrize("seed", [2, 3])
def test_generated_titles_fold_as_the_email_package_folds_them(seed: int) -> None:
    found = subjects(generated_titles(1500, seed), seed)
    fast = 0
    for subject in found:
        mine = wire._fold_simple_subject(subject)
        if mine is not None:
            fast += 1
            assert mine == wire._fold("Subject", subject), subject
    assert fast > 1000  # the edges were reached, not all refused


@pytest.mark.parametrize(
    "subject",
    [
        "Your papers for Sun 6 Dec: Pretrained Encoders are All You Need (+9 more)",  # 77
        "Your papers for Sun 6 Dec: nothing new matched today",
        "Your papers for Sun 6 Dec: " + "word " * 30 + "end",
        "Your papers for Sun 6 Dec: A " + "b" * 44 + " order… (+9 more)",
        "Your papers for Sun 6 Dec: A " + "b" * 45 + " order… (+9 more)",
        "Your papers for Sun 6 Dec: A " + "b" * 46 + " order… (+9 more)",
    ],
)
def test_edges_of_the_first_line(subject: str) -> None:
    assert wire._subject_line(subject) == wire._fold("Subject", subject)


def test_what_the_fast_path_refuses_goes_to_the_package() -> None:
    for subject in ["Naïve Bayes", "a  b", "=?utf-8?q?x?=", "Scale:… more", "x" * 80, "a…b"]:
        assert wire._fold_simple_subject(subject) is None, subject
        assert wire._subject_line(subject) == wire._fold("Subject", subject)
