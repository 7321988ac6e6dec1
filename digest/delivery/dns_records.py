"""DNS lookups for `digest doctor`, and reading the mail records it finds.

:class:`Dns` is the one way the doctor asks DNS: dnspython's stub resolver, configured from
``doctor.nameservers`` ("host" or "host:port", "[::1]:5353" for IPv6 with a port; empty: the
system's resolver) and ``doctor.timeout``. A name that does not exist (NXDOMAIN) and a name
without records of the asked type (no answer) both give an empty list: "no record". Anything
else raises :class:`DnsError`, whose message names the server and what went wrong ("the DNS
server 127.0.0.1:5353 did not answer within 5 s"). After a timeout the later lookups fail at
once with the same error, since each would wait as long again.

Also here: tag lists (``k=v; k=v``, DKIM and DMARC), a DKIM key record made from a private
key and the key read back from a record, and the organisational domain (a heuristic).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Literal

import dkim.crypto
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from digest.errors import ConfigError

Problem = Literal["timeout", "servfail", "error"]


class DnsError(Exception):
    """A lookup that got no usable answer. ``problem``: timeout (nobody answered in time),
    servfail (the server could not answer: broken delegation, DNSSEC), error (the rest)."""

    def __init__(self, message: str, problem: Problem) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Server:
    host: str
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 53 else f"{host}:{self.port}"


def parse_nameserver(text: str) -> Server:
    """ "192.0.2.1", "192.0.2.1:5353", "::1", "[::1]:5353" or a host name (with a port);
    raises ConfigError naming the entry."""
    entry = text.strip()
    host, port = entry, "53"
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"doctor.nameservers: {text!r} is not [IPv6]:port")
        port = rest[1:] or "53"
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(
            f"doctor.nameservers: {text!r} is not host or host:port (a port from 1 to 65535)"
        )
    return Server(host, int(port))


class Dns:
    """Lookups of TXT, A/AAAA and MX records through the configured servers."""

    def __init__(self, nameservers: list[str], timeout: float) -> None:
        self.servers = [parse_nameserver(entry) for entry in nameservers]
        self.timeout = timeout
        self._resolver: dns.resolver.Resolver | None = None
        self._gave_up: DnsError | None = None

    def describe(self) -> str:
        """Who is asked: "the DNS server 127.0.0.1:5353", "the system's DNS resolver"."""
        if not self.servers:
            used = [str(ns) for ns in self._resolver.nameservers] if self._resolver else []
            return "the system's DNS resolver" + (f" ({', '.join(used)})" if used else "")
        names = ", ".join(str(server) for server in self.servers)
        return f"the DNS server{'s' if len(self.servers) > 1 else ''} {names}"

    # -- lookups ------------------------------------------------------------------------

    def txt(self, name: str) -> list[str]:
        """Each TXT record's text, its strings joined as RFC 7208 §3.3 says (no separator)."""
        return [
            b"".join(rdata.strings).decode("utf-8", "replace") for rdata in self._ask(name, "TXT")
        ]

    def addresses(self, name: str) -> list[str]:
        """The name's IPv4 then IPv6 addresses."""
        return self.ipv4(name) + self.ipv6(name)

    def ipv4(self, name: str) -> list[str]:
        return [rdata.address for rdata in self._ask(name, "A")]

    def ipv6(self, name: str) -> list[str]:
        return [rdata.address for rdata in self._ask(name, "AAAA")]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, host) lowest first; a null MX (RFC 7505) is (0, "")."""
        found = []
        for rdata in self._ask(name, "MX"):
            host = "" if rdata.exchange == dns.name.root else rdata.exchange.to_text(True)
            found.append((int(rdata.preference), host))
        return sorted(found)

    # -- the resolver -------------------------------------------------------------------

    def _ask(self, name: str, rdtype: str) -> list[Any]:
        if self._gave_up is not None:
            raise self._gave_up
        resolver = self._make_resolver()
        qname = name.rstrip(".") + "."
        try:
            answer = resolver.resolve(qname, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            self._gave_up = DnsError(
                f"{self.describe()} did not answer within {self.timeout:g} s", "timeout"
            )
            raise self._gave_up from None
        except dns.resolver.NoNameservers as exc:
            raise self._failed(name, rdtype, exc) from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"{self.describe()}: {name} {rdtype}: {exc}", "error") from None
        return list(answer)

    def _failed(self, name: str, rdtype: str, exc: dns.resolver.NoNameservers) -> DnsError:
        # Each error is (server, tcp, port, an exception or an rcode's name, response).
        errors = exc.kwargs.get("errors") or []
        what = errors[-1][3] if errors else "no answer"
        if isinstance(what, ConnectionRefusedError):
            return DnsError(f"{self.describe()} refused the query (no DNS server there?)", "error")
        if isinstance(what, str):
            problem: Problem = "servfail" if what == "SERVFAIL" else "error"
            return DnsError(f"{self.describe()} answered {what} for {name} {rdtype}", problem)
        return DnsError(f"{self.describe()} failed for {name} {rdtype}: {what}", "error")

    def _make_resolver(self) -> dns.resolver.Resolver:
        if self._resolver is not None:
            return self._resolver
        try:
            if self.servers:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(address, server.port)
                    for server in self.servers
                    for address in _addresses_of(server.host)
                ]
            else:
                resolver = dns.resolver.Resolver()
        except (DnsError, dns.resolver.NoResolverConfiguration, OSError) as exc:
            reason = str(exc) if isinstance(exc, DnsError) else "no nameserver is configured"
            self._gave_up = DnsError(
                f"cannot use {self.describe()}: {reason}; set doctor.nameservers", "error"
            )
            raise self._gave_up from None
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout
        resolver.retry_servfail = False
        resolver.use_edns(0, 0, 1232)  # a DKIM key fits in one UDP answer
        resolver.cache = dns.resolver.Cache()  # the checks ask some names more than once
        self._resolver = resolver
        return resolver


def _addresses_of(host: str) -> list[str]:
    """A nameserver given by name is looked up once, by the system's resolver."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, 53, proto=socket.IPPROTO_UDP)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise DnsError(f"its name does not resolve ({reason})", "error") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


# -- what the records say ---------------------------------------------------------------


def tags(record: str) -> dict[str, str]:
    """A ``k=v; k=v`` tag list (DKIM, DMARC) as a dict: names lower-cased, values stripped;
    a name given twice keeps its first value."""
    found: dict[str, str] = {}
    for part in record.split(";"):
        name, equals, value = part.partition("=")
        if equals and name.strip():
            found.setdefault(name.strip().lower(), value.strip())
    return found


def organisational_domain(domain: str) -> str:
    """The last two labels: ``mail.example.org`` -> ``example.org``.

    A heuristic: DMARC's organisational domain comes from the public suffix list, which
    would give ``example.co.uk`` where this gives ``co.uk``. Good enough for a preflight."""
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


@dataclass(frozen=True, slots=True)
class RsaKey:
    modulus: int
    exponent: int

    @property
    def bits(self) -> int:
        return self.modulus.bit_length()


def private_key_of(pem: bytes) -> RsaKey:
    """The public half of a PEM RSA private key (PKCS#1 or PKCS#8); ValueError if it is none."""
    try:
        key = dkim.crypto.parse_pem_private_key(pem.replace(b"\r\n", b"\n"))
    except (dkim.crypto.UnparsableKeyError, binascii.Error, IndexError, TypeError) as exc:
        raise ValueError(f"not an RSA private key in PEM form ({_first_line(exc)})") from None
    return RsaKey(int(key["modulus"]), int(key["publicExponent"]))


def public_key_of(p: str) -> RsaKey:
    """The key in a DKIM record's ``p=`` (base64 of a SubjectPublicKeyInfo, or of a bare
    RSAPublicKey, which verifiers accept too); ValueError if it is not an RSA key."""
    try:
        der = base64.b64decode("".join(p.split()), validate=True)
        key = dkim.crypto.parse_public_key(der)
    except (dkim.crypto.UnparsableKeyError, binascii.Error, IndexError, TypeError) as exc:
        raise ValueError(f"p= is not an RSA public key ({_first_line(exc)})") from None
    return RsaKey(int(key["modulus"]), int(key["publicExponent"]))


def dkim_p(key: RsaKey) -> str:
    """The ``p=`` value for a key: base64 of its DER SubjectPublicKeyInfo, which is what
    ``openssl rsa -pubout -outform DER | base64`` prints."""
    rsa_public_key = _der(0x30, _der_int(key.modulus) + _der_int(key.exponent))
    algorithm = _der(0x30, _RSA_ENCRYPTION + b"\x05\x00")  # the OID, then NULL parameters
    spki = _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public_key))  # 0 unused bits
    return base64.b64encode(spki).decode("ascii")


_RSA_ENCRYPTION = bytes.fromhex("06092a864886f70d010101")  # OID 1.2.840.113549.1.1.1


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def _der_int(value: int) -> bytes:
    # Big-endian, with a leading zero byte when the top bit is set (DER integers are signed).
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
