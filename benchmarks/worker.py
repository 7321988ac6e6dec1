"""One benchmark worker: exactly what each process of `digest worker --once --name NAME`
runs (``digest.scheduler.run_worker``, on a store opened as ``digest.processes`` opens it in
a worker process: the schema was checked before, by the benchmark as by `digest worker`'s
parent), with settings from the DIGEST_* environment, plus a JSON line on stdout with what it
did, how long each stage took and its peak memory.

    python -m benchmarks.worker NAME
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import sys
import threading
import time

from digest.collector import freeze_at_exit
from digest.config import load_settings
from digest.processes import open_store_patiently
from digest.scheduler import run_worker


class _Stages(logging.Handler):
    """Collects the stage timings the pipeline logs (``extra={"stage": ...}``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.totals: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", None)
        if not stage:
            return
        for key, value in getattr(record, "stage_numbers", {}).items():
            name = f"{stage}_{key}"
            self.totals[name] = self.totals.get(name, 0) + value


class _Collections:
    """Time the cyclic garbage collector spends, per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.seconds[generation] += time.perf_counter() - self._started
        self.counts[generation] += 1


def main() -> None:
    name = sys.argv[1]
    freeze_at_exit()  # as a child of `digest worker --processes N` does
    collections = _Collections()
    started = time.monotonic()
    stages = _Stages()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for logger in ("digest.app.digests", "digest.delivery.sender"):
        logging.getLogger(logger).setLevel(logging.INFO)
        logging.getLogger(logger).addHandler(stages)
    settings = load_settings()
    store = open_store_patiently(settings, threading.Event(), schema_checked=True)
    try:
        total = run_worker(settings, store, once=True, owner=name)
    finally:
        store.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "name": name,
                "sent": total.sent,
                "deferred": total.deferred,
                "failed": total.failed,
                "unknown": total.unknown,
                "errors": total.errors,
                "render_seconds": total.render_seconds,
                "send_seconds": total.send_seconds,
                "seconds": time.monotonic() - started,
                "cpu_seconds": own.ru_utime + own.ru_stime,
                "user_seconds": own.ru_utime,
                "system_seconds": own.ru_stime,
                "children_cpu_seconds": children.ru_utime + children.ru_stime,
                # Up to here: the collection Python makes at exit is not in it.
                "gc_seconds": [round(x, 3) for x in collections.seconds],
                "gc_collections": collections.counts,
                "max_rss_kb": own.ru_maxrss,
                "children_max_rss_kb": children.ru_maxrss,
                **stages.totals,
            }
        )
    )


if __name__ == "__main__":
    main()
