"""A newcomer's first hour: the demo runs on the database every other command uses, so
`digest preview`, `status` and the web app see its readers and its mails' links open; it
never erases anybody else's subscribers and removes only the mail it wrote; it prints each
mail's whole path; every paper in its mails opens; an empty answer says why."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from cli_support import environment, run_cli

from digest.config import load_settings
from digest.store import Store
from digest.web import create_app

ATOM_ENTRY = "{http://www.w3.org/2005/Atom}entry"
LINK = re.compile(r'href="(http://localhost:8000/[^"]+)"')


@pytest.fixture
def demoed(tmp_path: Path) -> Path:
    done = run_cli(tmp_path, "demo")
    assert done.returncode == 0, done.stderr
    return tmp_path


def test_the_demo_uses_the_default_database_and_prints_whole_paths(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    outbox.mkdir(parents=True)
    # Mail another command wrote (`digest send`, a web confirmation) is not the demo's.
    theirs = outbox / "2026-12-01_someone@lab.example_0123abcd.html"
    theirs.write_text("keep me")
    for _ in range(2):
        done = run_cli(tmp_path, "demo")
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "digest.db").is_file()
    assert not (tmp_path / "var" / "demo.db").exists()
    assert theirs.read_text() == "keep me"
    assert len(list(outbox.glob("*example.org_*.html"))) == 3  # the second run replaced the first
    printed = [line for line in done.stdout.splitlines() if line.endswith(".html")]
    assert len(printed) == 3
    for line in printed:
        path = Path(line)
        assert path.is_absolute() and path.is_file(), line  # whole, on a line of its own

    # Every other command on its defaults sees the demo's data.
    preview = run_cli(tmp_path, "preview", "ada@example.org")
    assert preview.returncode == 0, preview.stderr
    assert "nothing for ada@example.org: no paper was first seen since their last digest" in (
        preview.stderr
    )
    status = run_cli(tmp_path, "status")
    assert "3 active" in status.stdout and "behind" not in status.stdout + status.stderr
    papers = run_cli(tmp_path, "papers", "--limit", "300", "--json")
    assert len(papers.stdout.splitlines()) == 284
    ranked = run_cli(tmp_path, "rank", "-i", "diffusion", "--json")
    assert ranked.returncode == 0 and ranked.stdout.strip()


def test_the_demo_never_erases_a_database_with_other_subscribers(demoed: Path) -> None:
    assert run_cli(demoed, "subscribe", "real@lab.example", "-i", "graphs").returncode == 0
    before = (demoed / "var" / "digest.db").stat().st_size
    refused = run_cli(demoed, "demo")
    assert refused.returncode == 2
    assert "holds 1 subscriber(s) besides the demo's (e.g. real@lab.example)" in refused.stderr
    assert "digest demo --database var/demo.db" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = run_cli(demoed, "subscribers")
    assert "real@lab.example" in listed.stdout and (demoed / "var" / "digest.db").stat().st_size
    assert before > 0
    # On a file of its own it runs, and leaves the real one alone.
    elsewhere = run_cli(demoed, "demo", "--database", "var/demo.db")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "real@lab.example" in run_cli(demoed, "subscribers").stdout


def test_every_paper_in_the_demo_mails_opens(demoed: Path) -> None:
    mails = sorted((demoed / "var" / "outbox").glob("*.html"))
    assert len(mails) == 3
    cards = 0
    for mail in mails:
        html = mail.read_text()
        for card in html.split('<td class="card')[1:]:
            cards += 1
            title = re.search(r'<h3 class="title"[^>]*>(.*?)</h3>', card, re.S)
            assert title and 'href="https://' in title.group(1), card[:300]
            assert re.search(r'class="authors"[^>]*>[^<]+<', card), card[:300]
    assert cards >= 20


def test_after_the_demo_the_web_app_on_its_defaults_answers_the_mails_links(
    demoed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)  # the web app on its defaults: nothing of the caller's
    for key, value in environment(demoed, {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(demoed)
    settings = load_settings()
    links: set[str] = set()
    feeds: dict[str, int] = {}  # each mail's feed link: how many papers the mail has
    for mail in (demoed / "var" / "outbox").glob("*.html"):
        html = mail.read_text()
        found = LINK.findall(html)
        links.update(found)
        [feed] = [link for link in found if "/feed/" in link]  # every mail links its feed
        feeds[feed] = html.count('<td class="card')
    kinds = {link.split("/")[3] for link in links}
    assert {"manage", "archive", "feedback", "unsubscribe", "feed"} <= kinds
    store = Store.open(settings.database)
    loop = asyncio.new_event_loop()
    try:
        app = create_app(settings, store)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))

        async def fetch_all() -> dict[str, int]:
            async with httpx.AsyncClient(transport=transport, base_url=settings.web.base_url) as c:
                answers = {}
                for link in sorted(links):
                    if "/unsubscribe/" in link:
                        continue  # its GET page is fine too, but one click unsubscribes by POST
                    answer = await c.get(link.replace(settings.web.base_url, ""))
                    answers[link] = answer.status_code
                    if link in feeds:  # the reader's papers, one entry each
                        entries = ET.fromstring(answer.content).findall(ATOM_ENTRY)
                        assert len(entries) == feeds[link] > 0, link
                return answers

        answers = loop.run_until_complete(fetch_all())
    finally:
        loop.close()
        store.close()
    failing = {link: code for link, code in answers.items() if code != 200}
    assert len(answers) >= 3 * 8 and not failing, failing
