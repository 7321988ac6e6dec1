"""Include terms that are sentences: a reader describing an interest in their own words.

A term of more than ``MAX_PHRASE_WORDS`` words is a description, accepted up to
``MAX_TERM_CHARS`` characters; exclude terms stay words or short phrases. Whatever is stored
must come back unchanged when it is written out again (the edit form, ``merge``).
"""

from __future__ import annotations

import pytest

from digest.domain.profiles import (
    MAX_PHRASE_WORDS,
    MAX_TERM_CHARS,
    Profile,
    Term,
    build_profile,
    merge,
    parse_terms,
)
from digest.errors import ValidationError

SENTENCE = "I want papers on the safety and security of LLM-based agents that use tools"
WITH_COMMA = "agents that call tools, and how to keep them from leaking secrets"


def _sentence_of(chars: int) -> str:
    """Exactly ``chars`` characters of words, ending in a letter (as typed, nothing trimmed)."""
    text = " ".join([SENTENCE] * (chars // len(SENTENCE) + 1))
    return text[: chars - 1] + "s"


def test_a_sentence_is_one_include_term_a_description() -> None:
    [term] = parse_terms([SENTENCE])
    assert term == Term(SENTENCE, 1.0)
    assert term.is_description and not term.is_phrase
    [weighted] = parse_terms([f"{SENTENCE}^2"])
    assert weighted == Term(SENTENCE, 2.0) and weighted.is_description


def test_words_phrases_and_a_description_side_by_side() -> None:
    six = "one two three four five six"
    terms = parse_terms([f'diffusion, "{six}"\n{six} seven; {SENTENCE}'])
    assert [(t.text, t.is_phrase, t.is_description) for t in terms] == [
        ("diffusion", False, False),
        (six, True, False),  # MAX_PHRASE_WORDS words: still a phrase
        (f"{six} seven", False, True),  # one more: a description
        (SENTENCE, False, True),
    ]
    assert len(six.split()) == MAX_PHRASE_WORDS


def test_a_quoted_sentence_keeps_its_comma() -> None:
    [term] = parse_terms([f'"{WITH_COMMA}"^1.5'])
    assert term == Term(WITH_COMMA, 1.5) and term.is_description
    # Unquoted, the comma separates two terms, as it always has.
    assert [t.text for t in parse_terms([WITH_COMMA])] == [
        "agents that call tools",
        "and how to keep them from leaking secrets",
    ]


def test_a_description_may_be_as_long_as_the_limit_and_no_longer() -> None:
    longest = _sentence_of(MAX_TERM_CHARS)
    assert len(longest) == MAX_TERM_CHARS
    [term] = parse_terms([longest])
    assert term.text == longest and term.is_description
    with pytest.raises(ValidationError) as caught:
        parse_terms([_sentence_of(MAX_TERM_CHARS + 1)])
    message = str(caught.value)
    assert message.startswith("include term '")
    assert f"is {MAX_TERM_CHARS + 1} characters long; at most {MAX_TERM_CHARS}" in message
    assert "\n" not in message


def test_an_exclude_term_stays_a_word_or_a_short_phrase() -> None:
    assert build_profile(exclude=["one two three four five six"]).exclude == (
        "one two three four five six",
    )
    with pytest.raises(ValidationError) as caught:
        build_profile(exclude=[SENTENCE])
    assert f"has more than {MAX_PHRASE_WORDS} words" in str(caught.value)
    assert "exclude words or short phrases" in str(caught.value)


@pytest.mark.parametrize(
    "term",
    [
        Term(SENTENCE),
        Term(SENTENCE, 2.0),
        Term(WITH_COMMA),
        Term(WITH_COMMA, 0.5),
        Term("safety; security and robustness of tool-using agents"),
        Term("graph neural network", 2.0),
        Term("diffusion"),
    ],
)
def test_a_term_written_out_parses_back_to_itself(term: Term) -> None:
    assert parse_terms([str(term)]) == [term]


def test_a_description_is_written_out_as_typed() -> None:
    # Only a phrase, or text holding a separator, needs quotes: the sentence stays plain.
    assert str(Term(SENTENCE)) == SENTENCE
    assert str(Term(SENTENCE, 2.0)) == f"{SENTENCE}^2"
    assert str(Term(WITH_COMMA)) == f'"{WITH_COMMA}"'


def test_merge_keeps_descriptions_when_other_parts_change() -> None:
    stored = build_profile(include=[f'"{WITH_COMMA}"^2', SENTENCE, "diffusion"], exclude=["survey"])
    assert [t.text for t in stored.include] == [WITH_COMMA, SENTENCE, "diffusion"]
    # An edit that leaves the include terms alone rewrites them through str(Term).
    changed = merge(stored, exclude=["benchmark"], also_trending=True)
    assert changed.include == stored.include
    assert changed.exclude == ("benchmark",)
    # And as the edit form shows them, one per line, then saved back.
    form = "\n".join(str(t) for t in stored.include)
    assert merge(stored, include=[form]).include == stored.include
    assert Profile.from_json(changed.to_json()).include == stored.include
