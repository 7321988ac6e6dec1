"""What a reader sees of a text (``visible``): checked against Unicode's own categories."""

from __future__ import annotations

import sys
import unicodedata

from digest.domain.text import visible


def test_every_control_character_becomes_a_space_and_nothing_else_does() -> None:
    """Each code point between two letters: a control (category Cc) becomes a space; a bidi
    control or zero-width mark disappears; any other character stays as NFC leaves it."""
    removed = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    removed |= set("\u200b\u2060\ufeff")
    for point in range(sys.maxunicode + 1):
        ch = chr(point)
        if 0xD800 <= point <= 0xDFFF:
            continue  # surrogates are not characters
        got = visible(f"a{ch}b")
        if unicodedata.category(ch) == "Cc" or ch.isspace():
            assert got == "a b", hex(point)
        elif ch in removed:
            assert got == "ab", hex(point)
        else:
            assert got == unicodedata.normalize("NFC", f"a{ch}b"), hex(point)


def test_runs_of_controls_and_spaces_collapse_to_one_space() -> None:
    assert visible("\x00 title\r\n\x85with\u202econtrols\t\x7f ") == "title withcontrols"
