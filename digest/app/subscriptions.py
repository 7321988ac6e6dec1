"""Subscriptions: sign up and confirm, change a profile, a schedule or an address, pause,
sign out everywhere, unsubscribe, export and erase, mail a fresh preferences link.

The web app and the CLI call these; each is one transaction (or two where a rate limit is
taken first), and a mail it asks for is put in the outbox inside that transaction
(``digest.app.transactional``). Links are checked by ``digest.app.access``; a bad one
raises ``LinkProblem``. The one rule for changing a profile is
``digest.domain.profiles.merge``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from digest.app import access, transactional
from digest.app.services import Services
from digest.domain import addresses
from digest.domain.profiles import Profile, merge
from digest.domain.schedules import Schedule
from digest.domain.states import SubscriberStatus
from digest.store import Session, Store, subscribers
from digest.store.ratelimit import ADDRESS_MAIL, CLIENT, Limit
from digest.store.subscribers import Subscriber

Outcome = Literal["sent", "client-limit", "address-limit", "same"]
# What a profile edit may carry: merge()'s keyword arguments.
Changes = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Asked:
    """What became of a request that mails someone."""

    outcome: Outcome
    address: str = ""
    mail_id: int | None = None  # the mail waiting in the outbox, to send at once


def client_limit(services: Services) -> Limit:
    return Limit(CLIENT, services.settings.web.subscribe_per_client_per_hour, timedelta(hours=1))


def address_limit(services: Services) -> Limit:
    most = services.settings.web.confirm_mails_per_address_per_day
    return Limit(ADDRESS_MAIL, most, timedelta(days=1))


def _key(email: str) -> str:
    return email.strip().casefold()


def manage_path(services: Services, person: Subscriber) -> str:
    return f"/manage/{services.tokens.make('manage', person.public_id, person.token_version)}"


def _client_ok(services: Services, client: str, now: datetime) -> bool:
    with services.store.transaction() as session:
        return services.limiter.take(session, client_limit(services), client, now)


def _mail_allowed(services: Services, session: Session, address: str, now: datetime) -> bool:
    """Within the per-address daily limit; recording it when it is."""
    limit = address_limit(services)
    if not services.limiter.allows(session, limit, _key(address), now):
        return False
    services.limiter.record(session, limit.bucket, _key(address), now)
    return True


def _queue(
    services: Services, session: Session, person: Subscriber, kind: str, reason: str = ""
) -> int:
    """Put a mail to ``person`` in the outbox: their confirmation link ("confirm"), or a
    link to their preferences ("manage_link", saying ``reason``)."""
    if kind == "confirm":
        url = services.links.confirm(person.public_id, person.token_version)
        message = services.mails.confirm_subscription(person.email, url)
    else:
        url = services.links.manage(person.public_id, person.token_version)
        message = services.mails.manage_link(person.email, url, reason)
    return transactional.enqueue(
        session,
        message,
        kind=kind,
        recipient=person.email,
        subscriber_id=person.id,
        now=services.clock(),
    )


# -- signing up --------------------------------------------------------------------------


def client_allowed(services: Services, client: str) -> bool:
    """One more form that may send mail from this client (counted whether or not the form
    then turns out valid); False when it is over the hourly limit."""
    return _client_ok(services, client, services.clock())


def sign_up(services: Services, email: str, changes: Changes, schedule: Schedule) -> Asked:
    """A sign-up from the web form (after ``client_allowed``): pending until the mailed link
    is opened. An address that is already subscribed changes nothing: its owner is mailed
    their preferences link."""
    now = services.clock()
    with services.store.transaction() as session:
        person = subscribers.find(session, email)
        if not services.limiter.allows(session, address_limit(services), _key(email), now):
            return Asked("address-limit")
        if person is not None and person.status == SubscriberStatus.ACTIVE:
            # Someone may be trying this address out: change nothing, tell its owner.
            mail_id = _queue(services, session, person, "manage_link", "already")
        else:
            old = subscribers.profile_of(person) if person else Profile()
            profile = merge(old, **changes)
            person, _ = subscribers.upsert(
                session, email, profile, schedule, confirmed=False, now=now
            )
            mail_id = _queue(services, session, person, "confirm")
        services.limiter.record(session, address_limit(services).bucket, _key(email), now)
        return Asked("sent", person.email, mail_id)


def resend_confirmation(services: Services, token: str, client: str) -> Asked:
    """A fresh link for an expired confirmation link, to the same address."""
    now = services.clock()
    if not _client_ok(services, client, now):
        return Asked("client-limit")
    with services.store.transaction() as session:
        person = access.expired_confirm(session, services.tokens, token)
        if not _mail_allowed(services, session, person.email, now):
            return Asked("address-limit")
        if person.status == SubscriberStatus.ACTIVE:
            mail_id = _queue(services, session, person, "manage_link", "already")
        else:
            mail_id = _queue(services, session, person, "confirm")
        return Asked("sent", person.email, mail_id)


def pending_confirmation(services: Services, token: str) -> Subscriber:
    """The subscriber a confirmation link is for (changes nothing: a GET)."""
    with services.store.transaction() as session:
        return access.confirm(session, services.tokens, token, services.confirm_max_age)


def confirm(services: Services, token: str) -> str:
    """Activate the subscription; the path of their preferences page."""
    with services.store.transaction() as session:
        person = access.confirm(session, services.tokens, token, services.confirm_max_age)
        subscribers.activate(person, services.clock())
        return manage_path(services, person)


# -- the preferences page ---------------------------------------------------------------


def manage(services: Services, token: str) -> Subscriber:
    """The subscriber a preferences link is for."""
    with services.store.transaction() as session:
        return access.manage(session, services.tokens, token)


def save_preferences(services: Services, token: str, changes: Changes, schedule: Schedule) -> None:
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        profile = merge(subscribers.profile_of(person), **changes)
        subscribers.upsert(
            session, person.email, profile, schedule, confirmed=False, now=services.clock()
        )


def pause(services: Services, token: str, days: int | None) -> None:
    """No digests for ``days`` days; None resumes them."""
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        subscribers.pause(person, days, services.clock())


def request_address(services: Services, token: str, new_address: str, client: str) -> Asked:
    """Mail a confirmation link to ``new_address``; the current one keeps the digests until
    it is opened."""
    now = services.clock()
    if not _client_ok(services, client, now):
        return Asked("client-limit")
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        if _key(new_address) == person.email_key:
            return Asked("same")
        if not _mail_allowed(services, session, new_address, now):
            return Asked("address-limit")
        subscribers.set_pending_email(person, new_address, now)
        link = services.address_tokens.make(person, new_address)
        url = f"{services.settings.web.base_url}/confirm-email/{link}"
        message = services.mails.confirm_new_address(new_address, url)
        mail_id = transactional.enqueue(
            session,
            message,
            kind="confirm_address",
            recipient=new_address,
            subscriber_id=person.id,
            now=now,
        )
        return Asked("sent", new_address, mail_id)


def cancel_address(services: Services, token: str) -> None:
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        subscribers.set_pending_email(person, None, services.clock())


def pending_address(services: Services, token: str) -> access.AddressChange:
    """The change a new-address link confirms (changes nothing: a GET)."""
    with services.store.transaction() as session:
        return services.address_tokens.read(session, token, services.confirm_max_age)


def confirm_address(services: Services, token: str) -> str | None:
    """Move the subscription to the confirmed address; the new preferences path, or None
    when that address has a subscription of its own."""
    with services.store.transaction() as session:
        change = services.address_tokens.read(session, token, services.confirm_max_age)
        person = change.subscriber
        if not subscribers.move_to(session, person, change.new_address, services.clock()):
            return None
        return manage_path(services, person)


def sign_out(services: Services, token: str) -> Asked:
    """Revoke every preferences link sent so far, and mail a new one (within the limit)."""
    now = services.clock()
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        subscribers.sign_out(session, person, now)
        if not _mail_allowed(services, session, person.email, now):
            return Asked("address-limit", person.email)
        return Asked(
            "sent", person.email, _queue(services, session, person, "manage_link", "signed_out")
        )


def resubscribe(services: Services, token: str, purpose: str = "manage") -> Subscriber:
    """Active again, with the topics they had (from the preferences page, or from the
    unsubscribe page, whose link never expires)."""
    with services.store.transaction() as session:
        if purpose == "unsubscribe":
            person = access.unsubscribe(session, services.tokens, token)
        else:
            person = access.manage(session, services.tokens, token)
        subscribers.activate(person, services.clock())
        return person


def export(services: Services, token: str) -> dict[str, Any]:
    """Everything stored about the subscriber, as plain JSON."""
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        return subscribers.export(session, person, services.clock())


def erase(services: Services, token: str) -> None:
    """The subscriber and everything tied to them, gone."""
    with services.store.transaction() as session:
        person = access.manage(session, services.tokens, token)
        subscribers.erase(session, person)


# -- unsubscribing, and a fresh preferences link from links that never expire -------------


def unsubscribe_target(services: Services, token: str) -> Subscriber:
    with services.store.transaction() as session:
        return access.unsubscribe(session, services.tokens, token)


def unsubscribe(services: Services, token: str) -> str | None:
    """RFC 8058 one-click: stop all mail; the address, or None for a deleted subscriber
    (there is nothing left to stop)."""
    with services.store.transaction() as session:
        try:
            person = access.unsubscribe(session, services.tokens, token)
        except access.LinkProblem as problem:
            if problem.reason == "unknown":
                return None
            raise
        subscribers.unsubscribe(person, services.clock())
        return person.email


def _holder(services: Services, session: Session, purpose: str, token: str) -> Subscriber:
    """The subscriber behind an unsubscribe, feedback or archive link."""
    if purpose == "unsubscribe":
        return access.unsubscribe(session, services.tokens, token)
    if purpose == "feedback":
        return access.feedback(session, services.tokens, token)[0]
    if purpose == "archive":
        delivery = access.archive(session, services.tokens, token)
        person = subscribers.by_id(session, delivery.subscriber_id)
        if person is None:
            raise access.LinkProblem("unknown", "archive", token)
        return person
    raise ValueError(f"no subscriber behind a {purpose} link")


def check_holder(services: Services, purpose: str, token: str) -> Subscriber:
    """Raises ``LinkProblem`` for a bad link (before a page offers its button)."""
    with services.store.transaction() as session:
        return _holder(services, session, purpose, token)


def mail_manage_link(services: Services, purpose: str, token: str, client: str) -> Asked:
    """Mail the holder of a link that never expires (unsubscribe, feedback, archive) a
    fresh link to their preferences, within the rate limits: those links never lead to the
    preferences page themselves, so that a forwarded mail cannot change them."""
    now = services.clock()
    if not _client_ok(services, client, now):
        return Asked("client-limit")
    with services.store.transaction() as session:
        person = _holder(services, session, purpose, token)
        if not _mail_allowed(services, session, person.email, now):
            return Asked("address-limit")
        return Asked(
            "sent", person.email, _queue(services, session, person, "manage_link", "requested")
        )


# -- the command line --------------------------------------------------------------------


def subscribe(
    store: Store,
    defaults: Schedule,
    email: str,
    changes: Changes,
    schedule_changes: dict[str, Any],
    now: datetime,
) -> tuple[Subscriber, bool]:
    """Subscribe ``email`` at once (the operator's CLI: no emailed confirmation), or update
    it: given parts replace the stored ones, others are kept."""
    with store.transaction() as session:
        existing = subscribers.find(session, email)
        old = subscribers.profile_of(existing) if existing else Profile()
        base = subscribers.schedule_of(existing) if existing else defaults
        weekly = schedule_changes.get("weekday")
        schedule = Schedule.checked(
            schedule_changes.get("timezone") or base.timezone,
            _given(schedule_changes.get("send_hour"), base.send_hour),
            "weekly" if weekly else base.frequency,
            weekly if weekly else base.weekday,
            _given(schedule_changes.get("max_papers"), base.max_papers),
            _given(schedule_changes.get("send_when_empty"), base.send_when_empty),
        )
        return subscribers.upsert(
            session, email, merge(old, **changes), schedule, confirmed=True, now=now
        )


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def stop(store: Store, email: str, now: datetime) -> tuple[str, bool]:
    """Stop mailing ``email`` (`digest unsubscribe`): (address, whether it changed)."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        return person.email, subscribers.unsubscribe(person, now)


def update_profile(
    store: Store, email: str, changes: Changes, now: datetime
) -> tuple[str, Profile]:
    """Change ``email``'s profile by the one rule (`digest profile`)."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        if changes:
            subscribers.set_profile(person, merge(subscribers.profile_of(person), **changes), now)
        return person.email, subscribers.profile_of(person)


def listing(store: Store, status: str | None) -> list[Subscriber]:
    with store.transaction() as session:
        return subscribers.listing(session, status)


def checked_address(raw: str) -> str:
    """An address as it would be stored; ``ValidationError`` says what is wrong."""
    return addresses.normalise(raw)[0]
