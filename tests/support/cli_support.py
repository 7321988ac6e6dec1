"""Running the `digest` command in tests: in this process (fast; what most tests want), or
as a real process (for what only a process shows: exit by signal, start-up time, stdin)."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from digest.cli import main

NO_MODEL = {"DIGEST_RANKING__SEMANTIC": "false"}  # see tests/conftest.py


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def environment(cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """What a command under test sees: nothing of the developer's DIGEST_* settings."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200", **NO_MODEL, **env}


def run_cli(cwd: Path, *args: str, stdin: str | None = None, **env: str) -> Ran:
    """`digest ARGS` in this process, as if started in ``cwd`` with only ``env`` set: the
    same main() (one-line errors, exit codes), its output captured. The environment, the
    working folder and the logging setup are put back afterwards."""
    saved_env, saved_cwd, saved_argv, saved_stdin = (
        dict(os.environ),
        os.getcwd(),
        sys.argv,
        sys.stdin,
    )
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.clear()
        os.environ.update(environment(cwd, env))
        os.chdir(cwd)
        sys.argv = ["digest", *args]
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv, sys.stdin = saved_argv, saved_stdin
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
    return Ran(code, out.getvalue(), err.getvalue())


def run_process(
    cwd: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`digest ARGS` as a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=environment(cwd, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
