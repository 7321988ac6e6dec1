"""SPF (RFC 7208) evaluated for `digest doctor`: would a domain's record let the relay send?

:func:`check_host` follows RFC 7208 §4 over :class:`~digest.delivery.dns_records.Dns`:
the mechanisms ``all``, ``include`` (recursively), ``a``, ``mx``, ``ip4`` and ``ip6`` (with
CIDR lengths: ``a/24``, ``mx//64``), the ``redirect=`` modifier, the qualifiers ``+ - ~ ?``,
and the limits of 10 DNS-querying terms and of 10 MX names per ``mx`` (§4.6.4).

Not evaluated: ``exists``, ``ptr`` and macros (``%{i}``). Met before anything matched, they
make the result "unknown", and the doctor says so rather than guess. The limit of two void
lookups (§4.6.4) is not enforced.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from digest.delivery.dns_records import Dns, DnsError

Result = Literal["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror", "unknown"]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")

MAX_LOOKUPS = 10  # include, a, mx, ptr, exists and redirect count (RFC 7208 §4.6.4)
MAX_MX_NAMES = 10
_QUALIFIER: dict[str, Result] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.I)
_MECHANISM = re.compile(r"^([a-z0-9]+)(.*)$", re.I)
_DUAL_CIDR = re.compile(r"^(?:/(\d+))?(?://(\d+))?$")


@dataclass(frozen=True, slots=True)
class Verdict:
    result: Result
    why: str  # the term that decided ("ip4:192.0.2.0/24 in example.org"), or what went wrong
    plus_all: bool = False  # an evaluated record had "+all": anyone may send as the domain
    dns_error: DnsError | None = None  # what made it a temperror


def spf_records(dns: Dns, domain: str) -> list[str]:
    """The domain's TXT records that are SPF records (``v=spf1`` alone or with terms)."""
    return [text for text in dns.txt(domain) if _is_spf(text)]


def _is_spf(text: str) -> bool:
    lowered = text.strip().lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def has_plus_all(record: str) -> bool:
    """``+all`` (or a bare ``all``) anywhere in the record's own terms."""
    return any(term.lower() in ("all", "+all") for term in record.split()[1:])


def check_host(dns: Dns, ip: str, domain: str) -> Verdict:
    """What a receiver would conclude for mail from ``ip`` with an envelope sender at
    ``domain``."""
    evaluation = _Evaluation(dns, ipaddress.ip_address(ip))
    try:
        result, why = evaluation.check(domain)
    except _Stop as stop:
        result, why = stop.result, stop.why
    return Verdict(result, why, evaluation.plus_all, evaluation.dns_error)


class _Stop(Exception):
    """Ends the evaluation at once: a permerror, a temperror or an unevaluated term."""

    def __init__(self, result: Result, why: str) -> None:
        super().__init__(why)
        self.result = result
        self.why = why


class _Evaluation:
    def __init__(self, dns: Dns, ip: IpAddress) -> None:
        self.dns = dns
        self.ip = ip
        self.lookups = 0
        self.plus_all = False
        self.dns_error: DnsError | None = None

    def check(self, domain: str) -> tuple[Result, str]:
        records = self._lookup(lambda: spf_records(self.dns, domain))
        if not records:
            return "none", f"no SPF record at {domain}"
        if len(records) > 1:
            raise _Stop("permerror", f"{domain} has {len(records)} SPF records (one is allowed)")
        redirect = None
        for term in records[0].split()[1:]:
            modifier = _MODIFIER.match(term)
            if modifier:
                name, value = modifier.group(1).lower(), modifier.group(2)
                if name == "redirect":
                    if redirect is not None:
                        raise _Stop("permerror", f"{domain}: redirect= given twice")
                    redirect = value
                continue  # exp= only explains a failure; unknown modifiers are ignored
            qualifier = term[0] if term[0] in _QUALIFIER else "+"
            body = term[1:] if term[0] in _QUALIFIER else term
            inner = self._matches(domain, body)
            if inner is not None:
                if body.lower() == "all" and qualifier == "+":
                    self.plus_all = True
                why = f"{inner}, via {term}" if inner else f"{term} in {domain}"
                return _QUALIFIER[qualifier], why
        if redirect is not None:
            target = self._target(redirect, f"redirect={redirect}")
            self._count(f"redirect={target}")
            result, why = self.check(target)
            if result == "none":
                raise _Stop("permerror", f"{domain}: redirect={target} has no SPF record")
            return result, f"{why}, via redirect={target}"
        return "neutral", f"nothing in {domain}'s record matched (the default is neutral)"

    def _matches(self, domain: str, body: str) -> str | None:
        """None when the mechanism does not match; when it does, "" or (for an include)
        what matched inside."""
        found = _MECHANISM.match(body)
        if not found:
            raise _Stop("permerror", f"{domain}: cannot read the term {body!r}")
        name, rest = found.group(1).lower(), found.group(2)
        if name == "all":
            if rest:
                raise _Stop("permerror", f"{domain}: cannot read the term {body!r}")
            return ""
        if name in ("ip4", "ip6"):
            return "" if self._in_network(domain, name, rest) else None
        if name in ("exists", "ptr"):
            self._count(body)
            raise _Stop("unknown", f"{body} in {domain} (doctor does not evaluate {name})")
        if name == "include":
            if not rest.startswith(":"):
                raise _Stop("permerror", f"{domain}: include needs a domain ({body!r})")
            target = self._target(rest[1:], body)
            self._count(body)
            return self._include(domain, target)
        if name in ("a", "mx"):
            target, v4, v6 = self._domain_and_cidr(domain, name, rest)
            self._count(body)
            inside = self._in_hosts(name, target, v4 if self.ip.version == 4 else v6)
            return "" if inside else None
        raise _Stop("permerror", f"{domain}: unknown mechanism {body!r}")

    def _include(self, domain: str, target: str) -> str | None:
        result, why = self.check(target)
        if result == "pass":
            return why
        if result in ("fail", "softfail", "neutral"):
            return None
        if result == "none":
            raise _Stop("permerror", f"{domain}: include:{target} has no SPF record")
        raise _Stop(result, why)  # a permerror, temperror or unknown inside stops it all

    def _in_network(self, domain: str, name: str, rest: str) -> bool:
        if not rest.startswith(":"):
            raise _Stop("permerror", f"{domain}: {name} needs an address")
        try:
            network = ipaddress.ip_network(rest[1:], strict=False)
        except ValueError:
            raise _Stop("permerror", f"{domain}: {name}{rest} is not an address") from None
        if network.version != (4 if name == "ip4" else 6):
            raise _Stop("permerror", f"{domain}: {name}{rest} is of the other IP version")
        return network.version == self.ip.version and self.ip in network

    def _domain_and_cidr(self, domain: str, name: str, rest: str) -> tuple[str, int, int]:
        target = domain
        if rest.startswith(":"):
            spec, slash, cidr = rest[1:].partition("/")
            target = self._target(spec, f"{name}{rest}")
            rest = slash + cidr
        lengths = _DUAL_CIDR.match(rest)
        v4 = int(lengths.group(1) or 32) if lengths else -1
        v6 = int(lengths.group(2) or 128) if lengths else -1
        if not (0 <= v4 <= 32 and 0 <= v6 <= 128):
            raise _Stop("permerror", f"{domain}: bad CIDR length in {name}{rest}")
        return target, v4, v6

    def _in_hosts(self, name: str, target: str, prefix: int) -> bool:
        hosts = [target]
        if name == "mx":
            hosts = [host for _, host in self._lookup(lambda: self.dns.mx(target)) if host]
            if len(hosts) > MAX_MX_NAMES:
                raise _Stop("permerror", f"mx:{target} has more than {MAX_MX_NAMES} MX names")
        for host in hosts:
            lookup = self.dns.ipv4 if self.ip.version == 4 else self.dns.ipv6
            for address in self._lookup(lambda host=host, lookup=lookup: lookup(host)):
                if self.ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False):
                    return True
        return False

    def _target(self, spec: str, term: str) -> str:
        if "%" in spec:
            raise _Stop("unknown", f"{term} uses a macro (doctor does not expand macros)")
        if not spec or "." not in spec.strip("."):
            raise _Stop("permerror", f"{term}: {spec!r} is not a domain")
        return spec.rstrip(".")

    def _count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _Stop(
                "permerror",
                f"more than {MAX_LOOKUPS} DNS-querying terms (include, a, mx, ptr, exists, "
                f"redirect), the {MAX_LOOKUPS + 1}th being {term}",
            )

    def _lookup(self, ask: Callable[[], T]) -> T:
        try:
            return ask()
        except DnsError as exc:
            self.dns_error = exc
            raise _Stop("temperror", str(exc)) from None
