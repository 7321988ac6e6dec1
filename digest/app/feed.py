"""A reader's private Atom feed: the papers of their digests sent in the last 30 days.

Behind ``/feed/<token>.atom``, a link in every digest's footer and on the preferences page.
The token carries the reader's token version, so "sign out everywhere" revokes it; it is not
timed (feed readers poll for years). What a link that no longer works answers:

- a token that is not ours (garbage, tampered, another purpose's): 404, as for any unknown
  page;
- a revoked token (signed out everywhere since), a reader since deleted, or one who
  unsubscribed: 410 Gone, which tells feed readers to stop polling.

Entries are rebuilt from the stored deliveries exactly as the archive page rebuilds a sent
digest (its chosen items, in order, with their reasons), and rendered as the mail shows them.
Entry ids are ``tag:`` URIs from the site's host, the reader's public id and the paper's
canonical id (never the secret token), so they are stable across requests and token changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from digest.app import access
from digest.app.services import Services
from digest.domain.second_look import SECTION as REVISIT
from digest.render.atom import FeedEntry, FeedInput, render_atom
from digest.render.text import one_line
from digest.store import feeds

WINDOW = timedelta(days=30)
# A tag: URI names a date its authority held the name; fixed so that ids never change.
TAG_DATE = "2026"

# The answers when there is no feed, by the link problem's reason (see the module's doc).
GONE = {
    "tampered": (404, "No such feed."),
    "expired": (404, "No such feed."),  # feed tokens are not timed: cannot happen
    "unknown": (410, "This feed is gone: the subscription was deleted."),
    "revoked": (
        410,
        "This feed link was revoked (signed out everywhere). Your preferences page has the "
        "new one.",
    ),
    "unsubscribed": (410, "This feed is gone: the reader unsubscribed."),
}


class NoFeed(Exception):
    """No feed behind this link: ``status`` 404 or 410, with a one-line ``text``."""

    def __init__(self, reason: str) -> None:
        self.status, self.text = GONE[reason]
        super().__init__(self.text)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FeedDocument:
    body: bytes
    updated: datetime


def entry_id(host: str, reader_public_id: str, canonical_id: str, again: bool = False) -> str:
    # A paper comes back at most once ("worth another look"): that entry gets its own id.
    tail = "/again" if again else ""
    return f"tag:{host},{TAG_DATE}:paper/{reader_public_id}/{quote(canonical_id, safe=':')}{tail}"


def document(services: Services, token: str) -> FeedDocument:
    """The reader's feed as bytes, or :class:`NoFeed`."""
    since = services.clock() - WINDOW
    with services.store.transaction() as session:
        try:
            person = access.feed(session, services.tokens, token)
        except access.LinkProblem as problem:
            raise NoFeed(problem.reason) from None
        if person.status == "unsubscribed":
            raise NoFeed("unsubscribed")
        sent = feeds.sent_since(session, person.id, since)
        public_id, version, created = person.public_id, person.token_version, person.created_at
    settings, links = services.settings, services.links
    host = urlsplit(settings.web.base_url).hostname or "localhost"
    entries = [
        FeedEntry(
            entry_id=entry_id(host, public_id, card.canonical_id, item.section == REVISIT),
            sent_at=one.sent_at,
            item=item,
            card=card,
            digest_url=links.archive(one.delivery.public_id),
        )
        for one in sent
        for item, card in one.items
    ]
    # Fixed when there is nothing: the same document, and ETag, at every poll.
    updated = sent[0].sent_at if sent else created
    brand = one_line(settings.mail.from_name, 120) or "Trending Papers"
    data = FeedInput(
        feed_id=f"tag:{host},{TAG_DATE}:feed/{public_id}",
        title=f"{brand}: your papers",
        author=brand,
        self_url=links.feed(public_id, version),
        alternate_url=f"{settings.web.base_url}/",
        updated=updated,
        entries=entries,
    )
    return FeedDocument(render_atom(data, settings.mail), updated)
