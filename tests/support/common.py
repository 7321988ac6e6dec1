"""What test modules share besides fixtures: the recorded data's folder, whether this is CI,
and the environment that keeps the semantic model out of commands run in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"
NO_MODEL = {"DIGEST_RANKING__SEMANTIC": "false"}  # for the environment of a command under test


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()
