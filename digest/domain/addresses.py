"""Email addresses: checking what someone typed, and the forms an address takes on the wire.

An address is stored as its owner typed it, normalised (``user@bücher.de``). On the wire:

- a non-ASCII domain goes as its ASCII (IDNA, "punycode") form in the envelope and the To
  header (``user@xn--bcher-kva.de``): every mail server takes that;
- a non-ASCII part before the @ (``jörg@…``) can only travel where the server offers
  SMTPUTF8 (RFC 6531), with the header in UTF-8 (RFC 6532); where it is not offered the
  message cannot be sent, which the mailer reports as a permanent failure of that message.

Pure functions; email-validator does the parsing and the IDNA conversion.
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from digest.errors import ValidationError

MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 (a path of 256 octets, less the angle brackets)
MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1, in octets


def normalise(raw: str) -> tuple[str, str]:
    """(address as stored, key for uniqueness); ``ValidationError`` says what is wrong."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError("an email address is required")
    if len(text.encode("utf-8")) > MAX_ADDRESS:
        raise ValidationError(
            f"that email address is too long ({len(text.encode('utf-8'))} octets; "
            f"mail servers accept at most {MAX_ADDRESS})"
        )
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(f"{text!r} is not a valid email address: {exc}") from None
    octets = len(checked.local_part.encode("utf-8"))
    if octets > MAX_LOCAL_PART:
        raise ValidationError(
            f"{text!r} is not a valid email address: the part before the @ is {octets} "
            f"octets long, and mail servers accept at most {MAX_LOCAL_PART} (RFC 5321)"
        )
    address = checked.normalized
    return address, address.casefold()


@lru_cache(maxsize=4096)
def wire_form(address: str) -> tuple[str, bool]:
    """(the address for the envelope and the To header, whether it needs SMTPUTF8).

    ASCII addresses come back as they are, at no cost; a non-ASCII domain as its IDNA form.
    """
    if address.isascii():
        return address, False
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return address, True  # stored before it was checked: let the server judge it
    if checked.ascii_email:
        return checked.ascii_email, False
    return f"{checked.local_part}@{checked.ascii_domain}", True
