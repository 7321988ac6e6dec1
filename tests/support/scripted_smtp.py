"""A scripted SMTP server on 127.0.0.1 for fault tests: plain sockets, one thread per client.

Each reply can be changed while the server runs (``script``), so a test can break the server,
send, mend it, and send again. Special replies: ``HANG`` stops answering (until the client
gives up or the server stops), ``DROP`` closes the connection without a word.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HANG = "<hang>"
DROP = "<drop>"

Reply = str | Callable[[str, int], str]  # a reply, or one computed from (argument, count)


@dataclass
class Script:
    greeting: str = "220 scripted.test ESMTP"
    ehlo: list[str] = field(default_factory=lambda: ["250-scripted.test", "250 8BITMIME"])
    starttls: str = "454 4.7.0 TLS not available"
    mail: Reply = "250 2.1.0 Ok"
    rcpt: Reply = "250 2.1.5 Ok"
    data: str = "354 End data with <CR><LF>.<CR><LF>"
    final: Reply = "250 2.0.0 Ok: queued"
    drop_after: int = 0  # close the connection at the MAIL after this many messages (0: never)


@dataclass
class Received:
    sender: str
    recipient: str
    data: bytes


@dataclass
class Log:
    messages: list[Received] = field(default_factory=list)  # accepted with 250
    seen: list[Received] = field(default_factory=list)  # every message whose data arrived
    commands: list[str] = field(default_factory=list)
    connections: int = 0
    active: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        log, script, stopping = self.server.log, self.server.script, self.server.stopping
        with log.lock:
            log.connections += 1
            log.active += 1
            log.most_at_once = max(log.most_at_once, log.active)
        try:
            self._session(log, script, stopping)
        except (OSError, _Closed):
            pass
        finally:
            with log.lock:
                log.active -= 1

    def _say(self, reply: str, stopping: threading.Event) -> None:
        if reply == HANG:
            stopping.wait(30)
            raise _Closed
        if reply == DROP:
            raise _Closed
        self.wfile.write(reply.encode() + b"\r\n")
        self.wfile.flush()

    def _session(self, log: Log, script: Script, stopping: threading.Event) -> None:
        self._say(script.greeting, stopping)
        if not script.greeting.startswith("220"):
            return
        sender = recipient = ""
        in_mail = has_rcpt = False
        count = 0
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode("ascii", "replace").strip()
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            with log.lock:
                log.commands.append(verb)
            if verb in ("EHLO", "HELO"):
                self._say("\r\n".join(script.ehlo), stopping)
            elif verb == "STARTTLS":
                self._say(script.starttls, stopping)
            elif verb == "MAIL":
                if script.drop_after and count >= script.drop_after:
                    raise _Closed
                # "FROM:<a@b> BODY=8BITMIME": the address, without its parameters
                sender = argument.partition(":")[2].strip().split(" ")[0].strip("<>")
                reply = _reply(script.mail, sender, count)
                in_mail = reply.startswith("250")
                self._say(reply, stopping)
            elif verb == "RCPT":
                # As a real server answers commands that came pipelined after a refusal.
                if not in_mail:
                    self._say("503 5.5.1 Error: need MAIL command", stopping)
                    continue
                recipient = argument.partition(":")[2].strip("<> ")
                reply = _reply(script.rcpt, recipient, count)
                has_rcpt = reply.startswith("25")
                self._say(reply, stopping)
            elif verb == "DATA":
                if not has_rcpt:
                    self._say("554 5.5.1 Error: no valid recipients", stopping)
                    continue
                in_mail = has_rcpt = False
                self._say(script.data, stopping)
                lines = []
                while True:
                    chunk = self.rfile.readline()
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                received = Received(sender, recipient, b"".join(lines))
                with log.lock:
                    log.seen.append(received)
                reply = _reply(script.final, recipient, count)
                count += 1
                if reply.startswith("250"):
                    with log.lock:
                        log.messages.append(received)
                self._say(reply, stopping)
            elif verb == "RSET" or verb == "NOOP":
                if verb == "RSET":
                    in_mail = has_rcpt = False
                self._say("250 2.0.0 Ok", stopping)
            elif verb == "QUIT":
                self._say("221 2.0.0 Bye", stopping)
                return
            else:
                self._say("502 5.5.2 Command not recognised", stopping)


def _reply(reply: Reply, argument: str, count: int) -> str:
    return reply(argument, count) if callable(reply) else reply


class _Closed(Exception):
    pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.log = Log()
        self.stopping = threading.Event()


@dataclass
class Scripted:
    host: str
    port: int
    script: Script
    log: Log


@contextmanager
def scripted_smtp(script: Script | None = None) -> Iterator[Scripted]:
    server = _Server(script or Script())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield Scripted(str(host), int(port), server.script, server.log)
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def port_refusing_connections() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
