"""A new person, in a real browser (Debian's chromium driven by Playwright), against the real
app served by uvicorn and a real SMTP server: subscribe, open the confirmation mail, confirm,
edit topics while the preview changes, receive a digest, view it in the browser, and
unsubscribe from its link.

Skips with the reason when playwright or /usr/bin/chromium is missing, except under CI=true,
where it fails. Screenshots of each page go to a temporary folder, or to docs/screenshots/
when DIGEST_SCREENSHOTS=1 (that is how the README's pictures are made).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from smtp_server import Recorder, free_port, smtp_server
from sqlalchemy import select
from web_support import serving

from digest.app import digests, fetching, sending
from digest.config import Settings, load_settings
from digest.delivery.mailers import make_mailer
from digest.domain.tokens import SignedLinks, Tokens
from digest.models import Paper
from digest.store import Store, subscribers

CHROMIUM = Path(os.environ.get("DIGEST_CHROMIUM", "/usr/bin/chromium"))  # Debian's by default
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ADDRESS = "new.reader@example.org"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def smtp() -> Iterator[tuple[str, int, Recorder]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def site(settings: Settings, smtp: tuple[str, int, Recorder]) -> Iterator[tuple[Settings, str]]:
    """The app under uvicorn on 127.0.0.1, in a thread; yields (settings, base URL)."""
    from digest.web.server import make_server

    host, smtp_port, _ = smtp
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served = load_settings(
        environ={
            "DIGEST_DATABASE__URL": settings.database.url,
            "DIGEST_PATHS__VAR_DIR": str(settings.paths.var_dir),
            "DIGEST_MAIL__TRANSPORT": "smtp",
            "DIGEST_MAIL__FROM_ADDRESS": "papers@digest.example.org",
            "DIGEST_SMTP__HOST": host,
            "DIGEST_SMTP__PORT": str(smtp_port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_WEB__BASE_URL": base,
            "DIGEST_WEB__SECRET_KEY": "browser-test-secret-0123456789",
        }
    )
    store = Store.open(served.database)
    now = datetime.now(UTC)
    [fetched] = fetching.fetch(served, store, ["sample"])
    assert fetched.status == "ok"
    with store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            paper.first_seen_at = now - timedelta(hours=6)
    server = make_server(served, "127.0.0.1", port, store=store)
    try:
        with serving(server):
            yield served, base
    finally:
        store.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("DIGEST_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SHOTS
    return tmp_path


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings.database)
    try:
        yield store
    finally:
        store.close()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mail_link(recorder: Recorder, address: str, path: str, count: int) -> str:
    """The ``path`` link in the ``count``-th mail to ``address``, once it has arrived."""
    mails = wait_until(lambda: len(recorder.to(address)) >= count and recorder.to(address), "mail")
    text = mails[count - 1].message.get_body(("plain",)).get_content()
    found = re.findall(r"http://127\.0\.0\.1:\d+" + re.escape(path) + r"[^\s<>\"]+", text)
    assert found, f"no {path} link in: {text}"
    return found[-1]


def preview_titles(page: Any) -> list[str]:
    return page.locator("#preview-body .paper-title").all_inner_texts()


def test_a_new_reader_from_sign_up_to_unsubscribe(
    browser: Any, site: tuple[Settings, str], smtp: tuple[str, int, Recorder], shots: Path
) -> None:
    from playwright.sync_api import expect  # present: the browser fixture checked

    settings, base = site
    _, _, recorder = smtp
    context = browser.new_context(viewport=DESKTOP, timezone_id="Europe/Berlin", locale="en-GB")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def shoot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        page.set_viewport_size(PHONE)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / f"{name}-phone.png"))
        page.set_viewport_size(DESKTOP)

    # -- subscribe --------------------------------------------------------------------------
    page.goto(base + "/")
    assert page.title().endswith("Trending Papers")
    # The time zone comes from the browser (Intl), and stays editable.
    assert page.locator("#timezone").input_value() == "Europe/Berlin"
    trending = preview_titles(page)
    assert len(trending) == 10
    shoot("subscribe")

    page.get_by_label("Email address", exact=True).fill(ADDRESS)
    page.get_by_label("Topics", exact=True).press_sequentially("language model", delay=20)
    typed = wait_until(
        lambda: (titles := preview_titles(page)) != trending and titles, "the preview to update"
    )
    assert any("language model" in t.lower() for t in typed)
    assert page.locator("#preview-body mark").count() > 0
    page.get_by_label("Send at").select_option("8")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url(base + "/")
    # The answer comes at the same URL: wait for it to be shown, not just for the URL.
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert ADDRESS in page.content()
    shoot("check-inbox")

    # -- confirm from the mail --------------------------------------------------------------
    confirm = mail_link(recorder, ADDRESS, "/confirm/", 1)
    page.goto(confirm)
    assert page.get_by_role("heading", name="Confirm your subscription").is_visible()
    assert "every day at 08:00 (Europe/Berlin)" in page.content()
    shoot("confirm")
    page.get_by_role("button", name="Yes, start my digest").click()
    page.wait_for_url(re.compile(r".*/manage/.*\?welcome=1$"))
    assert "You are subscribed" in page.content()
    with _store(settings) as store, store.transaction() as session:
        person = subscribers.get(session, ADDRESS)
        assert person.status == "active" and person.timezone == "Europe/Berlin"

    # -- edit topics with the live preview --------------------------------------------------
    before = preview_titles(page)
    topics = page.get_by_label("Topics", exact=True)
    topics.fill("")
    topics.press_sequentially("diffusion", delay=20)
    after = wait_until(
        lambda: (titles := preview_titles(page)) != before and titles, "the preview to change"
    )
    assert "diffusion" in after[0].lower()
    page.get_by_role("group", name="arXiv categories").locator("summary").first.click()
    page.get_by_label("Papers per mail, at most").fill("5")
    wait_until(lambda: len(preview_titles(page)) <= 5, "the preview to show five papers")
    shoot("preferences")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(re.compile(r".*\?saved=1#notice$"))
    # The confirmation is where the page landed, in view, not scrolled past.
    notice = page.locator("#notice")
    assert "Saved." in notice.inner_text()
    box = notice.bounding_box()
    assert box is not None and -1 <= box["y"] < page.viewport_size["height"]
    assert "Saved." in page.content()
    with _store(settings) as store, store.transaction() as session:
        person = subscribers.get(session, ADDRESS)
        assert [t.text for t in subscribers.profile_of(person).include] == ["diffusion"]
        assert person.max_papers == 5

    # -- a digest arrives -------------------------------------------------------------------
    with _store(settings) as store:
        today = datetime.now(ZoneInfo("Europe/Berlin")).date()
        planned = digests.plan_and_rank(settings, store, datetime.now(UTC), for_date=today)
        assert planned.planned == 1 and planned.items > 0
        mailer = make_mailer(settings)
        try:
            sent = sending.send_ready(
                settings,
                store,
                mailer,
                renderer=sending.make_renderer(settings),
                links=SignedLinks(settings.web.base_url, Tokens(settings.web.secret_key)),
            )
        finally:
            mailer.close()
        assert sent.sent == 1
    digest_mail = wait_until(
        lambda: len(recorder.to(ADDRESS)) >= 2 and recorder.to(ADDRESS)[1], "digest"
    )
    assert digest_mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    archive = mail_link(recorder, ADDRESS, "/archive/", 2)
    unsubscribe = mail_link(recorder, ADDRESS, "/unsubscribe/", 2)

    page.goto(archive)
    assert "diffusion" in page.content().lower()
    shoot("archive")

    # -- unsubscribe from the digest's link -------------------------------------------------
    page.goto(unsubscribe)
    assert page.get_by_role("heading", name="Unsubscribe?").is_visible()
    page.get_by_role("button", name="Unsubscribe", exact=True).click()
    # The answer to the POST loads at the same URL: wait for it (a busy machine is slow).
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    expect(page.get_by_role("button", name="Resubscribe")).to_be_visible()
    shoot("unsubscribed")
    with _store(settings) as store, store.transaction() as session:
        assert subscribers.get(session, ADDRESS).status == "unsubscribed"

    # Keyboard: the first Tab lands on the skip link, which is visible when focused.
    page.goto(base + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"

    csp = [p for p in problems if "Content Security Policy" in p or "Refused" in p]
    assert csp == [], csp
    assert problems == [], problems
    context.close()


def test_the_demo_mails_in_a_browser_every_paper_opens(
    browser: Any, tmp_path: Path, shots: Path
) -> None:
    """The demo's mails as a reader opens them, on a desktop and on a phone: every card's
    title is a link (to arXiv, or to a title search when the listing had no id), the footer's
    links are there; the README's pictures of a digest come from here."""
    from cli_support import run_cli

    folder = tmp_path / "demo"
    folder.mkdir()
    done = run_cli(folder, "demo")
    assert done.returncode == 0, done.stderr
    mails = sorted((folder / "var" / "outbox").glob("*ada@example.org*.html"))
    mails += sorted((folder / "var" / "outbox").glob("*ben@example.org*.html"))
    assert len(mails) == 2
    for size, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        context = browser.new_context(viewport=size)
        page = context.new_page()
        for mail in mails:
            page.goto(mail.as_uri())
            cards = page.locator("td.card")
            assert cards.count() >= 8
            for n in range(cards.count()):
                link = cards.nth(n).locator("h3.title a")
                assert link.count() == 1, cards.nth(n).inner_text()[:200]
                assert link.get_attribute("href").startswith("https://")
            footer = page.locator("p.footer-links a").all_inner_texts()
            assert "Unsubscribe" in footer and "Manage preferences" in footer
            # Nothing wider than the screen: no sideways scrolling on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        page.goto(mails[0].as_uri())
        page.screenshot(path=str(shots / f"digest{suffix}.png"), full_page=not suffix)
        context.close()


def test_on_a_phone_the_live_preview_sits_right_after_the_topics(
    browser: Any, site: tuple[Settings, str]
) -> None:
    """Typing topics on a phone, the preview is in sight below them, above the schedule and
    the Subscribe button; on a wide screen it is beside the form; turning the screen moves it."""
    _, base = site
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(base + "/")

    def top(selector: str) -> float:
        box = page.locator(selector).first.bounding_box()
        assert box is not None, selector
        return box["y"]

    assert top("#topics") < top("[data-preview-panel]") < top("button[type=submit]")
    page.get_by_label("Topics", exact=True).press_sequentially("diffusion", delay=20)
    wait_until(lambda: any("diffusion" in t.lower() for t in preview_titles(page)), "the preview")
    # Just below the fields being typed in, not a long list of categories away.
    field = page.get_by_label("Topics", exact=True).bounding_box()
    preview = page.locator("[data-preview-panel]").bounding_box()
    assert field and preview and preview["y"] - (field["y"] + field["height"]) < 700
    page.set_viewport_size(DESKTOP)

    def beside() -> bool:
        form = page.locator("form[data-preview-form]").bounding_box()
        preview = page.locator("[data-preview-panel]").bounding_box()
        return bool(form and preview and preview["x"] > form["x"] + form["width"] - 1)

    # The page moves the panel on the media query's change event, which the browser sends
    # after the resize: read at once, the boxes could still be the phone's layout.
    wait_until(beside, "the preview beside the form on a wide screen")
    context.close()
