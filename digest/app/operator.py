"""What an operator does: the outbox by state, retries, bounce reports, reactivation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from digest.config import Settings
from digest.delivery.bounces import MAX_REPORT_BYTES, BounceResult, parse_report
from digest.domain.states import RETRYABLE, DeliveryState, SubscriberStatus
from digest.errors import ValidationError
from digest.store import Store, bounces, outbox, reports, subscribers
from digest.store.outbox import Listed


def counts(store: Store) -> dict[str, int]:
    """Deliveries in each state, every state listed."""
    with store.transaction() as session:
        return reports.delivery_counts(session)


def listing(store: Store, status: str, limit: int) -> list[Listed]:
    """Deliveries in one state, newest first, with their last error or reply."""
    if status not in set(DeliveryState):
        raise ValidationError(f"--status: expected one of {', '.join(DeliveryState)}")
    with store.transaction() as session:
        return outbox.listing(session, status, limit)


def retry(store: Store, now: datetime, statuses: Sequence[str], public_ids: Sequence[str]) -> int:
    """Send the chosen unknown, failed or deferred deliveries again at the next claim."""
    for name in statuses:
        if name not in RETRYABLE:
            raise ValidationError("--status: expected unknown, failed or deferred")
    if not statuses and not public_ids:
        raise ValidationError("name delivery ids or give --status")
    with store.transaction() as session:
        return outbox.requeue(session, now, statuses=statuses, public_ids=public_ids)


def reactivate(store: Store, email: str, now: datetime) -> str:
    """Mail a bounced address again (its bounce count starts from zero)."""
    with store.transaction() as session:
        person = subscribers.get(session, email)
        if not bounces.reactivate(person, now):
            raise ValidationError(
                f"{person.email} is {person.status}, not bounced; nothing to reactivate"
            )
        return person.email


def ingest_bounce(
    settings: Settings,
    store: Store,
    raw_bytes: bytes,
    *,
    envelope_recipient: str | None = None,
    now: datetime | None = None,
) -> BounceResult:
    """Read one bounce message, tie it to its delivery and subscriber, and record it.

    Free of any web framework: ``digest bounce`` and the web hook both call it.
    """
    now = now or datetime.now(UTC)
    if len(raw_bytes) > MAX_REPORT_BYTES:
        return BounceResult("not_a_report", f"larger than {MAX_REPORT_BYTES} bytes")
    report = parse_report(raw_bytes, settings.delivery.return_path, envelope_recipient)
    if report is None:
        return BounceResult(
            "not_a_report", "not a multipart/report delivery-status or feedback-report message"
        )
    base = {"kind": report.kind, "status": report.status}
    if report.kind == "none":
        return BounceResult("ignored", "the report says the mail was delivered or relayed", **base)
    with store.transaction() as session:
        delivery, subscriber = bounces.match(session, report)
        if subscriber is None:
            return BounceResult(
                "unmatched",
                "no delivery or subscriber matches its VERP address, Message-ID or recipient",
                **base,
            )
        who = {"email": subscriber.email, "delivery": delivery.public_id if delivery else None}
        if report.kind == "complaint":
            outcome = bounces.record(
                session,
                settings.delivery,
                subscriber_id=subscriber.id,
                delivery_id=delivery.id if delivery else None,
                kind="complaint",
                status=None,
                diagnostic=report.diagnostic,
                now=now,
            )
            if outcome != "duplicate" and subscriber.status in (
                SubscriberStatus.ACTIVE,
                SubscriberStatus.PENDING,
            ):
                subscribers.unsubscribe(subscriber, now)
                outcome = "unsubscribed"
            return BounceResult(outcome, "abuse report: the address is unsubscribed", **base, **who)
        outcome = bounces.record(
            session,
            settings.delivery,
            subscriber_id=subscriber.id,
            delivery_id=delivery.id if delivery else None,
            kind=report.kind,
            status=report.status,
            diagnostic=report.diagnostic,
            now=now,
        )
    details = {
        "duplicate": "already recorded",
        "recorded": "recorded; a soft bounce (or a delivery already counted) does not count",
        "counted": "counted toward suppression",
        "suppressed": "the address reached the bounce limit and is now suppressed",
    }
    return BounceResult(outcome, details[outcome], **base, **who)
