"""Text analysis under real concurrency: the sending lanes stem and highlight at once."""

from __future__ import annotations

import json
import threading
from importlib import resources

import snowballstemmer

from digest.domain import analysis


def _corpus_words() -> list[str]:
    """Every word of the bundled sample's 251 abstracts and titles, in order (repeats kept)."""
    listing = resources.files("digest") / "data" / "sample" / "listing.jsonl"
    words: list[str] = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        paper = json.loads(line)
        text = f"{paper['title']} {paper['abstract']}"
        words += [match.group() for match in analysis._WORD.finditer(text)]
    return words


def test_eight_threads_with_a_cold_cache_stem_as_one_thread_does() -> None:
    words = _corpus_words()
    unique = sorted(set(words))
    assert len(unique) > 4000  # a real corpus, not a handful of words
    # One thread, and a stemmer of its own: what every stem must be.
    alone = snowballstemmer.stemmer("english")
    expected = {
        word: alone.stemWord((word[:-1] if analysis._ACRONYM_PLURAL.match(word) else word).lower())
        for word in unique
    }
    analysis.stem.cache_clear()  # cold: every thread computes stems, none reads them back
    start = threading.Barrier(8)
    results: list[dict[str, str]] = [{} for _ in range(8)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        start.wait()
        try:
            # Each thread walks the corpus from another place, so they stem different words
            # at the same moment.
            shift = n * len(words) // 8
            for word in words[shift:] + words[:shift]:
                results[n][word] = analysis.stem(word)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for result in results:
        wrong = {w: s for w, s in result.items() if s != expected[w]}
        assert wrong == {}, f"{len(wrong)} wrong stems, e.g. {list(wrong.items())[:3]}"
    # And what stays cached for the process's life is right too.
    assert {w: analysis.stem(w) for w in unique} == expected
