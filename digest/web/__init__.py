"""The subscriber web app: subscribe, confirm, preferences with a live preview, unsubscribe.

A small Starlette app, served by uvicorn (``digest.web.server.run``). Modules, by what they do:

    app.py        create_app(): wires the parts below into one ASGI app
    context.py    Web: what every request handler shares (settings, store, tokens, mailer …)
    pages.py      Jinja2 pages from templates/web/, autoescaped; static file URLs
    security.py   security headers (CSP without inline script), client address, access log
    csrf.py       double-submit CSRF cookie with a signed form token
    ratelimit.py  rate limits stored as RateEvent rows under keyed hashes, never clear values
    access.py     reading the signed links: purpose, expiry, revocation by token version
    forms.py      parsing and checking form fields, one clear message per field
    mails.py      the transactional mails (confirm, new address, preferences link)
    preview.py    the live preview: ranking a profile against the last days' papers
    routes/       one module per area: subscribe, confirm, manage, unsubscribe, archive, health
    server.py     run(): uvicorn

Nothing in the package imports ``digest.cli`` or ``digest.scheduler``; nothing outside it
imports it except those two.
"""

from digest.web.app import create_app

__all__ = ["create_app"]
