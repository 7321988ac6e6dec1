"""The digest archive: "view in browser" for a digest, behind its archive link.

The page is the stored delivery rendered again by the digest renderer, which gives the very
mail that was sent (rendering is a pure function of the stored delivery). One change: the
mail's "manage preferences" link is not handed out here, since archive links never expire
and are not revoked by "sign out everywhere"; it points to a page that mails a fresh link to
the subscriber instead. Nor is the reader's feed link, for the same reason. And as a web page
its content sits in a ``<main>`` landmark (a mail has none: it is shown inside the client's).
"""

from __future__ import annotations

import re

from digest.app import access
from digest.app.sending import digest_input
from digest.app.services import Services
from digest.store import digests, papers


def page(services: Services, token: str) -> str | None:
    """The archived digest's HTML, or None while its papers are still being chosen."""
    with services.store.transaction() as session:
        delivery = access.archive(session, services.tokens, token)
        if not delivery.ranked:
            return None
        reader = digests.readers(session, [delivery.subscriber_id]).get(delivery.subscriber_id)
        if reader is None:
            raise access.LinkProblem("unknown", "archive", token)
        chosen = digests.items_of(session, [delivery.id])[delivery.id]
        cards = papers.cards_by_ids(session, {item.paper_id for item in chosen})
    data = digest_input(
        services.settings,
        services.links,
        reader,
        delivery,
        [(item, cards[item.paper_id]) for item in chosen],
        manage_url=f"{services.settings.web.base_url}/archive/{token}/manage",
        feed=False,
    )
    return as_page(services.renderer().render(data, fit=False).html)


_BODY = re.compile(r"(<body\b[^>]*>)(.*)(</body>)", re.DOTALL)


def as_page(html: str) -> str:
    """The mail's HTML with everything in its body inside ``<main>``."""
    return _BODY.sub(lambda m: f"{m.group(1)}\n<main>{m.group(2)}</main>\n{m.group(3)}", html, 1)
