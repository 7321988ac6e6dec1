"""The chosen papers of the digests a worker ranked, kept in memory until it sends them.

A worker ranks a batch and saves what it chose; moments later its sender claims those digests
and would read the same papers back from the database (a query and a JSON decoding per
batch: a third of claiming and loading one, docs/benchmarks.md). What is kept here is what
was saved, the ranker's own items, held only once their transaction has committed; they
equal what the loader reads back (tests compare the two and the messages made from each), so
a message is the same whichever way its papers came. A worker's claims ask first for the
digests it holds (``OutboxQueue.claim``): two workers each send what they ranked, and what
one holds but the other sent is forgotten at its next claim.

Bounded (``limit`` digests, the first ranked kept): a digest not held (ranked by another
process, before a restart, past the bound) is loaded from the database as before. One per
worker round (``Service.tick``), dropped with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from itertools import islice

from digest.domain.items import RankedItem

# About 2-3 KB a digest of ten papers (the items are the ranker's own, kept alive): 10,000
# is some 25 MB a worker, under the 100,000-digest run's memory bound with room to spare.
KEEP_LIMIT = 10_000


class RankedItems:
    """Chosen items by delivery id; shared by a worker's ranking and its sending threads.

    A sending thread reserves some to claim, so that another thread does not claim the same
    ones at the same time and, finding them gone, let go of what the first is about to use."""

    def __init__(self, limit: int = KEEP_LIMIT) -> None:
        self.limit = limit
        self._items: dict[int, Sequence[RankedItem]] = {}
        self._reserved: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def held(self) -> list[int]:
        """The ids held, in the order they were kept."""
        with self._lock:
            return list(self._items)

    def keep(self, delivery_id: int, items: Sequence[RankedItem]) -> bool:
        """Hold a saved digest's items; False when the bound is reached."""
        with self._lock:
            if len(self._items) >= self.limit and delivery_id not in self._items:
                return False
            self._items[delivery_id] = items
            return True

    def reserve(self, count: int) -> list[int]:
        """Up to ``count`` ids held and not reserved yet, the earliest kept first (ranked in
        id order), reserved until taken or let go of."""
        with self._lock:
            free = (one for one in self._items if one not in self._reserved)
            chosen = list(islice(free, count))
            self._reserved.update(chosen)
            return chosen

    def take(self, delivery_ids: Iterable[int]) -> dict[int, Sequence[RankedItem]]:
        """The items of those held among ``delivery_ids``, no longer held."""
        found: dict[int, Sequence[RankedItem]] = {}
        with self._lock:
            for delivery_id in delivery_ids:
                items = self._items.pop(delivery_id, None)
                self._reserved.discard(delivery_id)
                if items is not None:
                    found[delivery_id] = items
        return found

    def forget(self, delivery_ids: Iterable[int]) -> None:
        with self._lock:
            for delivery_id in delivery_ids:
                self._items.pop(delivery_id, None)
                self._reserved.discard(delivery_id)
