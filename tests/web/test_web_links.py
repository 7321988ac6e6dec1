"""Every way a signed link can fail: tampered, wrong purpose, expired, revoked, unknown.

Each failure answers a page that says what happened, with a status that says it too:
400 tampered (or made for another purpose), 410 expired or revoked, 404 unknown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from itsdangerous import TimestampSigner
from smtp_server import smtp_server
from web_support import SUBSCRIBE_FORM, Harness, csrf_of, web_settings

from digest.app.access import AddressTokens
from digest.config import Settings
from digest.models import Subscriber
from digest.store import Store


def tamper(token: str) -> str:
    """The same token with one character in the middle of its signature changed."""
    at = len(token) - 6
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


def make(web: Harness, purpose: str, person: Subscriber) -> str:
    version = person.token_version if purpose in ("manage", "confirm") else None
    return web.tokens.make(purpose, person.public_id, version)


ROUTES = {
    "manage": "/manage/{}",
    "unsubscribe": "/unsubscribe/{}",
    "confirm": "/confirm/{}",
}


@pytest.mark.parametrize("purpose", sorted(ROUTES))
def test_a_tampered_link_is_refused(web: Harness, purpose: str) -> None:
    person = web.add("ada@example.org", status="pending" if purpose == "confirm" else "active")
    client = web.client()
    good = ROUTES[purpose].format(make(web, purpose, person))
    assert client.get(good).status_code == 200
    for bad in (tamper(make(web, purpose, person)), "garbage", "x" * 600, "a.b.c"):
        answer = client.get(ROUTES[purpose].format(bad))
        assert answer.status_code == 400, bad
        assert "This link does not work" in answer.text
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("made_for", "used_as"),
    [
        ("unsubscribe", "manage"),
        ("archive", "manage"),
        ("confirm", "manage"),
        ("manage", "unsubscribe"),
        ("manage", "confirm"),
        ("unsubscribe", "confirm"),
    ],
)
def test_a_link_made_for_another_purpose_is_refused(
    web: Harness, made_for: str, used_as: str
) -> None:
    person = web.add("ada@example.org")
    token = make(web, made_for, person)
    answer = web.client().get(ROUTES[used_as].format(token))
    assert answer.status_code == 400
    assert web.subscriber("ada@example.org").status == "active"


def test_wrong_purpose_one_click_post_changes_nothing(web: Harness) -> None:
    person = web.add("ada@example.org")
    manage_token = make(web, "manage", person)
    answer = web.client().post(
        f"/unsubscribe/{manage_token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert answer.status_code == 400
    assert web.subscriber("ada@example.org").status == "active"


def test_a_new_address_link_is_its_own_purpose(web: Harness) -> None:
    person = web.add("ada@example.org")
    client = web.client()
    # A manage or confirm token is no proof of owning a new address.
    for purpose in ("manage", "confirm"):
        assert client.get(f"/confirm-email/{make(web, purpose, person)}").status_code == 400
    # And a new-address token opens nothing else.
    with web.store.transaction() as session:
        row = session.get(Subscriber, person.id)
        row.pending_email = "new@example.org"
        token = AddressTokens(web.settings.web.secret_key).make(row, "new@example.org")
    assert client.get(f"/confirm-email/{token}").status_code == 200
    assert client.get(f"/manage/{token}").status_code == 400
    assert client.get(f"/confirm/{token}").status_code == 400


@contextmanager
def made_days_ago(days: float) -> Iterator[None]:
    """Tokens made inside are stamped ``days`` ago (itsdangerous checks max_age on read)."""
    past = int(time.time() - days * 86400)
    original = TimestampSigner.get_timestamp
    TimestampSigner.get_timestamp = lambda self: past  # type: ignore[method-assign]
    try:
        yield
    finally:
        TimestampSigner.get_timestamp = original  # type: ignore[method-assign]


def test_an_expired_confirm_link_explains_and_offers_a_fresh_one(web: Harness) -> None:
    person = web.add("ada@example.org", status="pending")
    with made_days_ago(6.9):
        fresh_enough = make(web, "confirm", person)
    with made_days_ago(7.1):
        expired = make(web, "confirm", person)
    client = web.client()
    assert client.get(f"/confirm/{fresh_enough}").status_code == 200

    page = client.get(f"/confirm/{expired}")
    assert page.status_code == 410
    assert "This link has expired" in page.text and "work for 7 days" in page.text
    assert f'action="/confirm/{expired}/resend"' in page.text
    # The POST is refused too: an old link cannot confirm.
    post = client.post(f"/confirm/{expired}", data={"csrf_token": csrf_of(page.text)})
    assert post.status_code == 410
    assert web.subscriber("ada@example.org").status == "pending"

    resent = client.post(f"/confirm/{expired}/resend", data={"csrf_token": csrf_of(page.text)})
    assert resent.status_code == 200 and "Check your inbox" in resent.text
    link = web.last_link("ada@example.org", "/confirm/")
    assert client.submit(link, {}).status_code == 303
    assert web.subscriber("ada@example.org").status == "active"
    # A tampered expired link gets no resend.
    bad = client.post(f"/confirm/{tamper(expired)}/resend", data={"csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400


def test_the_confirm_lifetime_is_a_setting(settings: Settings, store: Store) -> None:
    with smtp_server() as (host, port, recorder):
        web = Harness(web_settings(settings, host, port, web__confirm_days="1"), store, recorder)
        try:
            person = web.add("ada@example.org", status="pending")
            with made_days_ago(1.2):
                old = make(web, "confirm", person)
            page = web.client().get(f"/confirm/{old}")
            assert page.status_code == 410 and "work for 1 days" not in page.text
            assert "work for 1 day" in page.text
        finally:
            web.close()


def test_an_expired_new_address_link(web: Harness) -> None:
    person = web.add("ada@example.org")
    with web.store.transaction() as session:
        row = session.get(Subscriber, person.id)
        row.pending_email = "new@example.org"
        with made_days_ago(8):
            token = AddressTokens(web.settings.web.secret_key).make(row, "new@example.org")
    page = web.client().get(f"/confirm-email/{token}")
    assert page.status_code == 410 and "This link has expired" in page.text
    assert "resend" not in page.text


def test_manage_links_are_revoked_by_the_token_version(web: Harness) -> None:
    person = web.add("ada@example.org")
    client = web.client()
    old_manage = web.manage_path(person)
    old_confirm = f"/confirm/{make(web, 'confirm', person)}"
    unsubscribe = web.unsubscribe_path(person)
    with web.store.transaction() as session:
        session.get(Subscriber, person.id).token_version += 1
    page = client.get(old_manage)
    assert page.status_code == 410 and "This link no longer works" in page.text
    assert client.get(old_confirm).status_code == 410
    post = client.post(old_manage, data={"csrf_token": client.csrf("/"), "include": "x"})
    assert post.status_code == 410
    # The current version works, and so does the unsubscribe link of any age.
    assert client.get(web.manage_path(web.subscriber("ada@example.org"))).status_code == 200
    assert client.get(unsubscribe).status_code == 200
    one_click = web.client().post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert web.subscriber("ada@example.org").status == "unsubscribed"


def test_links_of_a_deleted_subscriber_are_unknown(web: Harness) -> None:
    person = web.add("ada@example.org")
    manage = web.manage_path(person)
    unsubscribe = web.unsubscribe_path(person)
    client = web.client()
    client.submit(f"{manage}/delete", {"confirm_delete": "yes"}, page=manage)
    for path in (manage, unsubscribe):
        answer = client.get(path)
        assert answer.status_code == 404
        assert "We cannot find this subscription" in answer.text


def test_archive_links(web: Harness) -> None:
    client = web.client()
    assert client.get("/archive/garbage").status_code == 400
    person = web.add("ada@example.org")
    # A genuine archive token for a delivery that does not exist.
    token = web.tokens.make("archive", "0" * 32)
    assert client.get(f"/archive/{token}").status_code == 404
    # A subscriber's token is not a delivery's.
    assert client.get(f"/archive/{make(web, 'manage', person)}").status_code == 400


def test_a_subscribe_after_sign_out_everywhere_mails_a_working_link(web: Harness) -> None:
    """Lost the link? The front page mails an active subscriber a fresh one."""
    person = web.add("ada@example.org")
    with web.store.transaction() as session:
        session.get(Subscriber, person.id).token_version += 1
    client = web.client()
    client.submit("/", {**SUBSCRIBE_FORM, "email": "ada@example.org"})
    [mail] = web.mails_to("ada@example.org")
    assert mail["Subject"] == "You are already subscribed to Trending Papers"
    assert client.get(web.last_link("ada@example.org", "/manage/")).status_code == 200
