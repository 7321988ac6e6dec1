"""The SMTP sink: Postfix's ``smtp-sink``, and ``smtp-source`` for the same run's ceiling.

``smtp-sink`` runs with ``-d`` so every message it accepts is written to its own file
(``<dir>/<HHMM>/<SS>.<random>``, with the sink's envelope lines first), which is what the
benchmark reads afterwards to check that every digest arrived exactly once. The files go to
a memory file system (``/dev/shm``) when it has room: on a disk each file costs the sink
about a millisecond, which over two sessions caps it near 1,000 messages a second, while in
memory the sink keeps ~90 % of its bare speed. The ceiling is measured into the same kind
of sink with the same flags, so the ratio compares like with like (``ceiling(dump=False)``
gives the bare number for reference).
"""

from __future__ import annotations

import binascii
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("smtp-sink", "smtp-source")
SEARCH = ("/usr/sbin", "/usr/bin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")


def find_tools() -> dict[str, str] | None:
    found = {}
    for name in TOOLS:
        path = shutil.which(name) or next(
            (f"{d}/{name}" for d in SEARCH if os.access(f"{d}/{name}", os.X_OK)), None
        )
        if path is None:
            return None
        found[name] = path
    return found


def ensure_tools(install: bool = True) -> tuple[dict[str, str], str]:
    """The tools' paths and how they were had: "found" or "installed with apt-get"."""
    found = find_tools()
    if found:
        return found, f"found ({found['smtp-sink']})"
    if not install:
        raise RuntimeError("smtp-sink not found (Debian package postfix); install it or allow it")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            "smtp-sink not found and cannot install it here: run "
            "`sudo apt-get install postfix` (choose 'No configuration')"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n",
        check=True,
        env=env,
    )
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"],
        check=True,
        env=env,
        capture_output=True,
    )
    found = find_tools()
    if not found:
        raise RuntimeError("installed postfix but smtp-sink is still missing")
    return found, "installed with apt-get (package postfix)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sink:
    """One running smtp-sink; ``folder`` receives one file per accepted message."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sink(tools: dict[str, str], folder: Path | None, port: int | None = None) -> Sink:
    """Start smtp-sink on 127.0.0.1 (``folder`` None: no dump, the bare sink)."""
    port = port or free_port()
    command = [tools["smtp-sink"]]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # required when started as root
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)
        command += ["-d", f"{folder}/%H%M/%S."]
    command += ["-m", "512", "-t", "300", f"127.0.0.1:{port}", "1024"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"smtp-sink exited: {process.stderr.read().decode()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.recv(100)  # the greeting
            return Sink(process, port, folder)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("smtp-sink did not start listening")


def dumped_files(folder: Path) -> Iterator[Path]:
    for sub in sorted(folder.iterdir()):
        if sub.is_dir():
            yield from sorted(sub.iterdir())


_RCPT = re.compile(rb"^X-Rcpt-Args: <([^>]*)>", re.M)
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]*>)", re.M | re.I)


@dataclass(frozen=True)
class Dumped:
    path: Path
    recipients: tuple[str, ...]
    message_id: str | None
    size: int  # the message as the client sent it (without the sink's own lines)
    offset: int  # where the message starts in the file


def read_dump(path: Path) -> Dumped:
    """The envelope recipients, Message-ID and size of one dumped message (reads only the
    head of the file)."""
    total = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(16384)
    # The sink's lines end with its three-line Received header.
    marker = head.find(b"by smtp-sink")
    start = head.find(b"\n", head.find(b"\n", marker) + 1) + 1 if marker >= 0 else 0
    ids = _MESSAGE_ID.findall(head, start)
    # The file ends with the empty line the sink adds after the message.
    return Dumped(
        path=path,
        recipients=tuple(r.decode() for r in _RCPT.findall(head, 0, start)),
        message_id=ids[0].decode() if ids else None,
        size=total - start - 1,
        offset=start,
    )


def message_bytes(dumped: Dumped) -> bytes:
    """The message as received, CRLF line ends restored (the sink writes LF)."""
    data = dumped.path.read_bytes()[dumped.offset :]
    if data.endswith(b"\n\n"):
        data = data[:-1]
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_HTML_HEAD = re.compile(rb"Content-Type: text/html[^\n]*\n(?:[^\n]+\n)*\n")
_BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def html_size(dumped: Dumped) -> int:
    """The decoded size of the message's HTML part (0 without one): what Gmail measures
    against its 102 KB clip. Found by its part header and the boundary after it, decoded
    from quoted-printable when it is so encoded (7bit goes as it is), without parsing the
    whole message (every message is checked)."""
    data = dumped.path.read_bytes()
    head = _HTML_HEAD.search(data, dumped.offset)
    boundary = _BOUNDARY.search(data, dumped.offset)
    if head is None or boundary is None:
        return 0
    # The part ends at the boundary's own line: a quoted-printable line may start with
    # "--" too (a wrapped "<!-- ... -->" comment).
    end = data.find(b"\n--" + boundary.group(1), head.end())
    body = data[head.end() : end if end >= 0 else len(data)]
    body = body.replace(b"\r\n", b"\n")
    if b"quoted-printable" in head.group().lower():
        body = binascii.a2b_qp(body)
    return len(body.replace(b"\n", b"\r\n"))


def dump_root(need_bytes: int) -> Path | None:
    """Where dumps should go: /dev/shm when it has room for ``need_bytes`` (with a margin),
    else None (the caller's own temporary folder)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        free = shutil.disk_usage(shm).free
        if free > need_bytes * 1.5 + 2**30:
            return shm
    return None


def ceiling(
    tools: dict[str, str],
    *,
    sessions: int,
    size: int,
    count: int,
    dump: bool = True,
) -> float:
    """Messages per second ``smtp-source`` gets into a fresh sink like the benchmark's
    (``dump``: writing each message to a file, as in the run) over ``sessions`` persistent
    sessions, each message ``size`` bytes of payload."""
    root = dump_root(size * count) if dump else None
    with tempfile.TemporaryDirectory(prefix="digest-ceiling-", dir=root) as tmp:
        Path(tmp).chmod(0o755)  # the sink writes below it as "nobody"
        sink = start_sink(tools, Path(tmp) / "dump" if dump else None)
        try:
            started = time.monotonic()
            subprocess.run(
                [
                    tools["smtp-source"],
                    "-s",
                    str(sessions),
                    "-d",
                    "-m",
                    str(count),
                    "-l",
                    str(size),
                    "-f",
                    "papers@digest.example.org",
                    "-t",
                    "reader@example.org",
                    f"127.0.0.1:{sink.port}",
                ],
                check=True,
                capture_output=True,
            )
            seconds = time.monotonic() - started
        finally:
            sink.stop()
    return count / seconds
