"""Feedback from the mail, end to end: a digest goes out over SMTP, the reader follows "more
like this" / "fewer like this" in it, presses the button on the page, and the next day's
digest differs. Also: a GET changes nothing, undo, CSRF, the preferences page's learned
section and its removals, the model, and seeding from a Zotero export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from common import FIXTURES, fixture_bytes
from smtp_server import smtp_server
from sqlalchemy import func, select
from web_support import BASE, Harness, csrf_of, visible_text, web_settings

from digest.app import fetching
from digest.config import Settings
from digest.models import Delivery, DeliveryItem, Feedback, Paper
from digest.store import Store, subscribers

# Day one: what the readers get first. Day two: what feedback should change.
DAY_ONE = [
    (
        "2609.00001",
        "Structured pruning of convolutional networks",
        "We prune channels and filters of convolutional networks. Magnitude pruning removes "
        "channels with small weights, and sparsity grows while accuracy stays.",
    ),
    (
        "2609.00002",
        "Speech recognition networks for spoken audio",
        "Speech networks learn from raw audio; spoken words are recognised from speech "
        "features, with audio augmentation.",
    ),
    (
        "2609.00003",
        "Graph networks for molecules",
        "Message passing networks predict molecular properties from graphs of atoms.",
    ),
    (
        "2609.00004",
        "Galaxy morphology from telescope surveys",
        "We classify galaxies in telescope images by their morphology and redshift.",
    ),
    (
        "2609.00005",
        "Protein structure with equivariant networks",
        "Equivariant networks predict protein structure from residue contacts.",
    ),
    (
        "2609.00006",
        "Weather forecasting with diffusion",
        "A diffusion model forecasts weather from satellite observations.",
    ),
]
DAY_TWO = [
    # Never says "networks": only what the reader liked can bring it in.
    ("2609.00011", "Magnitude pruning and channel sparsity",
     "Pruning channels by magnitude gives sparsity; pruning the filters keeps accuracy."),
    # Says "networks" in its title, but is about what the reader turned down.
    ("2609.00012", "Speech networks for spoken audio",
     "Speech recognition from spoken audio with speech augmentation."),
    ("2609.00013", "Recurrent networks for sequences",
     "Recurrent networks model sequences of tokens."),
]  # fmt: skip


SAMPLE = Path(__file__).parents[2] / "digest" / "data" / "sample" / "listing.jsonl"


def listing(path: Path, papers: list[tuple[str, str, str]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"arxiv_id": pid, "title": title, "abstract": abstract}) + "\n"
            for pid, title, abstract in papers
        )
    )
    return path


@pytest.fixture
def web(settings: Settings, store: Store, tmp_path: Path) -> Iterator[Harness]:
    listing(tmp_path / "day.jsonl", DAY_ONE)
    with smtp_server() as (host, port, recorder):
        harness = Harness(
            web_settings(
                settings, host, port, sources__sample__listing=str(tmp_path / "day.jsonl")
            ),
            store,
            recorder,
        )
        yield harness
        harness.close()


def ingest(web: Harness, papers: list[tuple[str, str, str]], tmp_path: Path) -> None:
    """Store the day's papers, first seen this morning. The first call also stores the 251
    sample papers as seen a month ago: the background a real store has, against which
    feedback finds a paper's distinctive words (no digest lists them any more)."""
    path = listing(tmp_path / "day.jsonl", papers)
    background = not (tmp_path / "background-done").exists()
    if background:
        with path.open("a") as handle:
            handle.write(SAMPLE.read_text())
        (tmp_path / "background-done").touch()
    [summary] = fetching.fetch(web.settings, web.store, ["sample"])
    assert summary.status == "ok"
    ids = [pid for pid, _t, _a in papers]
    with web.store.transaction() as session:
        for paper in session.scalars(select(Paper)):
            if paper.canonical_id in ids:
                paper.first_seen_at = web.clock() - timedelta(hours=3)
            elif background:
                paper.first_seen_at = web.clock() - timedelta(days=30)


def send_digests(web: Harness) -> None:
    web.send_digests()


def latest_digest(web: Harness, address: str) -> list[str]:
    """The arXiv ids of ``address``'s latest digest, in order."""
    with web.store.transaction() as session:
        person = subscribers.get(session, address)
        delivery = session.scalars(
            select(Delivery)
            .where(Delivery.subscriber_id == person.id)
            .order_by(Delivery.local_date.desc())
        ).first()
        assert delivery is not None
        return list(
            session.scalars(
                select(Paper.canonical_id)
                .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
                .where(DeliveryItem.delivery_id == delivery.id)
                .order_by(DeliveryItem.position)
            )
        )


def feedback_links(web: Harness, address: str) -> dict[tuple[str, int], str]:
    """(paper, +1/-1) -> the path of that link in the last mail to ``address``."""
    [*_, message] = web.mails_to(address)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    papers = latest_digest(web, address)
    found = {}
    for link in re.findall(re.escape(BASE) + r"/feedback/([A-Za-z0-9_.~-]+)", text):
        data = web.tokens.read_digest_feedback(link)
        found[(papers[data.place - 1], data.value)] = f"/feedback/{link}"
        assert f"{BASE}/feedback/{link}" in html  # the same links in both parts
    return found


def choices(web: Harness) -> list[tuple[str, int]]:
    with web.store.transaction() as session:
        rows = session.execute(
            select(Paper.canonical_id, Feedback.value).join(Paper, Paper.id == Feedback.paper_id)
        )
        return sorted((paper, value) for paper, value in rows)


def learned_words(web: Harness, address: str) -> dict[str, float]:
    person = web.subscriber(address)
    assert person is not None
    learned = subscribers.profile_of(person).learned
    return {t.text.lower(): t.weight for t in learned.terms}


def test_feedback_in_the_mail_changes_the_next_digest(web: Harness, tmp_path: Path) -> None:
    ingest(web, DAY_ONE, tmp_path)
    web.add("reader@example.org", include=["networks"])
    web.add("control@example.org", include=["networks"])  # the same profile, no feedback
    send_digests(web)
    first = latest_digest(web, "reader@example.org")
    assert "2609.00001" in first and "2609.00002" in first
    links = feedback_links(web, "reader@example.org")
    assert {paper for paper, _value in links} == set(first)  # two links under every paper

    client = web.client()
    # A GET (a mail scanner, a link preview) only shows the button; nothing is recorded.
    page = client.get(links[("2609.00001", 1)])
    assert page.status_code == 200
    assert "Structured pruning of convolutional networks" in page.text
    assert "Yes, more like this" in visible_text(page.text)
    assert choices(web) == [] and learned_words(web, "reader@example.org") == {}

    done = client.post(links[("2609.00001", 1)], data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200
    assert "Noted: more like this" in visible_text(done.text)
    assert "pruning" in visible_text(done.text)  # the updated profile, shown
    assert "/undo" in done.text
    page = client.get(links[("2609.00002", -1)])
    client.post(links[("2609.00002", -1)], data={"csrf_token": csrf_of(page.text)})
    assert choices(web) == [("2609.00001", 1), ("2609.00002", -1)]
    words = learned_words(web, "reader@example.org")
    assert words["pruning"] > 0 and words["speech"] < 0

    # The next day: the liked topic comes in without the reader's word, and the disliked
    # one goes out although it has it.
    web.clock.advance(days=1)
    ingest(web, DAY_TWO, tmp_path)
    send_digests(web)
    reader = latest_digest(web, "reader@example.org")
    control = latest_digest(web, "control@example.org")
    assert "2609.00011" not in control and "2609.00012" in control
    assert "2609.00011" in reader and "2609.00012" not in reader
    assert "2609.00013" in reader  # the reader's own word still rules the rest
    [*_, mail] = web.mails_to("reader@example.org")
    text = " ".join(mail.get_body(("plain",)).get_content().split())
    assert "from your feedback: pruning" in text  # the why names what was learned


def test_undo_forgets_the_choice_and_what_it_taught(web: Harness, tmp_path: Path) -> None:
    ingest(web, DAY_ONE, tmp_path)
    web.add("reader@example.org", include=["networks"])
    send_digests(web)
    link = feedback_links(web, "reader@example.org")[("2609.00001", 1)]
    client = web.client()
    token = client.csrf(link)
    client.post(link, data={"csrf_token": token})
    assert learned_words(web, "reader@example.org")
    undone = client.post(f"{link}/undo", data={"csrf_token": token})
    assert undone.status_code == 200 and "Undone" in visible_text(undone.text)
    assert choices(web) == [] and learned_words(web, "reader@example.org") == {}
    person = web.subscriber("reader@example.org")
    assert person is not None and "learned" not in person.profile.get("extra", {})
    again = client.post(f"{link}/undo", data={"csrf_token": token})
    assert "no choice" in visible_text(again.text)


def test_feedback_needs_the_forms_csrf_token_and_a_genuine_link(
    web: Harness, tmp_path: Path
) -> None:
    ingest(web, DAY_ONE, tmp_path)
    person = web.add("reader@example.org", include=["networks"])
    client = web.client()
    link = f"/feedback/{web.tokens.make_feedback(person.public_id, '2609.00001', 1)}"
    assert client.post(link, data={}).status_code == 403
    assert client.post(link, data={"csrf_token": "forged"}).status_code == 403
    assert choices(web) == []
    token = link.rsplit("/", 1)[1]
    tampered = client.get(f"/feedback/{token[:-3]}xyz")
    assert tampered.status_code == 400
    wrong_purpose = client.get(f"/feedback/{web.tokens.make('unsubscribe', person.public_id)}")
    assert wrong_purpose.status_code == 400
    unknown_paper = web.tokens.make_feedback(person.public_id, "2609.99999", 1)
    assert client.get(f"/feedback/{unknown_paper}").status_code == 404
    # The page never links to the preferences (the link never expires): it mails one.
    page = client.get(link)
    done = client.post(link, data={"csrf_token": csrf_of(page.text)})
    assert "/manage/" not in page.text + done.text and f"{link}/manage-link" in done.text
    sent = client.post(f"{link}/manage-link", data={"csrf_token": csrf_of(page.text)})
    assert sent.status_code == 200 and "Check your inbox" in sent.text
    assert web.last_link("reader@example.org", "/manage/")


def test_a_digests_link_names_a_paper_of_that_digest_and_nothing_else(
    web: Harness, tmp_path: Path
) -> None:
    ingest(web, DAY_ONE, tmp_path)
    web.add("reader@example.org", include=["networks"])
    send_digests(web)
    mailed = latest_digest(web, "reader@example.org")
    link = feedback_links(web, "reader@example.org")[(mailed[-1], -1)]
    start, place, word = link.split("~")
    assert (int(place), word) == (len(mailed), "fewer")
    client = web.client()
    page = client.get(link)
    titles = {paper: title for paper, title, _abstract in DAY_ONE}
    assert page.status_code == 200 and titles[mailed[-1]] in page.text
    # Past the digest's last paper: no such paper in it. A changed place, word or token,
    # or another purpose's token for the same delivery: refused as tampered.
    assert client.get(f"{start}~{len(mailed) + 1}~fewer").status_code == 404
    with web.store.transaction() as session:
        delivery = session.scalars(select(Delivery.public_id)).one()
    archive = f"/feedback/{web.tokens.make('archive', delivery)}"
    for bad in (
        f"{start}~0~more",
        f"{start}~1~most",
        f"{start[:-3]}xyz~1~more",
        f"{archive}~1~more",
    ):
        assert client.get(bad).status_code == 400, bad
    assert choices(web) == []
    # The link's own place and direction are what is recorded.
    client.post(link, data={"csrf_token": csrf_of(page.text)})
    assert choices(web) == [(mailed[-1], -1)]


def test_the_preferences_page_shows_what_was_learned_and_removals_stick(
    web: Harness, tmp_path: Path
) -> None:
    ingest(web, DAY_ONE, tmp_path)
    person = web.add("reader@example.org", include=["networks"])
    client = web.client()
    like = f"/feedback/{web.tokens.make_feedback(person.public_id, '2609.00001', 1)}"
    client.post(like, data={"csrf_token": client.csrf(like)})
    manage = web.manage_path(person)
    page = client.get(manage)
    assert page.status_code == 200
    text = visible_text(page.text)
    assert "Learned from your feedback" in text and "More papers about" in text
    assert learned_words(web, "reader@example.org")["pruning"] > 0
    assert 'name="value" value="pruning"' in page.text  # its remove button
    assert 'data-model="off"' in page.text  # one choice is not enough for the model

    removed = client.submit(f"{manage}/learned", {"kind": "term", "value": "pruning"}, manage)
    assert removed.status_code == 303
    assert "pruning" not in learned_words(web, "reader@example.org")
    # Liked again (and another pruning paper): still not learned, the removal is remembered.
    client.post(like, data={"csrf_token": client.csrf(like)})
    assert "pruning" not in learned_words(web, "reader@example.org")
    assert "channels" in learned_words(web, "reader@example.org")
    assert "will not be learned again" in visible_text(client.get(manage).text)

    # Editing the topics keeps what was learned.
    form = {"include": "networks, graphs", "timezone": "Europe/Berlin", "send_hour": "7",
            "frequency": "daily", "max_papers": "10",
            "description": "Making networks smaller: pruning, quantization."}  # fmt: skip
    assert client.submit(manage, form).status_code == 303
    saved = web.subscriber("reader@example.org")
    assert saved is not None
    profile = subscribers.profile_of(saved)
    assert profile.description == "Making networks smaller: pruning, quantization."
    assert "channels" in {t.text for t in profile.learned.terms}

    forgot = client.submit(f"{manage}/learned", {"kind": "forget", "value": ""}, manage)
    assert forgot.status_code == 303 and choices(web) == []
    assert learned_words(web, "reader@example.org") == {}


def test_the_personal_model_starts_after_enough_choices_and_can_be_switched_off(
    web: Harness, tmp_path: Path
) -> None:
    ingest(web, DAY_ONE + DAY_TWO, tmp_path)
    person = web.add("reader@example.org", include=["networks"])
    client = web.client()
    wanted = web.settings.feedback.model_min_events
    picks = [("2609.00001", 1), ("2609.00011", 1), ("2609.00002", -1), ("2609.00012", -1),
             ("2609.00004", -1), ("2609.00006", -1)][:wanted]  # fmt: skip
    assert len(picks) == wanted
    for number, (paper, value) in enumerate(picks, start=1):
        link = f"/feedback/{web.tokens.make_feedback(person.public_id, paper, value)}"
        client.post(link, data={"csrf_token": client.csrf(link)})
        saved = web.subscriber("reader@example.org")
        assert saved is not None
        assert subscribers.profile_of(saved).learned.model_on == (number >= wanted)
    manage = web.manage_path(person)
    assert 'data-model="on"' in client.get(manage).text
    client.submit(f"{manage}/learned", {"kind": "model", "value": ""}, manage)
    saved = web.subscriber("reader@example.org")
    assert saved is not None and not subscribers.profile_of(saved).learned.model_on
    assert 'data-model="off"' in client.get(manage).text
    client.submit(f"{manage}/learned", {"kind": "model-on", "value": ""}, manage)
    saved = web.subscriber("reader@example.org")
    assert saved is not None and subscribers.profile_of(saved).learned.model_on


def test_seeding_from_a_zotero_export_on_the_preferences_page(web: Harness, tmp_path: Path) -> None:
    ingest(web, DAY_ONE, tmp_path)
    person = web.add("reader@example.org", include=["networks"])
    api: list[httpx.Request] = []

    def arxiv(request: httpx.Request) -> httpx.Response:
        api.append(request)
        # Recorded: asked for two ids, arXiv knew one (1707.08567).
        return httpx.Response(
            200, content=fixture_bytes("arxiv_api/id_list_two_ids_one_silently_dropped.xml")
        )

    web.app.state.web.http_transport = httpx.MockTransport(arxiv)
    client = web.client()
    manage = web.manage_path(person)
    token = client.csrf(manage)
    bib = (FIXTURES / "seeds" / "zotero.bib").read_bytes()
    answer = client.post(
        f"{manage}/seed",
        data={"csrf_token": token},
        files={"seed_file": ("My Library.bib", bib, "application/x-bibtex")},
    )
    assert answer.status_code == 200
    text = visible_text(answer.text)
    assert "Added 1 paper" in text and "Proceedings of Workshop AEW10" in text
    assert "Not found on arXiv: 1706.03762" in text
    assert "Deep learning" in text  # the entry without an arXiv id, named
    assert [r.url.params["id_list"] for r in api] == ["1706.03762,1707.08567"]
    assert choices(web) == [("1707.08567", 1)]
    saved = web.subscriber("reader@example.org")
    assert saved is not None
    assert [p.canonical_id for p in subscribers.profile_of(saved).learned.liked] == ["1707.08567"]

    pasted = client.post(f"{manage}/seed", data={"csrf_token": token, "seed_ids": "2609.00001"})
    assert pasted.status_code == 200 and len(api) == 1  # stored already: arXiv not asked
    assert ("2609.00001", 1) in choices(web)

    broken = client.post(
        f"{manage}/seed",
        data={"csrf_token": token},
        files={"seed_file": ("x.bib", (FIXTURES / "seeds" / "broken.bib").read_bytes(), "")},
    )
    assert broken.status_code == 400
    assert "is not closed" in visible_text(broken.text)
    with web.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 2
