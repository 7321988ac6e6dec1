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


def test_the_c_stemmer_is_used_and_stems_as_snowballs_own_python_one() -> None:
    """PyStemmer (a dependency) is Snowball's C build: snowballstemmer hands it out when it is
    installed, and every stem (and so every match, highlight and ranking) must be what the
    pure-Python Snowball stemmer gives. Checked on the sample's whole vocabulary, and on the
    shapes that stress the rules (suffix chains, apostrophes, digits, non-ASCII letters)."""
    import Stemmer
    from snowballstemmer.english_stemmer import EnglishStemmer

    assert isinstance(analysis._stemmer(), Stemmer.Stemmer)
    words = sorted({word.lower() for word in _corpus_words()})
    words += ["generalizations", "relational", "hopeful", "dying", "news", "ski's", "'tis"]
    words += ["gpt4", "3d", "naïve", "café", "überlegen", "résumés", "cœur", "x" * 60, "a", ""]
    python, c = EnglishStemmer(), Stemmer.Stemmer("english")
    different = {w: (python.stemWord(w), c.stemWord(w)) for w in words}
    different = {w: pair for w, pair in different.items() if pair[0] != pair[1]}
    assert len(words) > 4000
    assert different == {}
