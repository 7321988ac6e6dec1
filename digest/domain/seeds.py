"""Seed a profile from papers a reader already likes: arXiv ids, BibTeX, CSL-JSON or RIS.

``read_seed(data, filename)`` finds the arXiv ids in what a reader pastes or uploads:

- a plain list: ids separated by spaces, commas or new lines, in any usual spelling
  (``2104.12255``, ``arXiv:2104.12255v2``, ``hep-th/9901001``, an arxiv.org URL, the arXiv
  DOI ``10.48550/arXiv.2104.12255``);
- BibTeX (``.bib``, as Zotero, Better BibTeX, Google Scholar or arXiv itself export it):
  ``eprint`` with ``archivePrefix``/``eprinttype`` arXiv, or an arXiv URL, DOI or
  ``arXiv:<id>`` in the ``url``, ``doi``, ``journal``, ``number``, ``note`` … fields;
- CSL-JSON (Zotero's "CSL JSON" export): the same clues in ``URL``, ``DOI``, ``number``…;
- RIS (Zotero's "RIS" export): the same clues in ``UR``, ``DO``, ``L1``, ``M3``, ``N1``….

Entries without an arXiv id are reported (by title), not fatal; a file that cannot be read
at all raises ``SeedError`` with a message for the reader. ``digest.app.feedback`` then
looks the ids up and fetches the missing ones from the arXiv API. Pure: no I/O.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from digest.domain.text import parse_arxiv_id
from digest.errors import DigestError

log = logging.getLogger(__name__)

MAX_SEED_BYTES = 2 * 1024 * 1024
MAX_SEED_IDS = 200  # one arXiv API call; more is not a seed, it is a library

_NEW = r"\d{4}\.\d{4,5}"
_OLD_STYLE = r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}"
_ID = rf"(?:{_NEW}|{_OLD_STYLE})(?:v\d+)?"
# The clues an entry's text may hold; each captures the id.
_CLUES = (
    re.compile(rf"10\.48550/arxiv\.({_ID})", re.IGNORECASE),
    re.compile(rf"arxiv\.org/(?:abs|pdf|html)/({_ID})", re.IGNORECASE),
    re.compile(rf"\barxiv\s*:\s*({_ID})", re.IGNORECASE),
    re.compile(rf"\barxiv\s+(?:preprint\s+)?(?:arxiv\s*:\s*)?({_NEW})", re.IGNORECASE),
)
_BARE = re.compile(rf"^\s*({_ID})\s*$")


class SeedError(DigestError):
    """A seed file that cannot be read; the message is meant for the reader."""


@dataclass
class SeedList:
    ids: list[str] = field(default_factory=list)  # canonical arXiv ids, first mention first
    skipped: list[str] = field(default_factory=list)  # entries or words with no arXiv id
    format: str = "list"  # list, bibtex, csl-json, ris

    def add(self, raw: str | None) -> bool:
        parsed = parse_arxiv_id(raw)
        if parsed is None:
            return False
        if parsed[0] not in self.ids:
            self.ids.append(parsed[0])
        return True


def read_seed(data: bytes | str, filename: str | None = None) -> SeedList:
    """The arXiv ids in ``data``; raises ``SeedError`` for an unreadable or empty file."""
    if isinstance(data, bytes):
        if len(data) > MAX_SEED_BYTES:
            raise SeedError(f"the file is larger than {MAX_SEED_BYTES // 1024 // 1024} MB")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")  # old BibTeX files; ids are ASCII either way
    else:
        text = data
    kind = _kind(text, (filename or "").lower())
    found = SeedList(format=kind)
    if kind == "csl-json":
        _read_csl_json(text, found)
    elif kind == "bibtex":
        _read_bibtex(text, found)
    elif kind == "ris":
        _read_ris(text, found)
    else:
        _read_list(text, found)
    if not found.ids:
        what = {"list": "the list", "bibtex": "the BibTeX file", "ris": "the RIS file"}.get(
            kind, "the CSL-JSON file"
        )
        raise SeedError(
            f"no arXiv ids found in {what}: give ids like 2104.12255, arXiv URLs, or "
            "entries with an arXiv eprint, URL or DOI (10.48550/arXiv.…)"
        )
    if len(found.ids) > MAX_SEED_IDS:
        found.skipped.append(f"{len(found.ids) - MAX_SEED_IDS} more ids (at most {MAX_SEED_IDS})")
        found.ids = found.ids[:MAX_SEED_IDS]
    return found


def _kind(text: str, filename: str) -> str:
    stripped = text.lstrip()
    if filename.endswith(".json") or stripped.startswith(("[", "{")):
        return "csl-json"
    if filename.endswith((".bib", ".bibtex")) or re.search(r"^\s*@\w+\s*[{(]", text, re.M):
        return "bibtex"
    if filename.endswith(".ris") or re.search(r"^TY  - ", text, re.M):
        return "ris"
    return "list"


def _clues(values: Iterable[str]) -> Iterator[str]:
    for value in values:
        for pattern in _CLUES:
            for match in pattern.finditer(value):
                yield match.group(1)


def _take_first(found: SeedList, candidates: Iterable[str]) -> bool:
    return any(found.add(candidate) for candidate in candidates)


def _label(title: str | None, fallback: str) -> str:
    title = " ".join((title or "").replace("{", "").replace("}", "").split())
    return f'"{title[:80]}"' if title else fallback


# -- plain list ---------------------------------------------------------------------------


def _read_list(text: str, found: SeedList) -> None:
    text = re.sub(r"(?m)(^|\s)#.*$", " ", text)  # "# papers I like": a comment
    for word in re.split(r"[\s,;]+", text):
        if not word:
            continue
        if not (found.add(word) or _take_first(found, _clues([word]))):
            found.skipped.append(f"{word[:60]!r} is not an arXiv id")


# -- BibTeX -------------------------------------------------------------------------------

_ENTRY = re.compile(r"@\s*(\w+)\s*([{(])")
_FIELD = re.compile(r"\s*([A-Za-z][\w:.-]*)\s*=\s*")


def bibtex_entries(text: str) -> list[dict[str, str]]:
    """Each entry's fields (names lower-cased, values without their outer braces or quotes).

    ``@comment``, ``@string`` and ``@preamble`` are skipped. Raises ``SeedError`` for an
    entry whose braces never close.
    """
    entries: list[dict[str, str]] = []
    position = 0
    while (match := _ENTRY.search(text, position)) is not None:
        kind = match.group(1).lower()
        close = "}" if match.group(2) == "{" else ")"
        start = match.end()
        end = _matching(text, start, match.group(2), close)
        if end < 0:
            line = text.count("\n", 0, match.start()) + 1
            raise SeedError(
                f"the BibTeX entry starting on line {line} is not closed: a {close!r} is missing"
            )
        position = end + 1
        if kind in ("comment", "string", "preamble"):
            continue
        body = text[start:end]
        key, _, rest = body.partition(",")
        fields = {"@type": kind, "@key": key.strip()}
        fields.update(_bibtex_fields(rest))
        entries.append(fields)
    return entries


def _matching(text: str, start: int, opening: str, closing: str) -> int:
    """Index of the bracket closing the one just before ``start``, or -1.

    Braces nest; ``\\{`` is an escaped brace; an entry opened with "(" closes at the first
    ")" outside braces that balances it.
    """
    braces = 1 if opening == "{" else 0
    parens = 1 if opening == "(" else 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            braces += 1
        elif char == "}":
            braces -= 1
            if braces < 0:
                return -1
            if braces == 0 and closing == "}":
                return index
        elif closing == ")" and braces == 0 and char in "()":
            parens += 1 if char == "(" else -1
            if parens == 0:
                return index
        index += 1
    return -1


def _bibtex_fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    position = 0
    while (match := _FIELD.match(body, position)) is not None:
        name = match.group(1).lower()
        position = match.end()
        value, position = _bibtex_value(body, position)
        fields[name] = value
        comma = body.find(",", position)
        if comma < 0:
            break
        position = comma + 1
    return fields


def _bibtex_value(body: str, position: int) -> tuple[str, int]:
    """One value: {…} (nested), "…", a bare word or number, joined by # when concatenated."""
    parts: list[str] = []
    while position < len(body):
        char = body[position]
        if char == "{":
            end = _matching(body, position + 1, "{", "}")
            end = len(body) if end < 0 else end
            parts.append(body[position + 1 : end])
            position = end + 1
        elif char == '"':
            end = body.find('"', position + 1)
            end = len(body) if end < 0 else end
            parts.append(body[position + 1 : end])
            position = end + 1
        else:
            word = re.match(r"[^,#\s}]*", body[position:])
            parts.append(word.group() if word else "")
            position += len(parts[-1]) or 1
        while position < len(body) and body[position].isspace():
            position += 1
        if position < len(body) and body[position] == "#":
            position += 1
            while position < len(body) and body[position].isspace():
                position += 1
            continue
        break
    return "".join(parts).strip(), position


def _read_bibtex(text: str, found: SeedList) -> None:
    entries = bibtex_entries(text)
    if not entries:
        raise SeedError("this looks like BibTeX, but no @article{…} or similar entry was found")
    for entry in entries:
        if not _bibtex_id(entry, found):
            found.skipped.append(_label(entry.get("title"), entry["@key"] or "an entry"))


def _bibtex_id(entry: Mapping[str, str], found: SeedList) -> bool:
    prefix = (entry.get("archiveprefix") or entry.get("eprinttype") or "").strip().lower()
    eprint = entry.get("eprint", "")
    arxiv = prefix == "arxiv" or (not prefix and parse_arxiv_id(eprint) is not None)
    if eprint and arxiv and found.add(eprint):
        return True
    # Zotero puts the id in url/doi/number; Google Scholar in journal ("arXiv preprint …").
    wanted = ("url", "doi", "journal", "journaltitle", "number", "note", "howpublished", "eprint")
    return _take_first(found, _clues(entry.get(name, "") for name in wanted))


# -- CSL-JSON -----------------------------------------------------------------------------


def _read_csl_json(text: str, found: SeedList) -> None:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError(
            f"the file is not valid CSL-JSON: {exc.msg} on line {exc.lineno}, column {exc.colno}"
        ) from None
    items = (
        data if isinstance(data, list) else data.get("items") if isinstance(data, dict) else None
    )
    if isinstance(data, dict) and items is None:
        items = [data]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise SeedError("the file is JSON, but not CSL-JSON: expected a list of items")
    for item in items:
        values = [
            str(item.get(name) or "")
            for name in (
                "URL",
                "DOI",
                "number",
                "archive_location",
                "note",
                "id",
                "container-title",
            )
        ]
        if not _take_first(found, _clues(values)):
            found.skipped.append(_label(item.get("title"), str(item.get("id") or "an item")))


# -- RIS ----------------------------------------------------------------------------------

_RIS_LINE = re.compile(r"^([A-Z][A-Z0-9])  -(?: (.*))?$")


def _read_ris(text: str, found: SeedList) -> None:
    record: list[tuple[str, str]] = []
    records = 0
    for raw in text.splitlines():
        match = _RIS_LINE.match(raw.rstrip())
        if match is None:
            continue
        tag, value = match.group(1), (match.group(2) or "").strip()
        if tag == "TY":
            record = []
        record.append((tag, value))
        if tag == "ER":
            records += 1
            _ris_record(record, found)
            record = []
    if record:  # a last record without its ER line
        records += 1
        _ris_record(record, found)
    if not records:
        raise SeedError("this looks like RIS, but no record (TY  - … ER  -) was found")


def _ris_record(record: list[tuple[str, str]], found: SeedList) -> None:
    clues = [
        value
        for tag, value in record
        if tag in ("UR", "DO", "L1", "L2", "M3", "N1", "JO", "T2", "AN", "SN")
    ]
    if not _take_first(found, _clues(clues)):
        title = next((value for tag, value in record if tag in ("TI", "T1")), None)
        found.skipped.append(_label(title, "a record"))
