"""The web app's pages and flows, in process through httpx.ASGITransport, on a real SQLite
file, with mail going to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select
from web_support import (
    BASE,
    SUBSCRIBE_FORM,
    Harness,
    csrf_of,
    visible_text,
)

from digest.app import digests
from digest.domain.profiles import MAX_TERM_CHARS
from digest.models import Delivery, Paper, SentPaper
from digest.store import Store, subscribers
from digest.web import create_app


def test_front_page_has_the_form_a_sample_and_strict_headers(web: Harness) -> None:
    web.ingest_sample()
    page = web.client().get("/")
    assert page.status_code == 200
    html = page.text
    for label in ("Email address", "Topics", "arXiv categories", "Authors to follow", "Time zone"):
        assert f">{label}" in html
    assert 'for="email"' in html and 'id="email"' in html
    assert 'value="cs.LG"' in html and "Machine Learning" in html
    assert 'list="timezone-list"' in html and '<option value="Europe/Berlin">' in html
    # A sample of recent papers: with no topics, the most upvoted.
    assert html.count('class="paper"') == web.settings.subscribers.default_max_papers
    assert "most upvoted" in html
    # Scripts come only from our own static file.
    assert re.findall(r"<script[^>]*>", html) == [
        f'<script src="{web.app.state.web.pages.static_url("app.js")}" defer>'
    ]
    assert "<style" not in html and " style=" not in html
    headers = page.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "max-age" in headers["strict-transport-security"]
    cookie = headers["set-cookie"]
    assert cookie.startswith("__Host-digest_csrf=")
    assert all(part in cookie for part in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/"))


def test_static_files_are_served_with_the_right_types(web: Harness) -> None:
    client = web.client()
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "fetch(" in script.text and "Intl.DateTimeFormat" in script.text
    css = client.get("/static/app.css")
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/../digest.db").status_code == 404


def test_subscribe_confirm_then_preferences(web: Harness) -> None:
    client = web.client()
    answer = client.submit("/", SUBSCRIBE_FORM)
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text and "reader@example.org" in answer.text
    person = web.subscriber("reader@example.org")
    assert person is not None and person.status == "pending"
    assert [t["text"] for t in person.profile["include"]] == ["language model", "reasoning"]
    assert (person.timezone, person.send_hour) == ("Europe/Berlin", 7)

    [mail] = web.mails_to("reader@example.org")
    assert mail["Subject"] == "Confirm your subscription to Trending Papers"
    assert mail["List-Unsubscribe"] is None  # transactional, not list mail
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",)).get_content()
    assert "If this wasn't you, ignore this message" in text
    assert "language model" not in text  # nothing typed into the form is echoed
    html_part = mail.get_body(("html",)).get_content()
    assert "If this wasn&#39;t you" in html_part or "If this wasn't you" in html_part
    link = web.last_link("reader@example.org", "/confirm/")

    # A mail scanner following the link changes nothing.
    page = client.get(link)
    assert page.status_code == 200 and "Yes, start my digest" in page.text
    assert "every day at 07:00 (Europe/Berlin)" in page.text
    assert web.subscriber("reader@example.org").status == "pending"

    done = client.post(link, data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/manage/")
    assert done.headers["location"].endswith("?welcome=1")
    person = web.subscriber("reader@example.org")
    assert person.status == "active" and person.confirmed_at == web.clock()

    manage = client.get(done.headers["location"])
    assert manage.status_code == 200
    assert "You are subscribed" in manage.text
    assert "&#34;language model&#34;\nreasoning</textarea>" in manage.text
    assert 'value="Europe/Berlin"' in manage.text

    # The confirm link again: already done, and it leads to the preferences.
    again = client.get(link)
    assert "already subscribed" in again.text
    assert done.headers["location"].removesuffix("?welcome=1") in again.text


def test_bad_fields_get_their_own_message_and_keep_what_was_typed(web: Harness) -> None:
    client = web.client()
    typed = {
        **SUBSCRIBE_FORM,
        "email": "not-an-address",
        "include": "diffusion, " + "x" * (MAX_TERM_CHARS + 1),
        "exclude": "<b>survey</b>",
        "authors": "Yann LeCun\n!!",
        "timezone": "Mars/Olympus_Mons",
        "send_hour": "25",
    }
    token = client.csrf("/")
    answer = client.post(
        "/", data={"csrf_token": token, **typed, "categories": ["cs.LG", "cs.NOPE"]}
    )
    assert answer.status_code == 400
    html = answer.text
    errors = dict(
        re.findall(r'<p class="field-error" id="([a-z_]+)-error">.*?</span>(.*?)</p>', html)
    )
    assert set(errors) == {"email", "include", "categories", "authors", "timezone", "send_hour"}
    assert "not a valid email address" in errors["email"]
    assert f"{MAX_TERM_CHARS + 1} characters long; at most {MAX_TERM_CHARS}" in errors["include"]
    assert "Unknown arXiv category &#39;cs.NOPE&#39;" in errors["categories"]
    assert "does not look like a name" in errors["authors"]
    assert "Unknown time zone" in errors["timezone"]
    assert "from 00:00 to 23:00" in errors["send_hour"]
    # Each message is tied to its field for screen readers.
    assert 'aria-describedby="email-hint email-error" aria-invalid="true"' in html
    # What was typed is still there, escaped.
    assert 'value="not-an-address"' in html
    assert "&lt;b&gt;survey&lt;/b&gt;</textarea>" in html
    assert 'value="Mars/Olympus_Mons"' in html
    assert 'value="cs.LG" checked' in html
    assert web.subscriber("reader@example.org") is None
    assert web.recorder.messages == []

    many = ", ".join(f"topic{n}" for n in range(60))
    answer = client.submit("/", {**SUBSCRIBE_FORM, "include": many})
    assert answer.status_code == 400
    assert "Too many include terms: 60 (at most 50)" in answer.text

    weekly = client.submit("/", {**SUBSCRIBE_FORM, "frequency": "weekly", "weekday": ""})
    assert weekly.status_code == 400 and "needs a day of the week" in weekly.text


def test_the_preview_follows_the_topics(web: Harness) -> None:
    web.ingest_sample()
    with web.store.transaction() as session:
        for paper in session.scalars(select(Paper).where(Paper.title.ilike("%video%"))):
            paper.categories = ["q-bio.NC"]
    client = web.client()

    def titles(**params: object) -> list[str]:
        answer = client.get("/preview", params=params)
        assert answer.status_code == 200
        return re.findall(r'<h3 class="paper-title">(?:<a [^>]*>)?(.*?)(?:</a>)?</h3>', answer.text)

    diffusion = titles(include="diffusion")
    assert diffusion and all("diffusion" in t.lower() for t in diffusion[:3])
    shown = client.get("/preview", params={"include": "diffusion"}).text
    assert "<mark>Diffusion</mark>" in shown
    assert '<span class="chip chip-term">Matched diffusion</span>' in shown  # the mail's words
    agents = titles(include="agents", max_papers="5")
    assert 0 < len(agents) <= 5 and agents != diffusion
    fewer = titles(include="diffusion", exclude="video")
    assert fewer and all("video" not in t.lower() for t in fewer)
    nothing = client.get("/preview", params={"include": "zzyzx quokka"}).text
    assert "None of the" in nothing and "matched" in nothing
    broken = client.get("/preview", params={"include": "!!!"}).text
    assert "The preview waits for the marked field" in broken and "no letters or digits" in broken
    by_category = titles(categories=["q-bio"])
    assert by_category and all("video" in t.lower() for t in by_category)


def test_the_preferences_preview_is_the_readers_next_digest(web: Harness) -> None:
    """On the preferences page the preview ranks the reader's own window: papers they got
    are not shown again; it follows the topics being typed, and a bad link is refused."""
    web.ingest_sample()
    person = web.add("ada@example.org", include=["diffusion"])
    client = web.client()
    path = web.manage_path(person) + "/preview"

    def titles(**params: object) -> list[str]:
        answer = client.get(path, params=params)
        assert answer.status_code == 200
        return re.findall(r'<h3 class="paper-title">(?:<a [^>]*>)?(.*?)(?:</a>)?</h3>', answer.text)

    before = titles(include="diffusion")
    assert before and "since your last digest" not in client.get(path).text
    # Her digest goes out with those papers; none of them is a candidate again.
    assert digests.plan_and_rank(web.settings, web.store, web.clock()).planned == 1
    assert titles(include="diffusion") == []
    assert "No new papers since your last digest yet" in client.get(path).text
    # Papers that arrive later are: the preview shows what her next digest would hold,
    # never what she already got.
    web.clock.advance(hours=2)
    with web.store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            paper.first_seen_at = web.clock() - timedelta(hours=1)
        got = set(
            session.scalars(select(Paper.title).join(SentPaper, SentPaper.paper_id == Paper.id))
        )
    after = titles(include="diffusion, learning", max_papers="30")
    assert len(after) > 5
    assert not {re.sub(r"</?mark>", "", t) for t in after} & got
    assert "since your last digest" in client.get(path, params={"include": "diffusion"}).text
    assert client.get(path.replace("/manage/", "/manage/x")).status_code == 400


def test_feed_text_is_escaped_in_the_preview(web: Harness) -> None:
    web.ingest_sample()
    with web.store.transaction() as session:
        paper = session.scalars(select(Paper).order_by(Paper.hf_upvotes.desc())).first()
        paper.title = '<script>alert(1)</script> "><img src=x onerror=alert(1)> Hostile'
        paper.authors = ['"><svg onload=alert(1)>']
    html = web.client().get("/").text
    assert "<script>alert" not in html and "<img src=x" not in html and "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in html


def test_preferences_edit_everything(web: Harness) -> None:
    web.ingest_sample()
    person = web.add("ada@example.org", include=["reasoning"])
    client = web.client()
    path = web.manage_path(person)
    page = client.get(path)
    assert page.status_code == 200 and "ada@example.org" in page.text
    assert "Preview" in page.text and 'class="paper"' in page.text

    answer = client.post(
        path,
        data={
            "csrf_token": csrf_of(page.text),
            "include": '"graph neural network"^2\ndiffusion',
            "exclude": "survey",
            "authors": "Yann LeCun",
            "categories": ["cs.LG", "stat"],
            "also_trending": "1",
            "timezone": "America/New_York",
            "send_hour": "18",
            "frequency": "weekly",
            "weekday": "fri",
            "max_papers": "5",
            "send_when_empty": "1",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"].endswith("?saved=1#notice")
    landed = client.get(answer.headers["location"].split("#")[0])
    assert 'id="notice"' in landed.text and "Saved." in landed.text
    person = web.subscriber("ada@example.org")
    assert person.profile["include"] == [
        {"text": "graph neural network", "weight": 2.0},
        {"text": "diffusion", "weight": 1.0},
    ]
    assert person.profile["categories"] == ["cs.LG", "stat"]
    assert person.profile["authors"] == ["Yann LeCun"] and person.profile["also_trending"]
    assert (person.timezone, person.send_hour, person.frequency, person.weekday) == (
        "America/New_York",
        18,
        "weekly",
        4,
    )
    assert person.max_papers == 5 and person.send_when_empty
    shown = client.get(answer.headers["location"]).text
    assert "Saved." in shown
    assert "&#34;graph neural network&#34;^2\ndiffusion</textarea>" in shown
    assert 'value="stat" checked' in shown

    bad = client.post(
        path,
        data={
            "csrf_token": csrf_of(shown),
            "include": "ok",
            "max_papers": "500",
            "timezone": "UTC",
            "send_hour": "7",
            "frequency": "daily",
        },
    )
    assert bad.status_code == 400
    assert "Choose a number from 1 to 50" in bad.text
    assert 'value="500"' in bad.text
    assert web.subscriber("ada@example.org").max_papers == 5  # nothing saved


def test_pause_and_resume(web: Harness) -> None:
    person = web.add("ada@example.org")
    client = web.client()
    path = web.manage_path(person)
    answer = client.submit(f"{path}/pause", {"days": "14"}, page=path)
    assert answer.status_code == 303
    assert web.subscriber("ada@example.org").paused_until == web.clock() + timedelta(days=14)
    page = client.get(answer.headers["location"]).text
    assert "Paused" in page and "Resume now" in page
    bad = client.submit(f"{path}/pause", {"days": "400"}, page=path)
    assert bad.status_code == 400 and "from 1 to 90" in bad.text
    client.submit(f"{path}/pause", {"action": "resume"}, page=path)
    assert web.subscriber("ada@example.org").paused_until is None


def test_change_of_address_needs_the_new_address_confirmed(web: Harness) -> None:
    person = web.add("old@example.org")
    web.add("taken@example.org")
    client = web.client()
    path = web.manage_path(person)
    unsubscribe = web.unsubscribe_path(person)

    same = client.submit(f"{path}/email", {"new_email": "OLD@example.org"}, page=path)
    assert same.status_code == 400 and "already your address" in same.text
    bad = client.submit(f"{path}/email", {"new_email": "nope"}, page=path)
    assert bad.status_code == 400 and 'value="nope"' in bad.text

    answer = client.submit(f"{path}/email", {"new_email": "New@Example.org"}, page=path)
    assert answer.status_code == 303
    assert web.subscriber("old@example.org").pending_email == "New@example.org"
    assert web.mails_to("old@example.org") == []  # the old address keeps getting digests
    [mail] = web.mails_to("New@example.org")
    assert mail["Subject"] == "Confirm your new address for Trending Papers"
    link = web.last_link("New@example.org", "/confirm-email/")
    assert client.get(path).status_code == 200  # still signed in until it is confirmed

    page = client.get(link)
    assert page.status_code == 200 and "Move your digest from" in page.text
    done = client.post(link, data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 303 and done.headers["location"].endswith("?email_changed=1")
    assert web.subscriber("old@example.org") is None
    moved = web.subscriber("new@example.org")
    assert moved.email == "New@example.org" and moved.pending_email is None
    assert moved.token_version == person.token_version + 1
    assert client.get(done.headers["location"]).status_code == 200
    assert client.get(path).status_code == 410  # links sent to the old address: revoked
    assert client.get(link).status_code == 410  # the confirmation itself is used up
    assert client.get(unsubscribe).status_code == 200  # old mails can still unsubscribe

    # A new address that already has its own subscription is refused at confirmation.
    path = web.manage_path(moved)
    client.submit(f"{path}/email", {"new_email": "taken@example.org"}, page=path)
    link = web.last_link("taken@example.org", "/confirm-email/")
    refused = client.submit(link, {})
    assert refused.status_code == 409 and "already has a subscription" in refused.text
    assert web.subscriber("new@example.org").pending_email == "taken@example.org"

    cancel = client.submit(f"{path}/email/cancel", {}, page=path)
    assert cancel.status_code == 303
    assert web.subscriber("new@example.org").pending_email is None
    assert client.get(link).status_code == 410


def _send_digest(web: Harness, address: str) -> str:
    """Plan, rank and send ``address``'s digest over SMTP; returns its archive path."""
    assert web.send_digests() >= 1
    return web.last_link(address, "/archive/")


def test_download_my_data(web: Harness) -> None:
    web.ingest_sample()
    person = web.add("ada@example.org", include=["language model"])
    _send_digest(web, "ada@example.org")
    answer = web.client().get(f"{web.manage_path(person)}/data.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    data = json.loads(answer.text)
    assert data["subscriber"]["email"] == "ada@example.org"
    assert data["profile"]["include"][0]["text"] == "language model"
    [digest] = data["digests"]
    assert digest["status"] == "sent" and digest["papers"]
    assert "title" in digest["papers"][0]


def test_delete_me_entirely(web: Harness) -> None:
    web.ingest_sample()
    person = web.add("ada@example.org", include=["language model"])
    _send_digest(web, "ada@example.org")
    client = web.client()
    path = web.manage_path(person)
    unconfirmed = client.submit(f"{path}/delete", {}, page=path)
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.text
    assert web.subscriber("ada@example.org") is not None

    done = client.submit(f"{path}/delete", {"confirm_delete": "yes"}, page=path)
    assert done.status_code == 200 and "Everything is deleted" in done.text
    assert web.subscriber("ada@example.org") is None
    with web.store.transaction() as session:
        assert session.scalar(select(func.count(Delivery.id))) == 0
        assert session.scalar(select(func.count(SentPaper.id))) == 0
    assert client.get(path).status_code == 404
    # One-click from an old mail still answers 200: there is nothing left to stop.
    assert web.client().post(web.unsubscribe_path(person)).status_code == 200


def test_sign_out_everywhere(web: Harness) -> None:
    person = web.add("ada@example.org")
    client = web.client()
    path = web.manage_path(person)
    answer = client.submit(f"{path}/signout", {}, page=path)
    assert answer.status_code == 200 and "Signed out everywhere" in answer.text
    assert web.subscriber("ada@example.org").token_version == person.token_version + 1
    assert client.get(path).status_code == 410
    fresh = web.last_link("ada@example.org", "/manage/")
    assert fresh != path and client.get(fresh).status_code == 200
    assert client.get(web.unsubscribe_path(person)).status_code == 200


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_without_cookies(web: Harness, encoding: str) -> None:
    person = web.add("ada@example.org")
    client = web.client()  # a mail client: no cookies, no CSRF token
    if encoding == "urlencoded":
        answer = client.post(web.unsubscribe_path(person), data={"List-Unsubscribe": "One-Click"})
    else:
        answer = client.post(
            web.unsubscribe_path(person), files={"List-Unsubscribe": (None, "One-Click")}
        )
        assert answer.request.headers["content-type"].startswith("multipart/form-data")
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert "You are unsubscribed" in answer.text
    assert web.subscriber("ada@example.org").status == "unsubscribed"
    assert client.http.cookies.jar.__len__() == 0
    # A second click is harmless.
    again = client.post(web.unsubscribe_path(person), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200


def test_unsubscribe_page_then_resubscribe_or_adjust(web: Harness) -> None:
    person = web.add("ada@example.org")
    client = web.client()
    path = web.unsubscribe_path(person)
    page = client.get(path)
    assert page.status_code == 200 and ">Unsubscribe</button>" in page.text
    assert web.subscriber("ada@example.org").status == "active"  # a GET changes nothing

    done = client.post(path, data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200
    assert "You are unsubscribed" in done.text
    assert f'action="{path}/resubscribe"' in done.text
    assert f'action="{path}/manage-link"' in done.text
    assert web.subscriber("ada@example.org").status == "unsubscribed"
    assert "already unsubscribed" in client.get(path).text

    adjust = client.submit(f"{path}/manage-link", {}, page=path)
    assert adjust.status_code == 200 and "emailed you a link" in adjust.text
    link = web.last_link("ada@example.org", "/manage/")
    manage = client.get(link)
    assert "Unsubscribed" in manage.text and "Resubscribe" in manage.text

    back = client.submit(f"{path}/resubscribe", {}, page=path)
    assert back.status_code == 200 and "Welcome back" in back.text
    assert web.subscriber("ada@example.org").status == "active"


def test_archive_shows_the_digest_that_was_sent(web: Harness) -> None:
    web.ingest_sample()
    person = web.add("ada@example.org", include=["language model"])
    archive = _send_digest(web, "ada@example.org")
    client = web.client()
    page = client.get(archive)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    [mail] = web.mails_to("ada@example.org")
    sent_text = visible_text(mail.get_body(("html",)).get_content())
    first_title = re.search(r"1 · .*?\n|", mail.get_body(("plain",)).get_content())
    assert first_title is not None
    with web.store.transaction() as session:
        titles = [p.title for p in session.scalars(select(Paper))]
    shown = visible_text(page.text)
    assert any(
        " ".join(t.split())[:40] in shown and " ".join(t.split())[:40] in sent_text for t in titles
    )
    # No live preferences link in a page whose link never expires.
    assert web.manage_path(person) not in page.text
    assert f"{BASE}{archive}/manage" in page.text
    # As a web page, its content is in a <main> landmark (the mail has none).
    assert re.search(r"<body[^>]*>\s*<main>", page.text) and "</main>\n</body>" in page.text
    manage = client.get(f"{archive}/manage")
    assert manage.status_code == 200 and "Email me a link" in manage.text
    sent = client.post(f"{archive}/manage", data={"csrf_token": csrf_of(manage.text)})
    assert sent.status_code == 200
    assert client.get(web.last_link("ada@example.org", "/manage/")).status_code == 200


def test_healthz(web: Harness, tmp_path) -> None:
    answer = web.client().get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok", "version": "0.1.0"}
    broken = Store(create_engine(f"sqlite:///{tmp_path}"))  # a folder is no database
    app = create_app(web.settings, broken)
    from web_support import Client

    client = Client(app, web.loop)
    try:
        answer = client.get("/healthz")
    finally:
        client.close()
    assert answer.status_code == 503 and answer.json()["status"] == "error"


def test_unknown_pages_and_methods(web: Harness) -> None:
    client = web.client()
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert "content-security-policy" in missing.headers
    assert client.request("DELETE", "/").status_code == 405
    assert client.get("/manage").status_code == 404


def test_schedule_line_and_subscriber_rules_survive_a_returning_address(web: Harness) -> None:
    """An unsubscribed address that signs up again is pending until it confirms."""
    web.add("back@example.org", status="unsubscribed", include=["old topic"])
    client = web.client()
    client.submit("/", {**SUBSCRIBE_FORM, "email": "back@example.org"})
    person = web.subscriber("back@example.org")
    assert person.status == "unsubscribed"
    link = web.last_link("back@example.org", "/confirm/")
    client.submit(link, {})
    person = web.subscriber("back@example.org")
    assert person.status == "active"
    assert subscribers.profile_of(person).include[0].text == "language model"


def test_the_preview_gives_the_reasons_in_the_mails_words() -> None:
    """A preview card's chips are the parts of the Why line its mail would carry."""
    from digest.domain.items import PaperCard, RankedItem, Reason
    from digest.render.text import format_reasons
    from digest.web.preview import card

    reasons = (
        Reason("term", "diffusion"),
        Reason("phrase", "graph neural network"),
        Reason("author", "Yann LeCun"),
        Reason("category", "cs.LG"),
        Reason("semantic", "model compression"),
        Reason("learned", "pruning"),
        Reason("trending", "1"),
    )
    paper = PaperCard(1, "2608.01234", "2608.01234", "A title", "An abstract.")
    chips = card(RankedItem(1, 1.0, 1.0, reasons), paper, authors_shown=3).chips
    assert " · ".join(chip.label for chip in chips) == format_reasons(reasons)
    assert [(chip.kind, chip.label) for chip in chips] == [
        ("term", 'Matched diffusion, "graph neural network"'),
        ("author", "author Yann LeCun"),
        ("category", "cs.LG"),
        ("term", 'close to "model compression"'),
        ("term", "from your feedback: pruning"),
        ("trending", "Trending: 1 upvote"),
    ]
