"""A real DNS server on 127.0.0.1 for tests (dnslib, UDP), answering from a zone dict the
test may change between questions; and a UDP port that never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# name (no final dot, lower case) -> [(type, value)]: "TXT" text, "A"/"AAAA" an address,
# "MX" (preference, host), host "." for a null MX.
Records = dict[str, list[tuple[str, Any]]]


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: Records = {}
        self.servfail: set[str] = set()  # names answered with SERVFAIL
        self.asked: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def set(self, name: str, rtype: str, *values: Any) -> None:
        """Replace ``name``'s records of ``rtype`` with ``values`` (none: remove them)."""
        with self._lock:
            kept = [(t, v) for t, v in self.records.get(name, []) if t != rtype]
            self.records[name] = kept + [(rtype, value) for value in values]
            if not self.records[name]:
                del self.records[name]

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        rtype = QTYPE[request.q.qtype]
        with self._lock:
            self.asked.append((name, rtype))
            records = list(self.records.get(name, []))
            servfail = name in self.servfail
        if servfail:
            reply.header.rcode = RCODE.SERVFAIL
        elif not records:
            reply.header.rcode = RCODE.NXDOMAIN
        for kind, value in records:
            if kind == rtype:
                reply.add_answer(RR(name + ".", getattr(QTYPE, kind), rdata=_rdata(kind, value)))
        return reply


def _rdata(kind: str, value: Any) -> Any:
    if kind == "TXT":
        # One TXT record may hold several strings of up to 255 bytes (a DKIM key needs two).
        text = value.encode()
        return TXT([text[i : i + 255] for i in range(0, len(text), 255)] or [b""])
    if kind == "A":
        return A(value)
    if kind == "AAAA":
        return AAAA(value)
    if kind == "MX":
        preference, host = value
        return MX(host if host != "." else ".", preference)
    raise ValueError(f"no such record type in the test zone: {kind}")


@contextmanager
def dns_server(zone: Zone) -> Iterator[str]:
    """Serves ``zone``; yields its address as doctor.nameservers takes it ("127.0.0.1:port")."""
    server = DNSServer(zone, port=0, address="127.0.0.1", logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    try:
        yield f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()
        server.server.server_close()


@contextmanager
def silent_dns() -> Iterator[str]:
    """A UDP port that takes questions and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
