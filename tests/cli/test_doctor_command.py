"""`digest doctor` as a command: one plain line per check, --json, and the exit codes (0 all
ok, 1 warnings, 2 a failure, or a bad option or setting), against a real DNS server and a
real relay on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import run_cli
from dns_server import Zone, dns_server
from doctor_support import (
    DIGESTS,
    Keys,
    environment,
    good_records,
    needs_openssl,
    relay,
    server_context,
)

pytestmark = needs_openssl


@pytest.fixture
def zone(keys: Keys) -> Iterator[tuple[Zone, str]]:
    served = Zone()
    served.records = good_records(keys)
    with dns_server(served) as address:
        yield served, address


DNS_AND_RELAY = ["--check", "spf", "--check", "dkim", "--check", "dmarc", "--check", "relay"]
DNS_AND_RELAY += ["--check", "bounce-mx", "--check", "domains"]


def test_exit_codes_and_json_through_the_command(
    tmp_path: Path, zone: tuple[Zone, str], keys: Keys, certificate: tuple[Path, Path]
) -> None:
    served, nameserver = zone
    with relay(server_context(certificate)) as port:
        env = environment(tmp_path, nameserver, keys, SMTP__USERNAME="digest")
        env |= {"DIGEST_SMTP__HOST": "127.0.0.1", "DIGEST_SMTP__PORT": str(port)}
        # The relay's certificate is trusted the way the advice says: SSL_CERT_FILE.
        env |= {"DIGEST_SMTP__PASSWORD": "pw", "SSL_CERT_FILE": str(certificate[0])}
        # The relay is local, so SPF cannot be judged for it: SPF is left out here.
        everything_ok = run_cli(tmp_path, "doctor", *DNS_AND_RELAY[2:], **env)
        served.set("_dmarc.acme-research.org", "TXT")
        warned = run_cli(tmp_path, "doctor", *DNS_AND_RELAY[2:], **env)
        served.set("mail.acme-research.org", "TXT")
        failed = run_cli(tmp_path, "doctor", "--json", *DNS_AND_RELAY, **env)
    assert everything_ok.returncode == 0, everything_ok.stdout + everything_ok.stderr
    lines = everything_ok.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["ok", "dkim"], ["ok", "dmarc"], ["ok", "relay"], ["ok", "bounce-mx"], ["ok", "domains"]
    ]  # fmt: skip
    assert lines[-1] == "doctor: ok (5 ok, 0 warn, 0 fail)"
    assert "certificate verified), login as digest accepted" in everything_ok.stdout
    assert warned.returncode == 1
    assert (
        "warn  dmarc       no DMARC record at _dmarc.acme-research.org -- publish a TXT record"
        in warned.stdout
    )
    assert failed.returncode == 2
    data = json.loads(failed.stdout)
    assert data["level"] == "fail"
    [spf] = [c for c in data["checks"] if c["message"].startswith(DIGESTS)]
    assert (spf["name"], spf["level"]) == ("spf", "fail")
    assert "no SPF record" in spf["message"] and spf["advice"].startswith("publish a TXT")
    assert {c["name"] for c in data["checks"]} == {
        "spf", "dkim", "dmarc", "relay", "bounce-mx", "domains"
    }  # fmt: skip


def test_a_bad_check_name_or_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    wrong = run_cli(tmp_path, "doctor", "--check", "spam")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "error: no check named spam; the checks: base-url, healthz, spf, dkim, dmarc, relay, "
        "bounce-mx, domains, unsubscribe, html-size"
    )
    bad = run_cli(tmp_path, "doctor", DIGEST_DOCTOR__NAMESERVERS="ns.example:dns")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: doctor.nameservers: 'ns.example:dns' is not host")
