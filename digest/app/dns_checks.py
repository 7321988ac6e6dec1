"""The DNS checks of `digest doctor`: SPF, DKIM, DMARC and the bounce domain's MX.

Each takes the :class:`~digest.app.doctor.Doctor` (settings and the one resolver) and gives
its :class:`~digest.app.doctor.Check` lines. Which domain each looks at:

- SPF is checked where receivers check it, at the envelope sender's domain: the domain of
  ``delivery.return_path`` for digests and ``mail.from_address``'s for confirmation mails
  (one line each when they differ). Whether the record lets the relay send is evaluated for
  ``smtp.host``'s addresses, looked up through the same resolver.
- DKIM: ``<selector>._domainkey.<delivery.dkim.domain or the From domain>``.
- DMARC: ``_dmarc.<From domain>``, else ``_dmarc.<its organisational domain>``.
- MX: the bounce address's domain (``delivery.return_path``'s, else the From address's).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from digest.app.doctor import DNS_ADVICE, Check, Doctor, dns_level, is_local_host, placeholder
from digest.delivery.dns_records import (
    DnsError,
    RsaKey,
    dkim_p,
    organisational_domain,
    private_key_of,
    public_key_of,
    tags,
)
from digest.delivery.spf import Verdict, check_host, has_plus_all, spf_records

# -- SPF ------------------------------------------------------------------------------------


def check_spf(doctor: Doctor) -> list[Check]:
    settings = doctor.settings
    bounce, sender = doctor.bounce_domain, doctor.from_domain
    if bounce == sender:
        targets = [(bounce, f"{bounce} (the envelope sender of every mail)")]
    else:
        targets = [
            (bounce, f"{bounce} (delivery.return_path: the envelope sender of digests)"),
            (sender, f"{sender} (mail.from_address: the envelope sender of confirmation mails)"),
        ]
    relay = _Relay.find(doctor, settings.smtp.host)
    return [
        _unreal("spf", domain, label) or _spf_of(doctor, domain, label, relay)
        for domain, label in targets
    ]


def _unreal(name: str, domain: str, label: str = "") -> Check | None:
    """A check not run: ``domain`` is no domain receivers could look up (the domains check
    fails for it and says what to do)."""
    reason = placeholder(domain)
    if reason is None:
        return None
    return Check(
        name, "warn", f"not checked: {label or domain} is {reason}", "see the domains check"
    )


class _Relay:
    """smtp.host's addresses as DNS gives them, or why SPF cannot be judged for them."""

    def __init__(
        self, host: str, addresses: list[str], local: bool = False, problem: str = ""
    ) -> None:
        self.host = host
        self.addresses = addresses
        self.local = local
        self.problem = problem

    @classmethod
    def find(cls, doctor: Doctor, host: str) -> _Relay:
        if is_local_host(host):
            return cls(host, [], local=True)
        try:
            ipaddress.ip_address(host)
            return cls(host, [host])
        except ValueError:
            pass
        try:
            found = doctor.dns.addresses(host)
        except DnsError as exc:
            return cls(host, [], problem=f"cannot look up the relay {host}: {exc}")
        if not found:
            where = doctor.dns.describe()
            return cls(host, [], problem=f"the relay {host} has no A or AAAA record ({where})")
        local = all(ipaddress.ip_address(a).is_loopback for a in found)
        return cls(host, found, local=local)

    def terms(self) -> str:
        """The relay's addresses as SPF terms, for an example record."""
        if not self.addresses or self.local:
            return "include:<the SPF domain your relay provider names>"
        return " ".join(f"ip{ipaddress.ip_address(a).version}:{a}" for a in self.addresses)

    def __str__(self) -> str:
        shown = ", ".join(self.addresses)
        return self.host if shown == self.host else f"{self.host} ({shown})"


def _spf_of(doctor: Doctor, domain: str, label: str, relay: _Relay) -> Check:
    try:
        records = spf_records(doctor.dns, domain)
    except DnsError as exc:
        return Check("spf", dns_level(exc), f"{label}: cannot look up SPF: {exc}", DNS_ADVICE)
    if not records:
        return Check(
            "spf",
            "fail",
            f"{label}: no SPF record (a TXT record starting v=spf1)",
            f'publish a TXT record at {domain}: "v=spf1 {relay.terms()} -all"',
        )
    if len(records) > 1:
        shown = "; ".join(f'"{r}"' for r in records)
        return Check(
            "spf",
            "fail",
            f"{label}: {len(records)} SPF records ({shown}); receivers treat that as an error",
            "merge them into one TXT record",
        )
    record = records[0]
    found = f'{label}: "{record}"'
    if has_plus_all(record):
        return Check(
            "spf",
            "fail",
            f"{found} ends in +all: it lets anyone send as {domain}",
            "end the record with -all (or ~all)",
        )
    if relay.local:
        return Check(
            "spf",
            "warn",
            f"{found}; the relay {relay.host} is on this machine, so whether the record covers "
            "the address it sends from cannot be judged here",
            "make sure the record covers this server's public address (ip4:…/ip6:…)",
        )
    if relay.problem:
        return Check("spf", "warn", f"{found}; not judged: {relay.problem}", DNS_ADVICE)
    verdicts = {ip: check_host(doctor.dns, ip, domain) for ip in relay.addresses}
    return _judge(found, domain, relay, verdicts)


def _judge(found: str, domain: str, relay: _Relay, verdicts: dict[str, Verdict]) -> Check:
    def having(*results: str) -> list[tuple[str, Verdict]]:
        return [(ip, v) for ip, v in verdicts.items() if v.result in results]

    opened = [v for v in verdicts.values() if v.plus_all]
    if opened:
        verdict = opened[0]
        return Check(
            "spf",
            "fail",
            f"{found}: {verdict.why} lets anyone send as {domain}",
            "end every record it uses with -all (or ~all)",
        )
    broken = having("permerror")
    if broken:
        return Check(
            "spf",
            "fail",
            f"{found} is broken: {broken[0][1].why}",
            "fix the record: receivers treat a broken one as a failure",
        )
    uncovered = having("fail", "softfail", "neutral", "none")
    if uncovered:
        ips = ", ".join(ip for ip, _ in uncovered)
        verdict = uncovered[0][1]
        return Check(
            "spf",
            "fail",
            f"{found} does not cover the relay {relay.host} ({ips}): {verdict.result} by "
            f"{verdict.why}",
            f"add the relay to the record ({relay.terms()}, or the include: your relay "
            f"provider documents); if the relay sends from other addresses than "
            f"{relay.host}'s, make sure those are covered",
        )
    stuck = having("temperror")
    if stuck:
        error = stuck[0][1].dns_error
        level = dns_level(error) if error else "warn"
        return Check("spf", level, f"{found}; not judged: {stuck[0][1].why}", DNS_ADVICE)
    unknown = having("unknown")
    if unknown:
        return Check(
            "spf",
            "warn",
            f"{found}; not judged for the relay {relay}: {unknown[0][1].why}",
            "check the record with your relay's documentation or an SPF checker",
        )
    how = "; ".join(dict.fromkeys(v.why for v in verdicts.values()))
    return Check("spf", "ok", f"{found} covers the relay {relay} by {how}")


# -- DKIM -----------------------------------------------------------------------------------


def check_dkim(doctor: Doctor) -> list[Check]:
    dkim = doctor.settings.delivery.dkim
    if not dkim.enabled:
        return [
            Check(
                "dkim",
                "warn",
                "the digest does not sign (delivery.dkim.enabled is false)",
                f"make sure your relay signs with d={doctor.from_domain}, or turn on delivery.dkim",
            )
        ]
    domain = (dkim.domain or doctor.from_domain).lower().rstrip(".")
    unreal = _unreal("dkim", domain)
    if unreal:
        return [unreal]
    name = f"{dkim.selector}._domainkey.{domain}"
    path = Path(dkim.private_key_path)
    try:
        key = private_key_of(path.read_bytes())
    except OSError as exc:
        return [
            Check(
                "dkim",
                "fail",
                f"cannot read delivery.dkim.private_key_path {path}: {exc.strerror}",
                "point delivery.dkim.private_key_path at the PEM file of the signing key",
            )
        ]
    except ValueError as exc:
        advice = "point it at an RSA key in PEM form (openssl genrsa -out dkim.pem 2048)"
        return [Check("dkim", "fail", f"delivery.dkim.private_key_path {path}: {exc}", advice)]
    wanted = f"v=DKIM1; k=rsa; p={dkim_p(key)}"
    publish = f'publish a TXT record at {name}: "{wanted}"'
    if key.bits < 1024:
        return [
            Check(
                "dkim",
                "fail",
                f"{path} is a {key.bits}-bit key: receivers ignore keys under 1024 bits",
                "generate a 2048-bit key (openssl genrsa -out dkim.pem 2048) and publish it",
            )
        ]
    try:
        records = doctor.dns.txt(name)
    except DnsError as exc:
        return [Check("dkim", dns_level(exc), f"cannot look up {name}: {exc}", DNS_ADVICE)]
    if not records:
        return [Check("dkim", "fail", f"no DKIM record at {name}", publish)]
    if len(records) > 1:
        return [
            Check(
                "dkim",
                "fail",
                f"{len(records)} TXT records at {name}; receivers expect one",
                f"keep one: {wanted}",
            )
        ]
    found = tags(records[0])
    problem = _dkim_problem(found, key, path)
    if problem:
        return [Check("dkim", "fail", f"{name}: {problem}", publish)]
    if "y" in found.get("t", "").lower().split(":"):
        return [
            Check(
                "dkim",
                "warn",
                f"{name} matches {path}, but says t=y (testing): receivers may treat "
                "signed mail as unsigned",
                "remove t=y from the record once signed mail verifies",
            )
        ]
    return [Check("dkim", "ok", f"{name} publishes the public key of {path} ({key.bits}-bit RSA)")]


def _dkim_problem(found: dict[str, str], key: RsaKey, path: Path) -> str | None:
    if found.get("v", "DKIM1") != "DKIM1":
        return f"v={found['v']}, not DKIM1"
    if found.get("k", "rsa").lower() != "rsa":
        return f"k={found['k']}, but {path} is an RSA key"
    if "p" not in found:
        return "the record has no p= tag (the public key)"
    if not found["p"]:
        return "p= is empty: the key is revoked"
    try:
        published = public_key_of(found["p"])
    except ValueError as exc:
        return str(exc)
    if published != key:
        return f"p= is another key than the one in {path} (a {published.bits}-bit key)"
    return None


# -- DMARC ----------------------------------------------------------------------------------


def check_dmarc(doctor: Doctor) -> list[Check]:
    sender = doctor.from_domain
    unreal = _unreal("dmarc", sender)
    if unreal:
        return [unreal]
    org = organisational_domain(sender)
    names = [f"_dmarc.{sender}"] + ([f"_dmarc.{org}"] if org != sender else [])
    for name in names:
        try:
            texts = doctor.dns.txt(name)
        except DnsError as exc:
            return [Check("dmarc", dns_level(exc), f"cannot look up {name}: {exc}", DNS_ADVICE)]
        records = [t for t in texts if t.strip().startswith("v=DMARC1")]
        if texts and not records:
            shown = "; ".join(f'"{t}"' for t in texts)
            return [
                Check(
                    "dmarc",
                    "fail",
                    f"{name} has TXT ({shown}) but no record starting v=DMARC1",
                    f'make it "v=DMARC1; p=none; rua=mailto:dmarc-reports@{sender}"',
                )
            ]
        if records:
            return [_dmarc_of(doctor, name, records, inherited=name != names[0])]
    return [
        Check(
            "dmarc",
            "warn",
            f"no DMARC record at {' or '.join(names)}",
            f'publish a TXT record at _dmarc.{sender}: "v=DMARC1; p=none; '
            f'rua=mailto:dmarc-reports@{sender}", read the reports, then move to p=quarantine',
        )
    ]


def _dmarc_of(doctor: Doctor, name: str, records: list[str], *, inherited: bool) -> Check:
    sender = doctor.from_domain
    if len(records) > 1:
        return Check(
            "dmarc",
            "fail",
            f"{len(records)} DMARC records at {name}; receivers then apply none",
            "keep one",
        )
    found = tags(records[0])
    policy = (found.get("sp") if inherited else None) or found.get("p", "")
    if not policy:
        return Check(
            "dmarc",
            "fail",
            f'{name}: "{records[0]}" has no p= (the policy)',
            "add p=none to start with, then move to p=quarantine",
        )
    if policy.lower() not in ("none", "quarantine", "reject"):
        return Check("dmarc", "fail", f"{name}: p={policy} is not a policy", "use p=none")
    spf_domain = doctor.bounce_domain
    dkim = doctor.settings.delivery.dkim
    dkim_domain = (dkim.domain or sender).lower() if dkim.enabled else None
    aspf, adkim = found.get("aspf", "r").lower(), found.get("adkim", "r").lower()
    aligned = []
    if _aligned(spf_domain, sender, aspf):
        aligned.append(f"SPF ({spf_domain}, {_mode(aspf)})")
    if dkim_domain and _aligned(dkim_domain, sender, adkim):
        aligned.append(f"DKIM (d={dkim_domain}, {_mode(adkim)})")
    head = f"{name}: p={policy}"
    if aligned:
        return Check("dmarc", "ok", f"{head}; aligned with {sender} by {' and '.join(aligned)}")
    spf_text = f"SPF's {spf_domain} is {_outside(spf_domain, sender, aspf)}"
    fix = (
        f"set delivery.return_path to an address at {sender}"
        + (" (or a subdomain)" if aspf != "s" else "")
        + f", or delivery.dkim.domain = {sender}"
    )
    if dkim_domain is None:
        return Check(
            "dmarc",
            "warn",
            f"{head}; {spf_text}, and the digest does not sign: DMARC passes only if your "
            f"relay signs with d={sender}",
            f"make sure it does, or turn on delivery.dkim, or {fix.removeprefix('set ')}",
        )
    return Check(
        "dmarc",
        "fail",
        f"{head}; nothing aligns with {sender}: {spf_text}, DKIM's d={dkim_domain} is "
        f"{_outside(dkim_domain, sender, adkim)}",
        fix,
    )


def _aligned(domain: str, sender: str, mode: str) -> bool:
    if mode == "s":
        return domain == sender
    return organisational_domain(domain) == organisational_domain(sender)


def _mode(mode: str) -> str:
    return "strict" if mode == "s" else "relaxed"


def _outside(domain: str, sender: str, mode: str) -> str:
    if mode == "s":
        return f"not {sender} (strict alignment)"
    return f"outside {organisational_domain(sender)}"


# -- the bounce domain ----------------------------------------------------------------------


def check_bounce_mx(doctor: Doctor) -> list[Check]:
    settings = doctor.settings
    domain = doctor.bounce_domain
    address = settings.delivery.return_path or settings.mail.from_address
    unreal = _unreal("bounce-mx", domain)
    if unreal:
        return [unreal]
    try:
        exchanges = doctor.dns.mx(domain)
        if exchanges and not any(host for _, host in exchanges):
            return [
                Check(
                    "bounce-mx",
                    "fail",
                    f"{domain} has a null MX (RFC 7505): it takes no mail, so bounces to "
                    f"{address} are lost",
                    f"publish a real MX record for {domain}, or set delivery.return_path to "
                    "an address at a domain that receives mail",
                )
            ]
        for preference, host in exchanges:
            if host and doctor.dns.addresses(host):
                return [Check("bounce-mx", "ok", f"{domain}: MX {preference} {host}")]
        if exchanges:
            hosts = ", ".join(host for _, host in exchanges)
            return [
                Check(
                    "bounce-mx",
                    "fail",
                    f"{domain}: none of its MX hosts ({hosts}) has an address",
                    "give the MX host an A (or AAAA) record",
                )
            ]
        fallback = doctor.dns.addresses(domain)
    except DnsError as exc:
        return [Check("bounce-mx", dns_level(exc), f"cannot look up {domain}: {exc}", DNS_ADVICE)]
    advice = (
        f"publish an MX record for {domain} pointing at the server that receives bounces "
        "(they are read by `digest bounce`)"
    )
    if fallback:
        return [
            Check(
                "bounce-mx",
                "warn",
                f"{domain} has no MX record; bounces go to its address {fallback[0]} "
                "(the implicit MX of RFC 5321)",
                advice,
            )
        ]
    return [
        Check(
            "bounce-mx",
            "fail",
            f"{domain} has no MX and no A/AAAA record: bounces to {address} cannot arrive",
            advice,
        )
    ]
