"""What keeps the sign-up form from being abused: CSRF, rate limits, the honeypot, and the
enumeration rule (the answer never tells whether an address is subscribed)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from smtp_server import smtp_server
from web_support import SUBSCRIBE_FORM, Harness, csrf_of, web_settings

from digest.config import Settings
from digest.store import Store, subscribers
from digest.web.csrf import Csrf


def _harness(settings: Settings, store: Store, **extra: str) -> Iterator[Harness]:
    with smtp_server() as (host, port, recorder):
        harness = Harness(web_settings(settings, host, port, **extra), store, recorder)
        yield harness
        harness.close()


@pytest.fixture
def web(settings: Settings, store: Store) -> Iterator[Harness]:
    yield from _harness(settings, store, web__confirm_mails_per_address_per_day="10")


@pytest.fixture
def limited(settings: Settings, store: Store) -> Iterator[Harness]:
    yield from _harness(
        settings,
        store,
        web__subscribe_per_client_per_hour="3",
        web__confirm_mails_per_address_per_day="2",
    )


# -- CSRF ----------------------------------------------------------------------------------


def test_subscribe_needs_the_csrf_token_and_its_cookie(web: Harness) -> None:
    client = web.client()
    page = client.get("/")
    token = csrf_of(page.text)
    missing = client.post("/", data=SUBSCRIBE_FORM)
    assert missing.status_code == 403
    assert "Your form had expired" in missing.text
    assert 'value="reader@example.org"' in missing.text  # what was typed is kept
    forged = client.post("/", data={**SUBSCRIBE_FORM, "csrf_token": token[:-4] + "AAAA"})
    assert forged.status_code == 403
    # A token without the cookie it belongs to (another browser's token, say).
    stranger = web.client()
    assert stranger.post("/", data={**SUBSCRIBE_FORM, "csrf_token": token}).status_code == 403
    # Another browser's cookie with this browser's token.
    other_token = stranger.csrf("/")
    assert client.post("/", data={**SUBSCRIBE_FORM, "csrf_token": other_token}).status_code == 403
    assert web.subscriber("reader@example.org") is None
    assert web.recorder.messages == []
    assert client.post("/", data={**SUBSCRIBE_FORM, "csrf_token": token}).status_code == 200


def test_a_signed_token_needs_the_matching_cookie() -> None:
    csrf = Csrf("secret-0123456789abcdef", secure=False)
    assert csrf.cookie_name == "digest_csrf"
    assert "Secure" not in csrf.cookie_header("n" * 43)
    assert Csrf("secret-0123456789abcdef", secure=True).cookie_name == "__Host-digest_csrf"


@pytest.mark.parametrize(
    "action",
    ["save", "pause", "email", "email/cancel", "signout", "resubscribe", "delete"],
)
def test_every_preferences_form_needs_csrf(web: Harness, action: str) -> None:
    person = web.add("ada@example.org", include=["reasoning"])
    client = web.client()
    path = web.manage_path(person)
    client.get(path)  # has the cookie, but posts without the token
    url = path if action == "save" else f"{path}/{action}"
    data = {
        "include": "changed",
        "days": "3",
        "new_email": "b@example.org",
        "confirm_delete": "yes",
    }
    answer = client.post(url, data=data)
    assert answer.status_code == 403 and "Please try that again" in answer.text
    after = web.subscriber("ada@example.org")
    assert after is not None
    assert after.profile == person.profile and after.token_version == person.token_version
    assert after.paused_until is None and after.pending_email is None
    assert web.recorder.messages == []


def test_confirm_and_unsubscribe_forms_need_csrf(web: Harness) -> None:
    pending = web.add("new@example.org", status="pending")
    confirm = f"/confirm/{web.tokens.make('confirm', pending.public_id, pending.token_version)}"
    client = web.client()
    client.get(confirm)
    assert client.post(confirm, data={}).status_code == 403
    assert web.subscriber("new@example.org").status == "pending"
    assert client.post(f"{confirm}/resend", data={}).status_code == 403

    gone = web.add("gone@example.org", status="unsubscribed")
    path = web.unsubscribe_path(gone)
    client.get(path)
    assert client.post(f"{path}/resubscribe", data={}).status_code == 403
    assert client.post(f"{path}/manage-link", data={}).status_code == 403
    assert web.subscriber("gone@example.org").status == "unsubscribed"
    assert web.recorder.messages == []


# -- rate limits ---------------------------------------------------------------------------


def test_per_client_limit(limited: Harness) -> None:
    client = limited.client("198.51.100.1")
    for n in range(3):
        answer = client.submit("/", {**SUBSCRIBE_FORM, "email": f"p{n}@example.org"})
        assert answer.status_code == 200
    over = client.submit("/", {**SUBSCRIBE_FORM, "email": "p3@example.org"})
    assert over.status_code == 429
    assert "Too many attempts" in over.text and "Nothing was sent" in over.text
    assert over.headers["retry-after"] == "3600"
    assert limited.mails_to("p3@example.org") == []
    assert limited.subscriber("p3@example.org") is None
    assert len(limited.recorder.messages) == 3
    # Bad forms count too: the limit is on posts, not on successes.
    assert client.submit("/", {**SUBSCRIBE_FORM, "email": "bad"}).status_code == 429
    # Another client is not held up; this one may try again after an hour.
    assert (
        limited.client("198.51.100.2")
        .submit("/", {**SUBSCRIBE_FORM, "email": "q@example.org"})
        .status_code
        == 200
    )
    limited.clock.advance(hours=1, seconds=1)
    again = client.submit("/", {**SUBSCRIBE_FORM, "email": "p3@example.org"})
    assert again.status_code == 200
    assert len(limited.mails_to("p3@example.org")) == 1


@pytest.fixture
def proxied(settings: Settings, store: Store) -> Iterator[Harness]:
    yield from _harness(
        settings, store, web__subscribe_per_client_per_hour="1", web__behind_proxy="true"
    )


def test_per_client_limit_behind_a_proxy(proxied: Harness) -> None:
    client = proxied.client("10.0.0.1")  # the proxy

    def post(forwarded: str, n: int) -> int:
        token = client.csrf("/")
        return client.post(
            "/",
            data={"csrf_token": token, **SUBSCRIBE_FORM, "email": f"x{n}@example.org"},
            headers={"X-Forwarded-For": forwarded},
        ).status_code

    assert post("192.0.2.1", 1) == 200
    assert post("192.0.2.1", 2) == 429
    # Only the entry the proxy added counts; a client cannot pick its own.
    assert post("6.6.6.6, 192.0.2.1", 3) == 429
    assert post("192.0.2.1, 192.0.2.99", 4) == 200
    # IPv6 clients are counted by /64.
    assert post("2001:db8:1:2::1", 5) == 200
    assert post("2001:db8:1:2::ffff", 6) == 429


def test_per_address_limit(limited: Harness) -> None:
    for n in range(2):
        answer = limited.client(f"198.51.100.{n}").submit("/", SUBSCRIBE_FORM)
        assert answer.status_code == 200
    over = limited.client("198.51.100.9").submit(
        "/", {**SUBSCRIBE_FORM, "email": "READER@example.org"}
    )
    assert over.status_code == 429
    assert "already written to this address today" in over.text
    assert over.headers["retry-after"] == "86400"
    assert len(limited.mails_to("reader@example.org")) == 2
    limited.clock.advance(days=1, seconds=1)
    assert limited.client("198.51.100.9").submit("/", SUBSCRIBE_FORM).status_code == 200
    assert len(limited.mails_to("reader@example.org")) == 3


def test_per_address_limit_covers_every_mail_the_site_sends(limited: Harness) -> None:
    person = limited.add("ada@example.org")
    path = limited.unsubscribe_path(person)
    client = limited.client()
    for _ in range(2):
        assert client.submit(f"{path}/manage-link", {}, page=path).status_code == 200
    assert client.submit(f"{path}/manage-link", {}, page=path).status_code == 429
    assert client.submit("/", {**SUBSCRIBE_FORM, "email": "ada@example.org"}).status_code == 429
    assert len(limited.mails_to("ada@example.org")) == 2


def test_rate_events_hold_no_clear_addresses(limited: Harness) -> None:
    client = limited.client("198.51.100.77")
    client.submit("/", SUBSCRIBE_FORM)
    events = limited.rate_events()
    assert {e.bucket for e in events} == {"client", "address-mail"}
    for event in events:
        assert re.fullmatch(r"[0-9a-f]{64}", event.key)
        assert "reader" not in event.key and "198.51" not in event.key
    with limited.store.engine.connect() as connection:
        dump = "\n".join(
            str(row) for row in connection.exec_driver_sql("select * from rate_events")
        )
    assert "reader@example.org" not in dump and "198.51.100.77" not in dump


# -- the honeypot and the enumeration rule -------------------------------------------------


def test_the_honeypot_answers_like_a_success_and_sends_nothing(web: Harness) -> None:
    answer = web.client().submit("/", {**SUBSCRIBE_FORM, "website": "http://spam.example"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert web.subscriber("reader@example.org") is None
    assert web.recorder.messages == []


def _state(web: Harness, address: str, state: str) -> None:
    if state != "new":
        web.add(address, status=state, include=["their own topic"])


STATES = ("new", "pending", "active", "unsubscribed")


def test_same_answer_whatever_the_address_state(web: Harness) -> None:
    """Four addresses in four states: same status, same headers, same body but the
    address the person typed."""
    answers = {}
    for state in STATES:
        address = f"{state}@example.org"
        _state(web, address, state)
        client = web.client()
        token = client.csrf("/")
        answer = client.post("/", data={"csrf_token": token, **SUBSCRIBE_FORM, "email": address})
        answers[state] = answer
    statuses = {state: a.status_code for state, a in answers.items()}
    assert set(statuses.values()) == {200}, statuses
    bodies = {a.text.replace(f"{state}@example.org", "ADDRESS") for state, a in answers.items()}
    assert len(bodies) == 1
    header_sets = {
        tuple(sorted((k, v) for k, v in a.headers.items() if k != "content-length"))
        for a in answers.values()
    }
    assert len(header_sets) == 1
    # Each address got exactly one mail; the active one a link, not a confirmation.
    for state in STATES:
        [mail] = web.mails_to(f"{state}@example.org")
        expected = (
            "You are already subscribed" if state == "active" else "Confirm your subscription"
        )
        assert mail["Subject"].startswith(expected)
    # Nothing about the active subscription changed.
    active = web.subscriber("active@example.org")
    assert active.status == "active"
    assert subscribers.profile_of(active).include[0].text == "their own topic"


def test_byte_identical_answers_for_one_address_through_all_states(web: Harness) -> None:
    """One address, submitted while new, pending, active and unsubscribed: identical bytes."""
    client = web.client()
    token = client.csrf("/")

    def submit() -> tuple[int, bytes]:
        answer = client.post("/", data={"csrf_token": token, **SUBSCRIBE_FORM})
        return answer.status_code, answer.content

    seen = [submit()]  # new
    seen.append(submit())  # pending
    with web.store.transaction() as session:
        subscribers.activate(subscribers.get(session, "reader@example.org"), web.clock())
    seen.append(submit())  # active
    with web.store.transaction() as session:
        subscribers.unsubscribe(subscribers.get(session, "reader@example.org"), web.clock())
    seen.append(submit())  # unsubscribed
    assert len(set(seen)) == 1 and seen[0][0] == 200
    assert len(web.mails_to("reader@example.org")) == 4


# -- size limits ---------------------------------------------------------------------------


def test_oversized_bodies_are_refused(web: Harness) -> None:
    client = web.client()
    token = client.csrf("/")
    answer = client.post(
        "/", data={"csrf_token": token, **SUBSCRIBE_FORM, "include": "x" * 300_000}
    )
    assert answer.status_code == 413
    long_field = client.post(
        "/", data={"csrf_token": token, **SUBSCRIBE_FORM, "include": "a, " * 2000}
    )
    assert long_field.status_code == 400 and "too long" in long_field.text
    assert web.recorder.messages == []
