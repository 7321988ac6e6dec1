"""What test modules share besides fixtures: the recorded data's folder, whether this is CI,
the environment that keeps the semantic model out of commands run in a subprocess, and a
mail's HTML as a reader sees its characters."""

from __future__ import annotations

import os
import re
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"
NO_MODEL = {"DIGEST_RANKING__SEMANTIC": "false"}  # for the environment of a command under test


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def as_read(html: str) -> str:
    """A mail's HTML part with its non-ASCII characters back in place: the part goes as
    ASCII, every other character a numeric reference (``&#8594;`` for "→"), which a mail
    client shows as the character. References to ASCII characters (Jinja's ``&#34;``) stay."""
    return re.sub(r"&#(\d+);", lambda m: chr(int(m[1])) if int(m[1]) > 127 else m[0], html)
