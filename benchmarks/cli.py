"""How long `digest --help` and an argument error take to answer, as a user starts them
(a new process each time): the median of 7 runs after one warm-up.

    python -m benchmarks.cli
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "digest --help": ["--help"],
    "digest subscribe not-an-address": ["subscribe", "not-an-address"],
    "digest rank --include <400 characters>": ["rank", "--include", "x" * 400],
}
RUNS = 7


def timed(args: list[str], folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=folder,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)},
        capture_output=True,
        check=False,
    )
    return time.perf_counter() - started


def main() -> int:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, args in COMMANDS.items():
            timed(args, folder)  # warm the file cache
            runs = [timed(args, folder) for _ in range(RUNS)]
            results[name] = {
                "median_seconds": round(statistics.median(runs), 3),
                "max_seconds": round(max(runs), 3),
            }
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
