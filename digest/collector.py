"""CPython's cyclic garbage collector in a worker process.

A sending worker's heap holds what lives for the whole day: the papers, the ranker, the
caches of words, highlights and rendered fragments. CPython collects its young objects every
700 allocations, and every hundredth of those collections is a full one, which re-scans all
of that heap: in `make bench-quick` the collector took 2.1-2.8 s of a worker's 19-20 s of CPU
(about 200 ms per full collection). A worker collects its young objects every 5,000
allocations instead: 0.6-0.7 s a worker. Garbage with cycles is still collected, a little
later; garbage without (nearly all) is freed at once by reference counting, as before.
20,000 saved little more (0.5-0.7 s) and held more garbage at once (the 100,000-digest run's
peak +13 MB, over the 600 MB asked on that machine); freezing the heap as sending starts
(``gc.freeze``) saved less than either and was left out.

At exit the heap is frozen (``freeze_at_exit``): CPython's finalization collects before it
tears the modules down, re-scanning every object the process still holds, which after a
`make bench-quick` worker's 5,000 digests took 0.8-1.1 s of the run's 14 s (a child of
`digest worker --processes N` is waited for until it has exited). Frozen, the heap is not
scanned; its objects are still freed, files flushed and atexit handlers run. What is lost:
garbage in reference cycles left at exit is not collected (the operating system takes the
memory back; nothing of ours relies on a finalizer in a cycle).
"""

from __future__ import annotations

import atexit
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 5_000  # allocations between two collections of the young generation

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None
_freezing_at_exit = False


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The young generation collected every ``YOUNG_THRESHOLD`` allocations (or as it was,
    if that is rarer) until the block ends. The setting is the process's: blocks that overlap
    (two workers in one process, as in tests) share it, the first in sets it and the last
    out puts back what was there before."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None


def freeze_at_exit() -> None:
    """Freeze the heap when the process exits, so that finalization does not collect it
    (see the module's note). Registered once; the latest registered atexit handlers run
    first, so handlers registered after this one still run before it."""
    global _freezing_at_exit
    with _lock:
        if _freezing_at_exit:
            return
        _freezing_at_exit = True
    atexit.register(gc.freeze)
