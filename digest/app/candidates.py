"""Which papers a reader's next digest is chosen from, and how: one selection for sending,
`digest preview`, `send --dry-run`, `digest rank` and the web's live preview.

For a reader at a moment ``now``:

- their **window** starts at their last digest (or ``ranking.first_window_hours`` back for a
  first one; never more than 8 days back): ``digest.domain.schedules.window_start``;
- papers they already got, or judged (liked, disliked, seeded), are never candidates;
  except, once each, a paper sent in the last ``second_look.WINDOW_DAYS`` days with news
  since (code, upvotes, a new version: ``digest.domain.second_look``), in a "Worth another
  look" section after the picks, before "also trending" (``with_second_looks``);
- the **pool** the ranker is prepared over is every paper first seen since
  ``now - first_window_hours`` (on the hour), or since the oldest window being ranked when
  that is older.
  Term rarity is measured over the pool, so a reader ranked alone and in a batch of
  readers whose windows lie within the first window get exactly the same papers.

Previews write nothing: they use the paper vectors already stored and embed none.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.app import meaning
from digest.config import Settings
from digest.domain import second_look
from digest.domain.items import PaperCard, RankedItem
from digest.domain.profiles import Profile
from digest.domain.schedules import window_start
from digest.ranking import Ranker, RankRequest
from digest.store import Session, Store, digests, embeddings, papers, second_looks, subscribers
from digest.store.subscribers import Subscriber

Picks = list[tuple[RankedItem, PaperCard]]


def first_window(settings: Settings) -> timedelta:
    return timedelta(hours=settings.ranking.first_window_hours)


def pool_start(settings: Settings, now: datetime, windows: Sequence[datetime] = ()) -> datetime:
    """Where the ranker's pool of papers starts (see the module's doc): on the hour, so
    that every path ranking within one hour prepares the same pool."""
    start = (now - first_window(settings)).replace(minute=0, second=0, microsecond=0)
    return min([start, *windows])


def ranker(
    settings: Settings,
    store: Store,
    since: datetime,
    now: datetime,
    *,
    embed_missing: bool,
) -> tuple[Ranker, dict[int, PaperCard]]:
    """A ranker prepared over the papers first seen since ``since``, and those papers."""
    with store.transaction() as session:
        cards = papers.cards_since(session, since)
    semantic = meaning.semantic_for(settings, store, cards, embed_missing=embed_missing)
    return Ranker(cards, settings.ranking, now, semantic=semantic), {c.paper_id: c for c in cards}


def request(profile: Profile, limit: int, since: datetime | None, known: set[int]) -> RankRequest:
    return RankRequest(profile, limit, since, frozenset(known))


def second_look_candidates(
    session: Session, settings: Settings, readers: Mapping[int, Profile], now: datetime
) -> dict[int, list[second_look.Candidate]]:
    """Per reader who has the section on, the papers that might come back."""
    wanted = [reader for reader, profile in readers.items() if profile.second_look]
    if not wanted:
        return {}
    since = now - timedelta(days=second_look.WINDOW_DAYS)
    floor = settings.ranking.second_look_min_upvotes
    return second_looks.candidates(session, wanted, since, floor)


def with_second_looks(
    settings: Settings,
    items: list[RankedItem],
    found: Sequence[second_look.Candidate],
    goes_out: bool,
) -> list[RankedItem]:
    """``items`` with the reader's "worth another look" papers after the picks, before "also
    trending". They join a digest that goes out anyway (``goes_out``: it has papers, or the
    reader wants empty ones too); they never make one go out alone."""
    if not found or not goes_out:
        return items
    chosen = second_look.choose(
        found, settings.ranking.second_look_min_upvotes, frozenset(i.paper_id for i in items)
    )
    extra = [RankedItem(paper_id, 0.0, 0.0, why, second_look.SECTION) for paper_id, why in chosen]
    picks = [i for i in items if i.section == "picks"]
    return [*picks, *extra, *items[len(picks) :]]


@dataclass(frozen=True, slots=True)
class ReaderWindow:
    """A reader's next digest, as the batch would rank it now."""

    since: datetime
    request: RankRequest
    seen: int  # papers in the window they already got or judged
    returning: bool  # the window starts at their last digest (not a first one)


def reader_window(
    session: Session, settings: Settings, person: Subscriber, now: datetime
) -> ReaderWindow:
    last = digests.last_planned(session, person.id)
    since = window_start(last, now, first_window(settings))
    known = digests.known_papers(session, [person.id], since).get(person.id, set())
    profile = subscribers.profile_of(person)
    asked = request(profile, person.max_papers, since, known)
    return ReaderWindow(since, asked, len(known), last is not None)


@dataclass(frozen=True, slots=True)
class ReaderPreview:
    email: str
    since: datetime
    items: Picks
    candidates: int  # papers first seen in the window
    seen: int  # of those, already sent to them or judged by them
    returning: bool  # the window starts at their last digest


def for_reader(settings: Settings, store: Store, email: str, now: datetime) -> ReaderPreview:
    """What ``email`` would get if their digest were planned now (writes nothing)."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        window = reader_window(session, settings, person, now)
        address, goes_out = person.email, person.send_when_empty
        back = second_look_candidates(session, settings, {person.id: window.request.profile}, now)
    ranked, cards = ranker(
        settings, store, pool_start(settings, now, [window.since]), now, embed_missing=False
    )
    [items] = ranked.rank([window.request])
    items = with_second_looks(settings, items, back.get(person.id, ()), bool(items) or goes_out)
    shown = cards
    if any(i.paper_id not in cards for i in items):
        with store.transaction() as session:  # a paper sent before: outside today's pool
            shown = {**cards, **papers.cards_by_ids(session, [i.paper_id for i in items])}
    picks = [(i, shown[i.paper_id]) for i in items]
    return ReaderPreview(
        address,
        window.since,
        picks,
        _in_window(cards, window.since),
        window.seen,
        window.returning,
    )


@dataclass(frozen=True, slots=True)
class ProfilePreview:
    items: Picks
    since: datetime
    candidates: int  # papers first seen from ``since`` on


def for_profile(
    settings: Settings,
    store: Store,
    profile: Profile,
    *,
    limit: int,
    now: datetime,
    since: datetime | None,
) -> ProfilePreview:
    """What ``profile`` would get from the papers first seen since ``since`` (the first
    digest's window for None), as a new reader with no history (`digest rank`; writes
    nothing)."""
    start = since if since is not None else pool_start(settings, now)
    pool = min(start, pool_start(settings, now))
    ranked, cards = ranker(settings, store, pool, now, embed_missing=False)
    [items] = ranked.rank([request(profile, limit, start, set())])
    return ProfilePreview([(i, cards[i.paper_id]) for i in items], start, _in_window(cards, start))


def why_empty(candidates: int, seen: int, since: datetime, returning: bool) -> str:
    """Why a preview or ranking found nothing, and what to do: one line."""
    when = since.strftime("%Y-%m-%d %H:%M UTC")
    if candidates == 0:
        start = "their last digest" if returning else when
        return (
            f"no paper was first seen since {start}: the next fetch brings new ones "
            "(`digest fetch`); to rank papers stored earlier, use `digest rank` with "
            "--since YYYY-MM-DD"
        )
    if seen >= candidates:
        return (
            f"all {candidates} papers first seen since {when} were already sent to them or "
            "judged by them; `digest rank` with their terms and --since shows them anyway"
        )
    return (
        f"none of the {candidates - seen} papers first seen since {when} came close enough "
        "to the interests (each must reach ranking.relative_cut of the best match); broader "
        "terms, or a description in a sentence, find more"
    )


class LivePreviews:
    """The web's live preview: the same selection, with the pool prepared once and kept
    until the papers change (a fetch), vectors are added, or the hour moves on; ranking one
    profile against it takes milliseconds, which lets the page update as a person types."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._prepared: tuple[tuple[object, ...], Ranker, dict[int, PaperCard]] | None = None

    def _pool(
        self, now: datetime, window: datetime | None = None
    ) -> tuple[Ranker, dict[int, PaperCard]]:
        since = pool_start(self.settings, now)
        if window is not None and window < since:  # a reader back after a long absence
            return ranker(self.settings, self.store, window, now, embed_missing=False)
        with self.store.transaction() as session:
            key = (since, *papers.stamp(session, since), embeddings.count(session))
        with self._lock:
            if self._prepared is not None and self._prepared[0] == key:
                return self._prepared[1], self._prepared[2]
        ranked, cards = ranker(self.settings, self.store, since, now, embed_missing=False)
        with self._lock:
            self._prepared = (key, ranked, cards)
        return ranked, cards

    def new_reader(self, profile: Profile, limit: int, now: datetime) -> tuple[Picks, int]:
        """A first digest for ``profile`` (the sign-up page): the picks, and how many papers
        were looked at."""
        ranked, cards = self._pool(now)
        since = now - first_window(self.settings)
        [items] = ranked.rank([request(profile, limit, since, set())])
        return [(i, cards[i.paper_id]) for i in items], _in_window(cards, since)

    def subscriber(
        self, email: str, profile: Profile, limit: int, now: datetime
    ) -> tuple[Picks, int, bool]:
        """``email``'s next digest if their profile were ``profile`` (as being edited on
        their preferences page): their window, without what they already got; and whether
        that window starts at their last digest."""
        with self.store.transaction() as session:
            window = reader_window(session, self.settings, subscribers.get(session, email), now)
        return (*self.reader(window, profile, limit, now), window.returning)

    def reader(
        self, window: ReaderWindow, profile: Profile, limit: int, now: datetime
    ) -> tuple[Picks, int]:
        """A reader's next digest with ``profile`` instead of their own."""
        ranked, cards = self._pool(now, window.since)
        base = window.request
        [items] = ranked.rank([RankRequest(profile, limit, base.since, base.exclude_ids)])
        return [(i, cards[i.paper_id]) for i in items], _in_window(cards, window.since)


def _in_window(cards: dict[int, PaperCard], since: datetime) -> int:
    return sum(1 for c in cards.values() if c.first_seen_at and c.first_seen_at >= since)
