"""The worker's collector setting (digest/collector.py): raised inside, put back after, shared
by overlapping blocks in threads, and cycles still collected without being asked."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

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
