"""The web app's checks of `digest doctor`: base-url, healthz and unsubscribe.

They ask the web app at ``web.base_url``, the address in every mail, as a reader's mail
client would: over the network, with the doctor's timeout, following no redirect. The
unsubscribe check POSTs the one-click body (RFC 8058) to an unsubscribe URL made the way
mails make theirs but signed with a random key, so the app refuses it and unsubscribes
nobody; what it answers shows that the endpoint is there.
"""

from __future__ import annotations

import re
import secrets

import httpx

from digest.app.access import REASONS
from digest.app.doctor import Check, Doctor, is_local_host
from digest.domain.tokens import SignedLinks, Tokens


def check_base_url(doctor: Doctor) -> list[Check]:
    url = doctor.settings.web.base_url
    if url.startswith("https://"):
        return [Check("base-url", "ok", f"{url} is https")]
    fix = (
        "serve the web app behind an https proxy and set web.base_url to its public "
        "https:// address"
    )
    if is_local_host(httpx.URL(url).host):
        return [
            Check(
                "base-url",
                "warn",
                f"{url} is plain http on this machine: the links in mails work only here",
                fix,
            )
        ]
    return [
        Check(
            "base-url",
            "fail",
            f"{url} is plain http: links in mails travel unencrypted, and one-click "
            "unsubscribe (RFC 8058) needs https",
            fix,
        )
    ]


def check_healthz(doctor: Doctor) -> list[Check]:
    url = f"{doctor.settings.web.base_url}/healthz"
    try:
        response = doctor.http.get(url)
    except httpx.HTTPError as exc:
        doctor.web_down = f"cannot reach {url}: {_http_reason(exc, doctor)}"
        return [
            Check(
                "healthz",
                "fail",
                doctor.web_down,
                "start the web app (`digest web`, or `digest serve`) and make sure "
                "web.base_url leads to it",
            )
        ]
    code = response.status_code
    if code == 200:
        try:
            data = response.json()
            state = f" (database {data['database']}, version {data['version']})"
        except (ValueError, KeyError, TypeError):
            state = ""
        return [Check("healthz", "ok", f"{url} answered 200{state}")]
    if response.is_redirect:
        return [
            Check(
                "healthz",
                "fail",
                f"{url} answered {code}, a redirect to {response.headers.get('location')}",
                "set web.base_url to the address it redirects to",
            )
        ]
    advice = (
        "the web app cannot use its database: see `digest status` and the web app's log"
        if code == 503
        else "make sure web.base_url leads to this web app"
    )
    return [Check("healthz", "fail", f"{url} answered {code}: {_snippet(response)}", advice)]


# The page a link with a bad signature gets (templates/web/link_problem.html), with the
# status digest.app.access gives a "tampered" link.
BAD_LINK_TITLE = "This link does not work"


def probe_unsubscribe_url(base_url: str) -> str:
    """The unsubscribe URL as mails carry it, with a token signed by a random key: the
    web app cannot read it, so it can unsubscribe nobody."""
    links = SignedLinks(base_url, Tokens(secrets.token_urlsafe(32)))
    return links.unsubscribe(f"doctor-{secrets.token_hex(8)}")


def check_unsubscribe(doctor: Doctor) -> list[Check]:
    if doctor.web_down:
        return [
            Check(
                "unsubscribe",
                "warn",
                f"not checked: the web app did not answer (healthz: {doctor.web_down})",
                "fix healthz first",
            )
        ]
    base = doctor.settings.web.base_url
    url = probe_unsubscribe_url(base)
    shown = f"POST {base}/unsubscribe/<made-up token>"
    try:
        response = doctor.http.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    except httpx.HTTPError as exc:
        return [
            Check(
                "unsubscribe",
                "fail",
                f"{shown}: {_http_reason(exc, doctor)}",
                "make sure web.base_url leads to the running web app",
            )
        ]
    code, expected = response.status_code, REASONS["tampered"]
    if code == expected and BAD_LINK_TITLE in response.text:
        return [
            Check(
                "unsubscribe",
                "ok",
                f'{shown} answered {code} "{BAD_LINK_TITLE}": the one-click endpoint is '
                "there (nobody was unsubscribed)",
            )
        ]
    passing = "a proxy in front of the web app must pass POST /unsubscribe/… through"
    if response.is_redirect:
        found = f"answered {code}, a redirect to {response.headers.get('location')}"
        advice = "one-click unsubscribe must be answered, not redirected (RFC 8058): " + (
            "set web.base_url to the final https address"
        )
    elif code == 404:
        found, advice = "answered 404: there is no unsubscribe endpoint there", passing
    elif code == 405:
        found, advice = "answered 405: POST is not allowed there", passing
    elif code >= 500:
        found, advice = f"answered {code}: the web app failed", "see the web app's log"
    elif 200 <= code < 300:
        found = f'answered {code} to a made-up token (expected {expected} "{BAD_LINK_TITLE}")'
        advice = "make sure web.base_url leads to this web app"
    else:
        found = f'answered {code}, not the web app\'s "{BAD_LINK_TITLE}" page'
        advice = passing + "; something else answers instead"
    return [Check("unsubscribe", "fail", f"{shown} {found}", advice)]


def _http_reason(exc: httpx.HTTPError, doctor: Doctor) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {doctor.settings.doctor.timeout:g} s"
    text = re.sub(r"^\[Errno -?\d+\] |^\[SSL: [A-Z_]+\] | \(_ssl\.c:\d+\)", "", str(exc))
    return text.strip() or type(exc).__name__


def _snippet(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:120] or "(no body)"
