"""`digest doctor`'s DNS checks (SPF, DKIM, DMARC, the bounce domain's MX) against a real DNS
server (dnslib) answering from a zone that each test breaks in one place; and the checks that
need no network: the domains mails name, base_url's scheme, the largest digest's size.

The relay, the web app, a full run and the command: test_doctor_services.py and
tests/cli/test_doctor_command.py."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_server import Zone, dns_server, silent_dns
from doctor_support import (
    CONFIRMATIONS,
    DIGESTS,
    DKIM_NAME,
    RETURN_PATH,
    Keys,
    checks,
    good_records,
    needs_openssl,
    one,
    settings_maker,
)

from digest.app.doctor import Check, Doctor, run
from digest.config import Settings
from digest.delivery.dns_records import Server, dkim_p, parse_nameserver, private_key_of
from digest.errors import ConfigError

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def served_zone() -> Iterator[tuple[Zone, str]]:
    zone = Zone()
    with dns_server(zone) as address:
        yield zone, address


@pytest.fixture
def zone(served_zone: tuple[Zone, str], keys: Keys) -> Zone:
    """A zone where every DNS check passes; a test breaks one thing in it."""
    found, _ = served_zone
    found.servfail.clear()
    found.records = good_records(keys)
    return found


@pytest.fixture
def settings_for(tmp_path: Path, served_zone: tuple[Zone, str], keys: Keys) -> Any:
    """Settings for the test zone; keyword arguments are more DIGEST_ variables."""
    return settings_maker(tmp_path, served_zone[1], keys)


def spf_line(settings: Settings, starts: str) -> Check:
    [found] = [c for c in checks(settings, "spf") if c.message.startswith(starts)]
    return found


# -- SPF ------------------------------------------------------------------------------------


def test_spf_through_include_and_redirect_covers_the_relay(settings_for: Any, zone: Zone) -> None:
    settings = settings_for()
    digests, confirmations = checks(settings, "spf")
    assert digests.level == "ok" and digests.message.startswith(DIGESTS)
    assert "covers the relay relay.test (192.0.2.10)" in digests.message
    assert (
        "by ip4:192.0.2.0/24 in _spf.relay.test, via include:_spf.relay.test, "
        "via redirect=acme-research.org" in digests.message
    )
    assert confirmations.level == "ok" and confirmations.message.startswith(CONFIRMATIONS)
    assert "via include:_spf.relay.test" in confirmations.message
    assert "redirect" not in confirmations.message


def test_one_domain_for_everything_gives_one_spf_line(settings_for: Any, zone: Zone) -> None:
    [found] = checks(settings_for(DELIVERY__RETURN_PATH=""), "spf")
    assert found.level == "ok"
    assert found.message.startswith("acme-research.org (the envelope sender of every mail)")


def test_no_spf_record_fails_with_an_example_naming_the_relay(
    settings_for: Any, zone: Zone
) -> None:
    zone.set("acme-research.org", "TXT", "google-site-verification=abc123")
    settings = settings_for()
    found = spf_line(settings, CONFIRMATIONS)
    assert found.level == "fail"
    assert "no SPF record (a TXT record starting v=spf1)" in found.message
    assert 'publish a TXT record at acme-research.org: "v=spf1 ip4:192.0.2.10 -all"' in (
        found.advice
    )
    # The digests' domain redirects there: a redirect to nothing is a broken record.
    digests = spf_line(settings, DIGESTS)
    assert digests.level == "fail"
    assert "is broken: mail.acme-research.org: redirect=acme-research.org has no SPF record" in (
        digests.message
    )


def test_spf_that_does_not_cover_the_relay_fails_naming_ips_and_record(
    settings_for: Any, zone: Zone
) -> None:
    zone.set("_spf.relay.test", "TXT", "v=spf1 ip4:198.51.100.0/24 -all")
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "fail"
    assert '"v=spf1 include:_spf.relay.test -all" does not cover the relay relay.test' in (
        found.message
    )
    assert "(192.0.2.10): fail by -all in acme-research.org" in found.message
    assert "ip4:192.0.2.10" in found.advice


def test_every_relay_address_must_be_covered(settings_for: Any, zone: Zone) -> None:
    zone.set("relay.test", "AAAA", "2001:db8::10", "2001:db9::10")
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "fail"
    assert "does not cover the relay relay.test (2001:db9::10)" in found.message


def test_two_spf_records_fail(settings_for: Any, zone: Zone) -> None:
    zone.set("acme-research.org", "TXT", "v=spf1 -all", "v=spf1 include:_spf.relay.test -all")
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "fail"
    assert "2 SPF records" in found.message and "receivers treat that as an error" in found.message
    assert found.advice == "merge them into one TXT record"


@pytest.mark.parametrize(
    ("where", "record", "said"),
    [
        ("acme-research.org", "v=spf1 ip4:192.0.2.10 +all", "ends in +all"),
        ("acme-research.org", "v=spf1 ip4:192.0.2.10 all", "ends in +all"),
        ("_spf.relay.test", "v=spf1 +all", "+all in _spf.relay.test, via include:_spf.relay"),
    ],
)
def test_plus_all_fails_even_where_the_relay_is_covered(
    settings_for: Any, zone: Zone, where: str, record: str, said: str
) -> None:
    zone.set(where, "TXT", record)
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "fail"
    assert said in found.message and "lets anyone send as acme-research.org" in found.message


def test_a_and_mx_mechanisms_with_cidr(settings_for: Any, zone: Zone) -> None:
    zone.set("acme-research.org", "TXT", "v=spf1 mx a:out.acme-research.org/24 -all")
    zone.set("acme-research.org", "MX", (10, "mx.acme-research.org"))
    zone.set("out.acme-research.org", "A", "192.0.2.200")  # 192.0.2.10 is in its /24
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "ok", found
    assert "by a:out.acme-research.org/24 in acme-research.org" in found.message
    zone.set("acme-research.org", "TXT", "v=spf1 mx a:out.acme-research.org -all")
    assert spf_line(settings_for(), CONFIRMATIONS).level == "fail"


def test_more_than_ten_lookups_is_a_broken_record(settings_for: Any, zone: Zone) -> None:
    includes = " ".join(f"include:n{i}.relay.test" for i in range(11))
    zone.set("acme-research.org", "TXT", f"v=spf1 {includes} include:_spf.relay.test -all")
    for i in range(11):
        zone.set(f"n{i}.relay.test", "TXT", "v=spf1 ip4:203.0.113.1 -all")
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "fail"
    assert "more than 10 DNS-querying terms" in found.message
    assert "the 11th being include:n10.relay.test" in found.message


def test_exists_and_macros_are_not_evaluated_and_say_so(settings_for: Any, zone: Zone) -> None:
    zone.set("acme-research.org", "TXT", "v=spf1 exists:%{i}.spf.acme-research.org -all")
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "warn"
    assert "not judged for the relay relay.test (192.0.2.10)" in found.message
    assert "exists:%{i}.spf.acme-research.org in acme-research.org (doctor does not " in (
        found.message
    )
    zone.set("acme-research.org", "TXT", "v=spf1 include:_spf.%{d} -all")
    macro = spf_line(settings_for(), CONFIRMATIONS)
    assert macro.level == "warn" and "uses a macro (doctor does not expand macros)" in (
        macro.message
    )
    # A match before the term decides without it.
    zone.set("acme-research.org", "TXT", "v=spf1 ip4:192.0.2.10 ptr -all")
    assert spf_line(settings_for(), CONFIRMATIONS).level == "ok"


def test_a_relay_on_this_machine_cannot_be_judged(settings_for: Any, zone: Zone) -> None:
    found = spf_line(settings_for(SMTP__HOST="127.0.0.1"), CONFIRMATIONS)
    assert found.level == "warn"
    assert "the relay 127.0.0.1 is on this machine" in found.message


def test_an_unresolvable_relay_says_spf_was_not_judged(settings_for: Any, zone: Zone) -> None:
    zone.set("relay.test", "A")
    found = spf_line(settings_for(), CONFIRMATIONS)
    assert found.level == "warn"
    assert "not judged: the relay relay.test has no A or AAAA record" in found.message


# -- DKIM -----------------------------------------------------------------------------------


def test_dkim_key_in_dns_matches_the_private_key(settings_for: Any, zone: Zone, keys: Keys) -> None:
    found = one(settings_for(), "dkim")
    assert found.level == "ok", found
    assert found.message == (
        f"{DKIM_NAME} publishes the public key of {keys['signing'][0]} (2048-bit RSA)"
    )
    # The p= computed from the key is what openssl derives (the record the advice gives).
    pem = keys["signing"][0].read_bytes()
    assert dkim_p(private_key_of(pem)) == keys["signing"][1]


def test_missing_dkim_record_fails_with_the_record_to_publish(
    settings_for: Any, zone: Zone, keys: Keys
) -> None:
    zone.set(DKIM_NAME, "TXT")
    found = one(settings_for(), "dkim")
    assert found.level == "fail"
    assert found.message == f"no DKIM record at {DKIM_NAME}"
    assert found.advice == (
        f'publish a TXT record at {DKIM_NAME}: "v=DKIM1; k=rsa; p={keys["signing"][1]}"'
    )


def test_dkim_record_of_another_key_fails(settings_for: Any, zone: Zone, keys: Keys) -> None:
    zone.set(DKIM_NAME, "TXT", f"v=DKIM1; k=rsa; p={keys['other'][1]}")
    found = one(settings_for(), "dkim")
    assert found.level == "fail"
    assert f"p= is another key than the one in {keys['signing'][0]}" in found.message
    assert keys["signing"][1] in found.advice
    zone.set(DKIM_NAME, "TXT", "v=DKIM1; k=rsa")
    assert "has no p= tag" in one(settings_for(), "dkim").message
    zone.set(DKIM_NAME, "TXT", "v=DKIM1; k=rsa; p=")
    assert "the key is revoked" in one(settings_for(), "dkim").message


def test_dkim_off_and_unreadable_keys(settings_for: Any, zone: Zone, tmp_path: Path) -> None:
    off = one(settings_for(DELIVERY__DKIM__ENABLED="false"), "dkim")
    assert off.level == "warn" and off.message.startswith("the digest does not sign")
    assert off.advice.startswith("make sure your relay signs with d=acme-research.org")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    bad = one(settings_for(DELIVERY__DKIM__PRIVATE_KEY_PATH=str(garbage)), "dkim")
    assert bad.level == "fail" and "not an RSA private key in PEM form" in bad.message
    gone = one(settings_for(DELIVERY__DKIM__PRIVATE_KEY_PATH=str(tmp_path / "no.pem")), "dkim")
    assert gone.level == "fail" and "cannot read delivery.dkim.private_key_path" in gone.message


# -- DMARC ----------------------------------------------------------------------------------


def test_dmarc_relaxed_alignment(settings_for: Any, zone: Zone) -> None:
    found = one(settings_for(), "dmarc")
    assert found.level == "ok"
    assert found.message == (
        "_dmarc.acme-research.org: p=quarantine; aligned with acme-research.org by SPF "
        "(mail.acme-research.org, relaxed) and DKIM (d=acme-research.org, relaxed)"
    )


def test_missing_dmarc_warns_with_an_example(settings_for: Any, zone: Zone) -> None:
    zone.set("_dmarc.acme-research.org", "TXT")
    found = one(settings_for(), "dmarc")
    assert found.level == "warn"
    assert found.message == "no DMARC record at _dmarc.acme-research.org"
    assert '"v=DMARC1; p=none; rua=mailto:dmarc-reports@acme-research.org"' in found.advice


def test_dmarc_of_the_organisational_domain_serves_a_subdomain(
    settings_for: Any, zone: Zone
) -> None:
    zone.set("_dmarc.acme-research.org", "TXT", "v=DMARC1; p=none; sp=reject")
    found = one(settings_for(MAIL__FROM_ADDRESS="papers@news.acme-research.org"), "dmarc")
    assert found.level == "ok"
    assert found.message.startswith("_dmarc.acme-research.org: p=reject;")  # sp= applies


def test_dmarc_strict_alignment_that_nothing_meets_fails(settings_for: Any, zone: Zone) -> None:
    zone.set("_dmarc.acme-research.org", "TXT", "v=DMARC1; p=reject; aspf=s; adkim=s")
    settings = settings_for(DELIVERY__DKIM__DOMAIN="mail.acme-research.org")
    found = one(settings, "dmarc")
    assert found.level == "fail"
    assert "nothing aligns with acme-research.org" in found.message
    assert "SPF's mail.acme-research.org is not acme-research.org (strict alignment)" in (
        found.message
    )
    assert "DKIM's d=mail.acme-research.org is not acme-research.org" in found.message
    # Without our signature it depends on the relay's: a warning, not a failure.
    unsigned = one(settings_for(DELIVERY__DKIM__ENABLED="false"), "dmarc")
    assert unsigned.level == "warn" and "relay signs with d=acme-research.org" in (unsigned.message)


def test_dmarc_without_a_policy_fails(settings_for: Any, zone: Zone) -> None:
    zone.set("_dmarc.acme-research.org", "TXT", "v=DMARC1; rua=mailto:d@acme-research.org")
    found = one(settings_for(), "dmarc")
    assert found.level == "fail" and "has no p= (the policy)" in found.message


# -- the bounce domain ----------------------------------------------------------------------


def test_bounce_domain_mx(settings_for: Any, zone: Zone) -> None:
    found = one(settings_for(), "bounce-mx")
    assert (found.level, found.message) == (
        "ok",
        "mail.acme-research.org: MX 10 mx.acme-research.org",
    )
    zone.set("mail.acme-research.org", "MX")
    zone.set("mail.acme-research.org", "A", "192.0.2.30")
    implicit = one(settings_for(), "bounce-mx")
    assert implicit.level == "warn" and "no MX record" in implicit.message
    assert "192.0.2.30 (the implicit MX of RFC 5321)" in implicit.message
    zone.set("mail.acme-research.org", "A")
    none = one(settings_for(), "bounce-mx")
    assert none.level == "fail"
    assert none.message == (
        "mail.acme-research.org has no MX and no A/AAAA record: bounces to "
        f"{RETURN_PATH} cannot arrive"
    )
    zone.set("mail.acme-research.org", "MX", (0, "."))
    assert "null MX" in one(settings_for(), "bounce-mx").message


# -- DNS that does not answer ---------------------------------------------------------------


def test_a_dns_server_that_does_not_answer_gives_one_clear_line_per_check_fast(
    settings_for: Any,
) -> None:
    with silent_dns() as address:
        settings = settings_for(DOCTOR__NAMESERVERS=address, DOCTOR__TIMEOUT="0.5")
        started = time.monotonic()
        found = run(settings, only=["spf", "dkim", "dmarc", "bounce-mx"])
        took = time.monotonic() - started
    said = f"the DNS server {address} did not answer within 0.5 s"
    assert [c.name for c in found] == ["spf", "spf", "dkim", "dmarc", "bounce-mx"]
    for check in found:
        assert check.level == "warn" and said in check.message, check
    assert took < 2.5  # after the first timeout the other lookups do not wait again


def test_servfail_fails_naming_the_server(settings_for: Any, zone: Zone) -> None:
    zone.servfail.add("_dmarc.acme-research.org")
    found = one(settings_for(), "dmarc")
    assert found.level == "fail"
    assert "answered SERVFAIL for _dmarc.acme-research.org TXT" in found.message


@pytest.mark.parametrize(
    ("entry", "host", "port"),
    [
        ("192.0.2.1", "192.0.2.1", 53),
        (" 192.0.2.1:5353 ", "192.0.2.1", 5353),
        ("::1", "::1", 53),
        ("[::1]:5353", "::1", 5353),
        ("ns1.acme-research.org:5353", "ns1.acme-research.org", 5353),
    ],
)
def test_nameserver_entries(entry: str, host: str, port: int) -> None:
    assert parse_nameserver(entry) == Server(host, port)


@pytest.mark.parametrize("entry", ["127.0.0.1:0", "127.0.0.1:99999", "[::1", ":53", "ns:dns"])
def test_a_bad_nameserver_setting_is_refused(settings_for: Any, entry: str) -> None:
    with pytest.raises(ConfigError, match=rf"doctor.nameservers: '{re.escape(entry)}' is not"):
        run(settings_for(DOCTOR__NAMESERVERS=entry))


# -- the domains ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"MAIL__FROM_ADDRESS": "digest@localhost"}, "Message-IDs end in @localhost"),
        ({"MAIL__FROM_ADDRESS": "digest@mailhost"}, "a bare host name"),
        ({"MAIL__FROM_ADDRESS": "digest@news.example.org"}, "reserved for examples"),
        (
            {"DELIVERY__RETURN_PATH": "b+{id}@localhost.localdomain"},
            "the VERP address b+{id}@localhost.localdomain is at localhost.localdomain",
        ),
    ],
)
def test_placeholder_domains_fail(settings_for: Any, extra: dict[str, str], said: str) -> None:
    found = one(settings_for(**extra), "domains")
    assert found.level == "fail" and said in found.message


def test_dns_checks_of_a_placeholder_domain_say_they_did_not_run(settings_for: Any) -> None:
    settings = settings_for(MAIL__FROM_ADDRESS="digest@localhost", DELIVERY__RETURN_PATH="")
    found = run(settings, only=["spf", "dkim", "dmarc", "bounce-mx"])
    assert [(c.name, c.level) for c in found] == [
        ("spf", "warn"), ("dkim", "warn"), ("dmarc", "warn"), ("bounce-mx", "warn")
    ]  # fmt: skip
    for check in found:
        assert check.message.startswith("not checked: localhost")
        assert check.advice == "see the domains check"


def test_real_domains_pass(settings_for: Any) -> None:
    found = one(settings_for(), "domains")
    assert (found.level, found.message) == (
        "ok",
        f"Message-IDs end in @acme-research.org; bounces go to {RETURN_PATH} (VERP)",
    )


# -- base_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "level"),
    [
        ("https://digest.acme-research.org", "ok"),
        ("http://localhost:8000", "warn"),
        ("http://127.0.0.1:8000", "warn"),
        ("http://digest.acme-research.org", "fail"),
    ],
)
def test_base_url_scheme(settings_for: Any, url: str, level: str) -> None:
    assert one(settings_for(WEB__BASE_URL=url), "base-url").level == level


# -- the largest digest ---------------------------------------------------------------------


def test_html_size_reports_the_default_and_the_largest_digest(settings_for: Any) -> None:
    from digest.app.digest_size import Measure
    from digest.render import GMAIL_CLIP_BYTES

    settings = settings_for()
    found = one(settings, "html-size")
    assert found.level == "ok", found
    assert found.message.startswith("10 papers + 3 trending (the default size): ")
    with Doctor.make(settings) as doctor:
        measure = Measure(doctor)
        assert f"{measure.size(10) / 1024:.1f} KB of HTML" in found.message
        largest = measure.get(50)
        assert measure.size(50) <= GMAIL_CLIP_BYTES and measure.get(10).moved == 0
    # What fitting the largest cost is said, as the renderer did it.
    if largest.moved:
        assert f"{53 - largest.moved} of 53 papers in the mail" in found.message
    assert f"abstracts shortened to {largest.abstract_chars} characters" in found.message


def test_html_size_fails_when_the_default_digest_is_clipped(
    settings_for: Any, tmp_path: Path
) -> None:
    from digest.render import default_templates_dir

    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    page = templates / "email" / "digest.html"
    padding = "<p>" + "A long sponsor message. " * 5000 + "</p>\n</body>"
    page.write_text(page.read_text().replace("</body>", padding))
    found = one(settings_for(PATHS__TEMPLATES_DIR=str(templates)), "html-size")
    assert found.level == "fail"
    assert "over Gmail's 102 KB clip even with the papers moved out" in found.message
