"""Bounce reports: what a delivery status notification says, read without trusting it.
(Recording them and suppressing addresses is ``digest.store.bounces``; tying the two
together, ``digest.app.operator``.)

A report is an RFC 3464 delivery status notification (``multipart/report;
report-type=delivery-status``) read with the standard library's parser. It is tied to the
delivery it is about by, in order: the VERP envelope address it was sent to
(``delivery.return_path``, e.g. ``bounces+<delivery id>@example.org``), the Message-ID of
the original mail quoted in the report, and last the failed recipient's address. A 5.x.x
status is a hard bounce and counts toward ``delivery.bounce_limit``; a 4.x.x one is soft and
is only recorded. An abuse report (RFC 5965 ``feedback-report``) unsubscribes the address.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses

MAX_REPORT_BYTES = 10_000_000

# The Message-ID the renderer is given: "<digest.<delivery public id>@<domain>>", made by
# ``digest.domain.items.message_id`` (a test pins the two together).
_MESSAGE_ID = re.compile(r"<digest\.([0-9a-f]{32})@", re.IGNORECASE)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Report:
    """What one delivery status notification says about one recipient."""

    kind: str  # hard, soft, complaint, or none (delivered, relayed, expanded)
    status: str | None  # e.g. 5.1.1
    recipient: str | None  # Final-Recipient (or Original-Recipient)
    diagnostic: str | None
    delivery_public_id: str | None  # from the VERP address or the original Message-ID


@dataclass(frozen=True, slots=True)
class BounceResult:
    """What became of one bounce message."""

    outcome: str  # counted, suppressed, recorded, duplicate, unsubscribed, ignored, unmatched,
    # not_a_report
    detail: str
    kind: str | None = None
    status: str | None = None
    email: str | None = None
    delivery: str | None = None  # the delivery's public id

    @property
    def accepted(self) -> bool:
        """The message was understood (whether or not it changed anything)."""
        return self.outcome not in ("not_a_report", "unmatched")


# -- parsing ---------------------------------------------------------------------------


def parse_report(
    raw: bytes, return_path: str = "", envelope_recipient: str | None = None
) -> Report | None:
    """The report in ``raw``, or None when it is no delivery status or abuse report."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    report_type = (message.get_param("report-type") or "").lower()
    if message.get_content_type() != "multipart/report" or report_type not in (
        "delivery-status",
        "feedback-report",
    ):
        return None
    public_id = _verp_id(return_path, _envelope_addresses(message, envelope_recipient))
    original = _original_headers(message)
    if public_id is None and original is not None:
        public_id = _message_id_of(original.get("Message-ID", ""))
    if report_type == "feedback-report":
        recipient = None
        if original is not None:
            recipient = (getaddresses([original.get("To", "")]) or [("", "")])[0][1] or None
        return Report("complaint", None, recipient, "abuse report", public_id)
    blocks = _status_blocks(message)
    if not blocks:
        return None
    chosen = next(
        (b for b in blocks[1:] if (b.get("Action") or "").strip().lower() == "failed"),
        blocks[-1],
    )
    action = (chosen.get("Action") or "").strip().lower()
    status = _status_code(chosen.get("Status") or "")
    if action in ("delivered", "relayed", "expanded"):
        kind = "none"
    elif status and status.startswith("5") and action == "failed":
        kind = "hard"
    elif status and status.startswith(("4", "5")):
        kind = "soft"  # delayed, or an odd pairing: recorded, never counted
    else:
        kind = "soft" if action == "delayed" else "none"
    recipient = _address_field(chosen.get("Final-Recipient")) or _address_field(
        chosen.get("Original-Recipient")
    )
    diagnostic = " ".join((chosen.get("Diagnostic-Code") or "").split()) or None
    return Report(kind, status, recipient, diagnostic, public_id)


def _status_blocks(message: Message) -> list[Message]:
    """The per-message block then the per-recipient blocks of the delivery-status part."""
    for part in message.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return [p for p in payload if isinstance(p, Message)]
            if isinstance(payload, str):  # some parsers leave it as text: read the blocks
                parser = email.parser.HeaderParser()
                return [parser.parsestr(b) for b in re.split(r"\r?\n\s*\r?\n", payload) if b]
    return []


def _original_headers(message: Message) -> Message | None:
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True) or b""
            return BytesHeaderParser().parsebytes(data)
    return None


def _envelope_addresses(message: Message, given: str | None) -> list[str]:
    """Where the report was delivered to: the caller's envelope recipient first, then the
    headers mail systems use to carry it."""
    found = [given] if given else []
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        for value in message.get_all(header, []):
            found.extend(addr for _, addr in getaddresses([str(value)]) if addr)
    return found


def _verp_id(return_path: str, addresses: list[str]) -> str | None:
    if not return_path:
        return None
    local, _, domain = return_path.rpartition("@")
    before, _, after = local.partition("{id}")
    pattern = re.compile(
        rf"{re.escape(before)}([A-Za-z0-9]+){re.escape(after)}@{re.escape(domain)}",
        re.IGNORECASE,
    )
    for address in addresses:
        match = pattern.fullmatch(address.strip())
        if match:
            return match.group(1).lower()
    return None


def _message_id_of(value: str) -> str | None:
    match = _MESSAGE_ID.search(value or "")
    return match.group(1).lower() if match else None


def _status_code(value: str) -> str | None:
    match = _STATUS.search(value)
    return ".".join(match.groups()) if match else None


def _address_field(value: str | None) -> str | None:
    # "rfc822; someone@example.org" (RFC 3464 §2.3.2)
    if not value:
        return None
    address = str(value).partition(";")[2].strip() or str(value).strip()
    address = address.strip("<> ")
    return address if "@" in address else None
