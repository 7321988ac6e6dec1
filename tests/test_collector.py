"""The worker's collector setting (digest/collector.py): raised inside, put back after, shared
by overlapping blocks in threads, and cycles still collected without being asked; the heap
frozen at exit."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.collector import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture
def odd_threshold() -> Iterator[tuple[int, int, int]]:
    # Not the default, so that "put back" cannot pass by accident.
    before = gc.get_threshold()
    odd = (701, 11, 9)
    gc.set_threshold(*odd)
    yield odd
    gc.set_threshold(*before)


def test_raised_inside_and_put_back_after(odd_threshold: tuple[int, int, int]) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 11, 9)
    assert gc.get_threshold() == odd_threshold
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a worker that fails still puts it back")
    assert gc.get_threshold() == odd_threshold


def test_overlapping_blocks_in_threads_restore_once_the_last_leaves(
    odd_threshold: tuple[int, int, int],
) -> None:
    first_in, second_in, first_out, second_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, tuple[int, int, int]] = {}

    def first() -> None:
        with fewer_collections():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with fewer_collections():
            second_in.set()
            first_out.wait(5)
            seen["after the first left"] = gc.get_threshold()
            second_may_leave.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_out.wait(5)
    second_may_leave.set()
    for thread in threads:
        thread.join(5)
    assert seen["after the first left"][0] == YOUNG_THRESHOLD
    assert gc.get_threshold() == odd_threshold


def test_cycles_are_still_collected_without_asking() -> None:
    class Node:
        other: object = None

    with fewer_collections():
        gc.collect()  # start from empty generations
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # a cycle: reference counting alone cannot free it
        kept = [[] for _ in range(3 * YOUNG_THRESHOLD)]  # allocations past the threshold
        assert gone() is None
        del kept


def test_the_heap_is_frozen_at_exit_once_and_after_later_handlers(tmp_path: Path) -> None:
    # In a process of its own: freezing is for good, and only exit shows it.
    left_open = tmp_path / "left-open.txt"
    code = f"""
import atexit, gc
atexit.register(lambda: print("registered before, runs after:", gc.get_freeze_count()))
from digest.collector import freeze_at_exit
handlers = atexit._ncallbacks()
freeze_at_exit()
freeze_at_exit()
print("handlers added:", atexit._ncallbacks() - handlers)
atexit.register(lambda: print("registered after, runs before:", gc.get_freeze_count()))
heap = [[n] for n in range(100_000)]  # lists: always tracked by the collector
unclosed = open({str(left_open)!r}, "w")
unclosed.write("still written")
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = dict(line.split(": ") for line in ran.stdout.splitlines())
    assert lines["handlers added"] == "1"
    assert lines["registered after, runs before"] == "0"
    assert int(lines["registered before, runs after"]) > 100_000  # the whole heap
    assert left_open.read_text() == "still written"  # objects are still freed: files flushed
