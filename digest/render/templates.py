"""CSS inlined into a Jinja template's source once, when the renderer loads it."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser

from digest.errors import ConfigError

log = logging.getLogger(__name__)


class TemplateError(ConfigError):
    """The email templates are missing or cannot be prepared."""


_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"<!--JJB(\d{5})Q-->|JJV(\d{5})Q")
_ATTRIBUTE_GAP = re.compile(r'(?<=") (?=[A-Za-z_:][-A-Za-z0-9_:.]*=")')
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)


def inline_template_css(source: str, name: str = "template") -> str:
    """The Jinja ``source`` with its <style> rules inlined as style="" attributes.

    Jinja tags are swapped for inert placeholders around premailer and put back after; a tag
    that premailer moved or mangled (a block tag inside an attribute, say) is an error.
    """
    saved: list[str] = []

    def protect(match: re.Match[str]) -> str:
        saved.append(match.group())
        index = len(saved) - 1
        if match.group().startswith("{{"):
            return f"JJV{index:05d}Q"
        return f"<!--JJB{index:05d}Q-->"

    # Imported here: with the inlined templates cached (below), a process never needs it
    # (premailer, cssutils and requests are a third of a second to import).
    from premailer import Premailer

    protected = _JINJA_TAG.sub(protect, source)
    premailer = Premailer(
        protected,
        keep_style_tags=False,  # drop the inlined rules; leftovers (@media) stay in <style>
        strip_important=False,  # the @media overrides need their !important
        disable_validation=True,  # cssutils does not know mso-* or color-scheme properties
        remove_classes=False,  # the @media rules select by class
        allow_network=False,
        disable_link_rewrites=True,
        align_floating_images=False,
        cssutils_logging_level=logging.CRITICAL,
    )
    inlined = premailer.transform(pretty_print=False)
    # A line break between a tag's attributes (where HTML reads it as the space it replaces):
    # with their inlined styles some lines were over 2,000 characters, and a mail whose lines
    # stay under 998 octets goes as 7bit, with no encoding to pay for (digest/render/wire.py).
    # A raw '"' in the output only delimits an attribute (Jinja escapes every other), and tags
    # are still placeholders here, so nothing else can match.
    inlined = _ATTRIBUTE_GAP.sub("\n", inlined)
    for style in _STYLE_BLOCK.findall(inlined):
        if not style.isascii():
            raise TemplateError(
                f"{name}: a non-ASCII character in <style>; write it as a CSS escape "
                "(\\2014 for an em dash): the mail's HTML goes as ASCII, and a character "
                "reference is not read inside <style>"
            )
    # The template's own text as ASCII (premailer writes &nbsp; and &middot; as characters):
    # with the values the renderer puts in also as ASCII (``escape_ascii_output``),
    # the page is sent as it is rendered (a page with a single other character took ~120
    # µs to encode, an ASCII one 5). A numeric reference is what the part held anyway.
    inlined = inlined.encode("ascii", "xmlcharrefreplace").decode("ascii")
    if "{{" in inlined or "{%" in inlined:
        raise TemplateError(f"{name}: a Jinja tag survived outside a placeholder")
    restored = [0] * len(saved)

    def restore(match: re.Match[str]) -> str:
        index = int(match.group(1) or match.group(2))
        if index >= len(saved):
            raise TemplateError(f"{name}: unknown placeholder {match.group()}")
        restored[index] += 1
        return saved[index]

    result = _PLACEHOLDER.sub(restore, inlined)
    lost = [saved[i] for i, count in enumerate(restored) if count != 1]
    if lost:
        raise TemplateError(
            f"{name}: CSS inlining moved or mangled Jinja tags {lost[:3]}; block tags must "
            "sit between elements or in text, never inside attributes or <style>"
        )
    return result


class _InliningLoader(jinja2.FileSystemLoader):
    """Loads templates from disk; ``.html`` ones come back with their CSS inlined.

    With a ``cache_dir``, an inlined template is kept there under a name made from what it
    was made of (the template's source, this module's code, the versions of premailer,
    cssutils and lxml), so every process after the first that loads the same template reads it
    instead of running premailer, or importing it. Written whole or not at all (a temporary
    file renamed into place), so processes starting together never read half of one; a
    folder that cannot be written only means inlining every time."""

    def __init__(self, searchpath: str, cache_dir: Path | None = None) -> None:
        super().__init__(searchpath)
        self.cache_dir = cache_dir

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html"):
            source = self._inlined(source, template)
        return source, filename, uptodate

    def _inlined(self, source: str, name: str) -> str:
        if self.cache_dir is None:
            return inline_template_css(source, name)
        path = self.cache_dir / f"{Path(name).stem}-{_inlining_key(source)}.html"
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            pass
        except (OSError, UnicodeError) as exc:
            log.warning("cannot read the inlined template %s (%s); inlining again", path, exc)
        inlined = inline_template_css(source, name)
        temporary: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, made = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            os.fchmod(descriptor, 0o644)  # readable by the web app and the workers alike
            temporary = Path(made)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(inlined)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("cannot keep the inlined template in %s: %s", self.cache_dir, exc)
            if temporary is not None:
                temporary.unlink(missing_ok=True)
        return inlined


def _inlining_key(source: str) -> str:
    """What an inlined template is made of: its source, the inliner (this module), and the
    versions of premailer and what it parses and serialises with (cssutils, lxml)."""
    made_of = hashlib.sha256(source.encode("utf-8"))
    made_of.update(Path(__file__).read_bytes())
    for package in ("premailer", "cssutils", "lxml"):
        made_of.update(f"\0{package}={metadata.version(package)}".encode())
    return made_of.hexdigest()[:32]


class FragmentCache(Extension):
    """``{% cache a, b %}…{% endcache %}``: the block is rendered once per key (the values
    named) and looked up after. What is the same in every reader's mail (a paper's authors,
    its links, its wrapped abstract) is made once per day instead of once per mail.

    A cached block may use only what its key names (or what follows from it): anything else
    would be frozen at its first value. Output is byte-identical to the uncached block.

    The tag becomes plain template code, roughly ``{% set f = key | fragment %}{% if f is
    none %}{% set f %}…{% endset %}{{ f | keep(key) }}{% else %}{{ f }}{% endif %}``: a
    filter is called directly, where a call block made a macro and went through
    ``Context.call`` for every card of every mail (3% of a sending worker's time).
    """

    tags: ClassVar[set[str]] = {"cache"}
    LIMIT = 20_000  # entries; emptied when full (a day's papers need a few thousand)
    _GET, _KEEP = "_fragment_cache_get", "_fragment_cache_keep"

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        self.fragments: dict[tuple[Any, ...], Any] = {}
        self._blocks = 0
        environment.filters[self._GET] = self.fragments.get
        environment.filters[self._KEEP] = self._keep

    def parse(self, parser: Parser) -> list[nodes.Node]:
        lineno = next(parser.stream).lineno
        key = [parser.parse_expression()]
        while parser.stream.skip_if("comma"):
            key.append(parser.parse_expression())
        body = parser.parse_statements(("name:endcache",), drop_needle=True)
        self._blocks += 1
        name = f"_fragment_{self._blocks}"  # a name of its own per block
        found = nodes.Name(name, "load")
        made = [
            nodes.AssignBlock(nodes.Name(name, "store"), None, body),
            nodes.Output([self._filter(found, self._KEEP, key)]),
        ]
        fetch = nodes.Assign(nodes.Name(name, "store"), self._filter(None, self._GET, key))
        missing = nodes.Test(found, "none", [], [], None, None)
        kept = nodes.If(missing, made, [], [nodes.Output([found])])
        return [fetch.set_lineno(lineno), kept.set_lineno(lineno)]

    @staticmethod
    def _filter(value: nodes.Expr | None, name: str, key: list[nodes.Expr]) -> nodes.Filter:
        tuple_ = nodes.Tuple(key, "load")
        if value is None:  # the key itself is filtered
            return nodes.Filter(tuple_, name, [], [], None, None)
        return nodes.Filter(value, name, [tuple_], [], None, None)

    def _keep(self, fragment: Any, key: tuple[Any, ...]) -> Any:
        if len(self.fragments) >= self.LIMIT:
            self.fragments.clear()
        self.fragments[key] = fragment  # a racing thread may store the same: no harm
        return fragment


def escape_ascii_output(value: Any) -> str:
    """What ``markupsafe.escape(value)`` holds, as a plain string, with every character
    outside ASCII as a numeric character reference (``&#233;``).

    Jinja writes every value of an autoescaped template through ``escape``, which makes each
    a ``Markup`` object (its constructor is Python code): some 230 of them a digest, 5% of a
    sending worker's CPU. The rendered page is a joined string, so those objects are never
    needed; the characters are the same (``&<>"'`` as ``&amp; &lt; &gt; &#34; &#39;``;
    anything with ``__html__`` as it says it is). The references are what the mail's HTML
    part holds (:func:`digest.render.wire.html_octets`), read by HTML as the character in
    text and attribute values alike; the template's own text is ASCII too
    (:func:`inline_template_css`), so a whole page is ASCII and goes out without a pass over
    its characters (a page with a single other character in it took ~120 µs to encode, an
    ASCII one 5). One function, not an escape and a conversion: it runs for every value."""
    if type(value) is not str:
        html = getattr(value, "__html__", None)
        if html is not None:
            value = str(html())
            return value if value.isascii() else _references(value)
        value = str(value)
    # str.replace returns the string itself when there is nothing to replace: a value
    # without any of the five is scanned five times and not copied.
    value = (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
    return value if value.isascii() else _references(value)


def _references(text: str) -> str:
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_values_as_text(template: jinja2.Template) -> jinja2.Template:
    """``template`` (an HTML one) with its values written by :func:`escape_ascii_output`.

    Jinja's compiled template looks ``escape`` up among its module's globals each time it
    writes a value (and nowhere else: a ``{% set %}`` block's text is still made ``Markup``
    by its own code). Left as it is, with a warning, if this Jinja compiles otherwise: the
    page is then still right, its other characters made references when it is measured for
    the wire, only slower."""
    namespace = template.root_render_func.__globals__
    if namespace.get("escape") is not jinja2.runtime.escape:
        log.warning("%s: this Jinja writes values otherwise; left as it is", template.name)
        return template
    namespace["escape"] = escape_ascii_output
    return template
