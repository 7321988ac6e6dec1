"""Inlined templates kept for the next process: processes starting together with an empty
cache render what a renderer without one renders, and leave one whole file; a process after
them reads it and never imports premailer; a changed template is inlined anew, never read
stale; a cache folder that cannot be written costs only the inlining."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_render as base

from digest.config import MailSettings
from digest.render import Renderer, default_templates_dir
from digest.sources.huggingface import parse_daily_papers

HERE = Path(__file__).parent
SETTINGS = MailSettings(from_address="digest@papers.example.org")

# One process's whole job: render a fixed digest with the cache given, print what it made
# and whether premailer was imported.
CHILD = f"""
import hashlib, sys
from pathlib import Path
sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent / "support")!r}]
import test_render as base
from digest.config import MailSettings
from digest.render import Renderer
from digest.sources.huggingface import parse_daily_papers
body = (base.SAMPLE / "huggingface_daily_papers_2026-08-13.json").read_bytes()
cards = [base._card(i + 1, r) for i, r in enumerate(parse_daily_papers(body, base.HF_DAY))]
data = base.make_input([(base.pick(c), c) for c in cards[:10]])
settings = MailSettings(from_address="digest@papers.example.org")
renderer = Renderer(settings, cache_dir=Path(sys.argv[1]))
print(hashlib.sha256(renderer.render(data).raw).hexdigest(), "premailer" in sys.modules)
"""


def digest_input():  # type: ignore[no-untyped-def]
    body = (base.SAMPLE / "huggingface_daily_papers_2026-08-13.json").read_bytes()
    records = parse_daily_papers(body, base.HF_DAY)
    cards = [base._card(i + 1, r) for i, r in enumerate(records)]
    return base.make_input([(base.pick(c), c) for c in cards[:10]])


def run_children(cache: Path, count: int) -> list[tuple[str, bool]]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(cache)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        digest, imported = out.split()
        results.append((digest, imported == "True"))
    return results


def test_processes_starting_together_share_one_whole_inlined_template(tmp_path: Path) -> None:
    expected = hashlib.sha256(Renderer(SETTINGS).render(digest_input()).raw).hexdigest()
    cache = tmp_path / "cache"
    cold = run_children(cache, 4)
    assert [digest for digest, _ in cold] == [expected] * 4
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("digest-") and files[0].endswith(".html")
    # A process after them reads it: the same mail, and premailer is never imported.
    assert run_children(cache, 1) == [(expected, False)]
    assert sorted(p.name for p in cache.iterdir()) == files  # nothing added, nothing left over


def test_a_changed_template_is_inlined_anew(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    data = digest_input()
    before = Renderer(SETTINGS, cache_dir=cache).render(data).html
    changed = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), changed)
    page = changed / "email" / "digest.html"
    source = page.read_text(encoding="utf-8")
    assert ".brand { font-size: 13px;" in source
    page.write_text(source.replace(".brand { font-size: 13px;", ".brand { font-size: 15px;"))
    after = Renderer(SETTINGS, changed, cache_dir=cache).render(data).html
    assert "font-size:13px" in before.split('class="brand')[1].split(">")[0]
    assert "font-size:15px" in after.split('class="brand')[1].split(">")[0]
    assert len(list(cache.iterdir())) == 2


def test_a_cache_that_cannot_be_written_costs_only_the_inlining(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    data = digest_input()
    with caplog.at_level(logging.WARNING, logger="digest.render.templates"):
        made = Renderer(SETTINGS, cache_dir=blocked / "templates").render(data).raw
    assert made == Renderer(SETTINGS).render(data).raw
    assert "cannot keep the inlined template" in caplog.text
