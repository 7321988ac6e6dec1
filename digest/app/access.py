"""What a signed link lets its holder do, checked in one place.

Every link is a token from :mod:`digest.tokens` (one salt per purpose, so a token made for one
purpose fails as "tampered" for any other) or, for a new address, from
:class:`AddressTokens` here. The checks on top of the signature:

- manage and confirm tokens carry the subscriber's token version: raising it ("sign out
  everywhere", an address change) revokes every such link sent so far;
- feed tokens carry it too (so "sign out everywhere" revokes a feed URL) but never expire:
  feed readers poll for years;
- confirm and new-address tokens expire after ``web.confirm_days``;
- unsubscribe, archive and feedback tokens never expire and are not revoked, so the links in
  old mails keep working (a feedback link therefore never leads to the preferences page: it
  offers to mail a fresh link, as the unsubscribe page does);
- a token for a subscriber who has since been deleted is "unknown".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digest.domain import addresses
from digest.domain.tokens import TokenData, TokenError, Tokens
from digest.models import Paper
from digest.store import Session, digests, outbox, papers, subscribers
from digest.store.outbox import Stored, stored
from digest.store.subscribers import Subscriber

MAX_TOKEN_CHARS = 400

# Status code and a short headline per reason; pages explain each in full.
REASONS = {
    "tampered": 400,
    "expired": 410,
    "revoked": 410,
    "unknown": 404,
}


class LinkProblem(Exception):
    """A link that cannot be used: tampered, expired, revoked or unknown."""

    def __init__(self, reason: str, purpose: str, token: str = "") -> None:
        super().__init__(f"{purpose} link {reason}")
        self.reason = reason
        self.purpose = purpose
        self.token = token  # kept so an expired confirm link can offer a resend

    @property
    def status(self) -> int:
        return REASONS[self.reason]


def _read(tokens: Tokens, purpose: str, token: str, max_age: float | None = None) -> TokenData:
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise LinkProblem("tampered", purpose, token)
    try:
        return tokens.read(purpose, token, max_age=max_age)
    except TokenError as exc:
        raise LinkProblem(exc.reason, purpose, token) from None


def _subscriber(session: Session, public_id: str, purpose: str, token: str) -> Subscriber:
    found = subscribers.by_public_id(session, public_id)
    if found is None:
        raise LinkProblem("unknown", purpose, token)
    return found


def _current(
    session: Session, tokens: Tokens, purpose: str, token: str, max_age: float | None = None
) -> Subscriber:
    """The subscriber of a link that stops working when they sign out everywhere."""
    data = _read(tokens, purpose, token, max_age)
    person = _subscriber(session, data.public_id, purpose, token)
    if data.version != person.token_version:
        raise LinkProblem("revoked", purpose, token)
    return person


def manage(session: Session, tokens: Tokens, token: str) -> Subscriber:
    return _current(session, tokens, "manage", token)


def feed(session: Session, tokens: Tokens, token: str) -> Subscriber:
    return _current(session, tokens, "feed", token)


def confirm(session: Session, tokens: Tokens, token: str, max_age: float) -> Subscriber:
    return _current(session, tokens, "confirm", token, max_age)


def expired_confirm(session: Session, tokens: Tokens, token: str) -> Subscriber:
    """The subscriber of a confirm link whose signature holds, however old it is.

    Only for offering a fresh link: the new mail goes to the subscriber's own address.
    """
    data = _read(tokens, "confirm", token, max_age=None)
    return _subscriber(session, data.public_id, "confirm", token)


def unsubscribe(session: Session, tokens: Tokens, token: str) -> Subscriber:
    data = _read(tokens, "unsubscribe", token)
    return _subscriber(session, data.public_id, "unsubscribe", token)


def feedback(session: Session, tokens: Tokens, token: str) -> tuple[Subscriber, Paper, int]:
    """The reader, the paper and the direction (+1 more, -1 fewer) a feedback link names:
    a digest's token with the paper's place in it (``<token>~3~more``), or, in mails sent
    before that form, a token a link naming the reader and the paper."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise LinkProblem("tampered", "feedback", token)
    if "~" in token:
        return _digest_feedback(session, tokens, token)
    try:
        data = tokens.read_feedback(token)
    except TokenError as exc:
        raise LinkProblem(exc.reason, "feedback", token) from None
    person = _subscriber(session, data.public_id, "feedback", token)
    paper = papers.row_by_canonical_id(session, data.paper)
    if paper is None:
        raise LinkProblem("unknown", "feedback", token)
    return person, paper, data.value


def _digest_feedback(session: Session, tokens: Tokens, token: str) -> tuple[Subscriber, Paper, int]:
    try:
        data = tokens.read_digest_feedback(token)
    except TokenError as exc:
        raise LinkProblem(exc.reason, "feedback", token) from None
    delivery = outbox.by_public_id(session, data.delivery)
    person = None if delivery is None else subscribers.by_id(session, delivery.subscriber_id)
    # A digest's papers are fixed when it is ranked; the place counts them in their order.
    paper = None if delivery is None else digests.paper_at(session, delivery.id, data.place)
    if person is None or paper is None:
        raise LinkProblem("unknown", "feedback", token)
    return person, paper, data.value


def archive(session: Session, tokens: Tokens, token: str) -> Stored:
    data = _read(tokens, "archive", token)
    delivery = outbox.by_public_id(session, data.public_id)
    if delivery is None:
        raise LinkProblem("unknown", "archive", token)
    return stored(delivery)


# -- a new address's confirmation ------------------------------------------------------


def address_key(email_key: str) -> str:
    return hashlib.sha256(email_key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AddressChange:
    subscriber: Subscriber
    new_address: str


class AddressTokens:
    """Links that confirm a subscriber's new address (salt ``digest.new-address``, timed).

    The token binds the subscriber, their token version and the new address itself (as a
    hash), so it confirms exactly the change it was sent for: not a later different one, and
    not after the subscriber signed out everywhere.
    """

    purpose = "new-address"

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="digest.new-address")

    def make(self, person: Subscriber, new_address: str) -> str:
        _, key = addresses.normalise(new_address)
        return self._serializer.dumps([person.public_id, person.token_version, address_key(key)])

    def read(self, session: Session, token: str, max_age: float) -> AddressChange:
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise LinkProblem("tampered", self.purpose, token)
        try:
            payload = self._serializer.loads(token, max_age=max_age)
        except SignatureExpired:
            raise LinkProblem("expired", self.purpose, token) from None
        except BadSignature:
            raise LinkProblem("tampered", self.purpose, token) from None
        if not (isinstance(payload, list) and len(payload) == 3):
            raise LinkProblem("tampered", self.purpose, token)
        public_id, version, wanted = payload
        if not isinstance(public_id, str):
            raise LinkProblem("tampered", self.purpose, token)
        person = _subscriber(session, public_id, self.purpose, token)
        pending = person.pending_email
        if version != person.token_version or not pending:
            raise LinkProblem("revoked", self.purpose, token)
        _, key = addresses.normalise(pending)
        if address_key(key) != wanted:
            raise LinkProblem("revoked", self.purpose, token)
        return AddressChange(person, pending)
