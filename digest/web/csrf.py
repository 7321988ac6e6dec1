"""CSRF protection for every state-changing form: a signed double-submit cookie.

The first page with a form sets a cookie holding a random nonce (HttpOnly, SameSite=Lax,
Secure and ``__Host-`` prefixed when the site is https). Each form carries the same nonce
signed with the site's secret. A POST is accepted only when the signature holds and the
signed nonce equals the cookie: another site can make a browser send the cookie, but cannot
read it or forge the signature. The nonce is made lazily, so a page without a form (and the
one-click unsubscribe answer) sets no cookie.

The one-click unsubscribe POST (RFC 8058) is exempt by design: mail clients send it without
cookies, and the unguessable token in its URL already proves the request came from the mail.
"""

from __future__ import annotations

import hmac
import re
import secrets

from itsdangerous import BadSignature, Signer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FIELD = "csrf_token"
_NONCE = re.compile(r"[A-Za-z0-9_-]{32,64}")
_STATE_KEY = "csrf_new_nonce"


class Csrf:
    def __init__(self, secret: str, *, secure: bool) -> None:
        self.signer = Signer(secret, salt="digest.csrf")
        self.secure = secure
        self.cookie_name = "__Host-digest_csrf" if secure else "digest_csrf"

    def _cookie_nonce(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name, "")
        return value if _NONCE.fullmatch(value) else None

    def token(self, request: Request) -> str:
        """The form token for this request; sets the cookie on the response when new."""
        nonce = self._cookie_nonce(request) or request.scope.setdefault("state", {}).get(_STATE_KEY)
        if nonce is None:
            nonce = secrets.token_urlsafe(32)
            request.scope["state"][_STATE_KEY] = nonce
        return self.signer.sign(nonce).decode()

    def valid(self, request: Request, submitted: object) -> bool:
        cookie = self._cookie_nonce(request)
        if cookie is None or not isinstance(submitted, str) or len(submitted) > 200:
            return False
        try:
            nonce = self.signer.unsign(submitted).decode()
        except BadSignature:
            return False
        return hmac.compare_digest(nonce, cookie)

    def cookie_header(self, nonce: str) -> str:
        parts = [f"{self.cookie_name}={nonce}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


class CsrfCookie:
    """Sets the CSRF cookie on a response whose page made a new nonce."""

    def __init__(self, app: ASGIApp, csrf: Csrf) -> None:
        self.app = app
        self.csrf = csrf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonce = state.get(_STATE_KEY)
                if nonce:
                    MutableHeaders(scope=message).append(
                        "set-cookie", self.csrf.cookie_header(nonce)
                    )
            await send(message)

        await self.app(scope, receive, send_with_cookie)
