"""`digest doctor`: the deliverability preflight before the first real send."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.common import State, app

if TYPE_CHECKING:
    from digest.app.doctor import Check

EXIT_CODES = {"ok": 0, "warn": 1, "fail": 2}


@app.command("doctor")
def doctor_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object, for machines")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            metavar="NAME",
            help="run only this check (repeatable): base-url, healthz, spf, dkim, dmarc, "
            "relay, bounce-mx, domains, unsubscribe, html-size",
        ),
    ] = None,
) -> None:
    """Is this installation ready to send? Checks the DNS records receivers look at (SPF,
    DKIM, DMARC, the bounce domain's MX), a session with the relay (TLS, login; no mail is
    sent), the web app (https, /healthz, the one-click unsubscribe endpoint, with a made-up
    token), the domains in Message-IDs and bounces, and the largest digest's size.

    One line per check: its level (ok, warn or fail), its name and what was found; a
    warning or a failure adds what to do after a double dash (--). A last line sums up:
    "doctor: LEVEL (N ok, N warn, N fail)". DNS questions go to doctor.nameservers (default:
    the system's resolver); each question and connection waits doctor.timeout seconds.

    Exit codes: 0 all ok; 1 warnings but no failure; 2 something failed. A bad option or
    setting also exits 2, with one "error:" line on stderr instead of the checks.
    """
    from digest.app.doctor import run, worst

    state: State = ctx.obj
    checks = run(state.settings, only=only or ())
    level = worst(checks)
    if as_json:
        data = {"level": level, "checks": [check.as_json() for check in checks]}
        print(json.dumps(data, ensure_ascii=False))
    else:
        for check in checks:
            print(line(check))
        counts = {name: sum(c.level == name for c in checks) for name in EXIT_CODES}
        print(f"doctor: {level} ({', '.join(f'{n} {name}' for name, n in counts.items())})")
    raise typer.Exit(EXIT_CODES[level])


def line(check: Check) -> str:
    """ "fail  spf         example.org: … -- publish …": plain, one line, greppable."""
    text = f"{check.level:<5} {check.name:<11} {check.message}"
    return f"{text} -- {check.advice}" if check.advice else text
