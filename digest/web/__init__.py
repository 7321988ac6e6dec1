"""The subscriber web app: subscribe, confirm, preferences with a live preview, unsubscribe.

A small Starlette app, served by uvicorn (``digest.web.server.run``). Modules, by what they do:

    app.py        create_app(): wires the parts below into one ASGI app
    context.py    Web: the use cases' Services, plus CSRF, pages, live preview, mail sender
    pages.py      Jinja2 pages from templates/web/, autoescaped; static file URLs
    security.py   security headers (CSP without inline script), client address, access log
    csrf.py       double-submit CSRF cookie with a signed form token
    forms.py      parsing and checking form fields, one clear message per field
    learned.py    what feedback taught, shaped for the pages
    preview.py    the live preview's cards (``digest.app.candidates`` chooses the papers)
    routes/       one module per area (subscribe, confirm, manage, unsubscribe, archive,
                  feedback, health, metrics, bounce); what they share is in routes/common.py
    server.py     run(): uvicorn

Routes call ``digest.app`` for every decision (signed links are read by
``digest.app.access``, rate limits kept by ``digest.store.ratelimit``, mails made by
``digest.render.mails``); they never import each other.

Nothing in the package imports ``digest.cli`` or ``digest.scheduler``; nothing outside it
imports it except those two.
"""

from digest.web.app import create_app

__all__ = ["create_app"]
