"""Colour contrast, computed from the stylesheets' own values (WCAG 2.1 relative luminance).

The pages' colours are read out of templates/web/static/app.css (its custom properties and a
few rules), the mails' out of their templates: the digest's <style> block (light, and dark
through its ``prefers-color-scheme`` rules) after the renderer's CSS inlining, and the
transactional mails' inline styles. Each text colour is checked against the background it
sits on (4.5:1, WCAG 1.4.3) and each field's border and the focus ring against the field
(3:1, WCAG 1.4.11), so a later colour change that breaks contrast fails here.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.render.templates import inline_template_css
from digest.render.text import HIGHLIGHT_STYLE

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
APP_CSS = TEMPLATES / "web" / "static" / "app.css"
TEXT = 4.5  # WCAG 1.4.3, normal-size text
UI = 3.0  # WCAG 1.4.11, the edges of controls and focus indicators


# -- WCAG 2.1 arithmetic ---------------------------------------------------------------------


def rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.strip().lower()
    if colour in ("white", "#fff"):
        return (255, 255, 255)
    found = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", colour)
    assert found, f"not a hex colour: {colour!r}"
    digits = found.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    r, g, b = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return (r, g, b)


def luminance(colour: str) -> float:
    """Relative luminance, WCAG 2.1 (sRGB, 0.04045 threshold)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_arithmetic_matches_known_ratios() -> None:
    assert ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    # The audit's numbers for the colours it found failing.
    assert round(ratio("#c9ced9", "#ffffff"), 2) == 1.58
    assert round(ratio("#6b7280", "#f3f4f6"), 2) == 4.39
    assert round(ratio("#8a919e", "#ffffff"), 2) == 3.17


# -- the pages: app.css ----------------------------------------------------------------------


def _css_without_comments(css: str) -> str:
    return re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)


def css_variables(css: str) -> dict[str, str]:
    root = re.search(r":root\s*\{(.*?)\}", _css_without_comments(css), re.DOTALL)
    assert root, "no :root block"
    return dict(re.findall(r"--([\w-]+)\s*:\s*(#[0-9a-fA-F]{3,6})\b", root.group(1)))


def _resolve(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"var\(--([\w-]+)\)", lambda m: variables.get(m.group(1), m.group()), value)


def css_rule(css: str, selector: str) -> dict[str, str]:
    """The declarations of the top-level rule whose selector list includes ``selector``."""
    css = _css_without_comments(css)
    variables = css_variables(css)
    depth = 0
    start = 0
    for match in re.finditer(r"[{}]", css):
        if match.group() == "{":
            if depth == 0:
                head = css[start : match.start()]
                selectors = [s.strip() for s in head.split(",")]
                if selector in selectors:
                    end = css.index("}", match.end())
                    body = css[match.end() : end]
                    declared = dict(
                        (k.strip(), v.strip())
                        for k, _, v in (d.partition(":") for d in body.split(";"))
                        if k.strip()
                    )
                    return {
                        k: re.sub(
                            r"var\(--([\w-]+)\)", lambda m: variables.get(m.group(1), m.group()), v
                        )
                        for k, v in declared.items()
                    }
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                start = match.end()
    raise AssertionError(f"no rule for {selector!r} in app.css")


def first_colour(value: str) -> str:
    found = re.search(r"#[0-9a-fA-F]{3,6}\b", value)
    assert found, value
    return found.group()


def page_pairs() -> list[tuple[str, str, str, float]]:
    """(what, foreground, background, needed) for the pages."""
    css = APP_CSS.read_text()
    v = css_variables(css)
    placeholder = css_rule(css, "input::placeholder")["color"]
    primary = css_rule(css, ".btn-primary")
    warn = css_rule(css, ".notice-warn")
    ok = css_rule(css, ".notice-ok")
    field = css_rule(css, "textarea")
    focus = css_rule(css, ":focus-visible")
    pairs = [
        ("text on the page", v["text"], v["bg"], TEXT),
        ("text in a panel", v["text"], v["surface"], TEXT),
        ("muted text in a panel", v["muted"], v["surface"], TEXT),
        ("muted text on the page (lead)", v["muted"], v["bg"], TEXT),
        ("the preview's summary", v["muted"], v["accent-soft"], TEXT),
        ("hints and fine print in a panel", v["subtle"], v["surface"], TEXT),
        ("the footer on the page", v["subtle"], v["bg"], TEXT),
        ("links", v["accent-dark"], v["surface"], TEXT),
        ("links on the page", v["accent-dark"], v["bg"], TEXT),
        ("chips", v["accent-dark"], v["accent-soft"], TEXT),
        ("field errors", v["danger"], v["surface"], TEXT),
        ("placeholders", first_colour(placeholder), v["surface"], TEXT),
        (
            "the main button",
            first_colour(primary["color"]),
            first_colour(primary["background"]),
            TEXT,
        ),
        ("the warning notice", first_colour(warn["color"]), first_colour(warn["background"]), TEXT),
        ("the saved notice", first_colour(ok["color"]), first_colour(ok["background"]), TEXT),
        ("a field's border", first_colour(field["border"]), v["surface"], UI),
        ("a field's border on the page", first_colour(field["border"]), v["bg"], UI),
        ("the focus outline", first_colour(focus["outline"]), v["surface"], UI),
        ("the focus outline on the page", first_colour(focus["outline"]), v["bg"], UI),
        ("highlighted words", v["text"], v["mark"], TEXT),
    ]
    return pairs


@pytest.mark.parametrize("pair", page_pairs(), ids=lambda p: p[0])
def test_page_colours_meet_wcag_aa(pair: tuple[str, str, str, float]) -> None:
    what, fg, bg, needed = pair
    assert ratio(fg, bg) >= needed, f"{what}: {fg} on {bg} is {ratio(fg, bg):.2f}:1 < {needed}"


# -- the mails -------------------------------------------------------------------------------


def _style(text: str) -> dict[str, str]:
    return {
        k.strip().lower(): v.strip().replace("!important", "").strip()
        for k, _, v in (d.partition(":") for d in text.split(";"))
        if k.strip()
    }


def dark_rules(template: str) -> dict[str, dict[str, str]]:
    """class -> declarations of the template's ``prefers-color-scheme: dark`` block."""
    block = re.search(r"prefers-color-scheme:\s*dark\)\s*\{(.*?)\n\}", template, re.DOTALL)
    if not block:
        return {}
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", block.group(1)):
        for selector in selectors.split(","):
            for name in re.findall(r"\.([\w-]+)", selector):
                rules.setdefault(name, {}).update(_style(body))
    return rules


class _Walk(HTMLParser):
    """Each piece of text: its colour on its background (both inherited from the ancestors
    when not the element's own), except in hidden elements."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link"})

    def __init__(self, dark: dict[str, dict[str, str]] | None) -> None:
        super().__init__()
        self.dark = dark
        self.stack: list[tuple[str, str, str, bool]] = [("root", "#000000", "#ffffff", False)]
        self.pairs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = dict(attrs)
        style = _style(given.get("style") or "")
        classes = (given.get("class") or "").split()
        if self.dark is not None:
            for name in classes:
                style.update(self.dark.get(name, {}))
        _, colour, background, hidden = self.stack[-1]
        own_colour = style.get("color")
        own_background = style.get("background-color") or style.get("background")
        hidden = hidden or style.get("display") == "none"
        if own_colour and own_colour != "inherit":
            colour = first_colour(own_colour)
        if own_background and re.search(r"#[0-9a-fA-F]{3,6}", own_background):
            background = first_colour(own_background)
        if tag in self.VOID:
            return
        name = tag + "".join(f".{c}" for c in classes)
        self.stack.append((name, colour, background, hidden))

    def handle_data(self, data: str) -> None:
        name, colour, background, hidden = self.stack[-1]
        if data.strip() and not hidden and name not in ("style", "title"):
            self.pairs.append((name, colour, background))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        while len(self.stack) > 1:
            if self.stack.pop()[0].split(".")[0] == tag:
                break


def mail_pairs(name: str, *, dark: bool) -> list[tuple[str, str, str]]:
    source = (TEMPLATES / "email" / name).read_text()
    walk = _Walk(dark_rules(source) if dark else None)
    inlined = inline_template_css(source, name)
    walk.feed(re.sub(r"\{%.*?%\}|\{#.*?#\}", "", inlined, flags=re.DOTALL))  # not text
    assert walk.pairs, name
    return walk.pairs


MAILS = [
    ("digest.html", False),
    ("digest.html", True),
    ("confirm.html", False),
    ("manage_link.html", False),
]


@pytest.mark.parametrize(
    ("name", "dark"), MAILS, ids=[f"{n}-{'dark' if d else 'light'}" for n, d in MAILS]
)
def test_mail_colours_meet_wcag_aa(name: str, dark: bool) -> None:
    failing = [
        f"{what}: {fg} on {bg} is {ratio(fg, bg):.2f}:1"
        for what, fg, bg in mail_pairs(name, dark=dark)
        if ratio(fg, bg) < TEXT
    ]
    assert failing == [], failing


def test_the_mail_checks_see_the_colours_the_audit_named() -> None:
    """The walk finds the grey lines on the page's background and the main button."""
    light = {what: (fg, bg) for what, fg, bg in mail_pairs("digest.html", dark=False)}
    assert light["p.matched"][1] == light["p.footer-text"][1] == "#f3f4f6"
    assert light["p.section-note"][1] == "#f3f4f6"
    dark = {what: (fg, bg) for what, fg, bg in mail_pairs("digest.html", dark=True)}
    assert dark["a.btn-main"][0].lower() in ("#ffffff", "#fff")
    assert dark["a.btn-main"][1] != light["a.btn"][1]  # its own background, checked
    assert light["a.btn-main"][0].lower() in ("#ffffff", "#fff")


def test_highlights_in_mails_meet_wcag_aa() -> None:
    style = _style(HIGHLIGHT_STYLE)
    background = first_colour(style["background-color"])
    for text in ("#111827", "#374151", "#1f2937"):  # titles, abstracts, TL;DR on highlights
        assert ratio(text, background) >= TEXT
