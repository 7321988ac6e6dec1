"""A sender's claim, row by row, on SQLite and on PostgreSQL: which deliveries it takes (and in
what order), what it writes on each (the lease, one more attempt, nothing handed over), what
it returns (the rows as the claim left them), and what it does with the digest of a
subscriber who left (cancelled, with the reason, never returned); and the claim of
transactional mail, which every digest sender makes first."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from digest.domain.states import Lease
from digest.models import Delivery, Subscriber, TransactionalMail
from digest.store import Store, mail_outbox, outbox

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


def subscriber(n: int, status: str = "active") -> Subscriber:
    email = f"reader{n}@example.org"
    return Subscriber(
        email=email,
        email_key=email,
        status=status,
        timezone="UTC",
        send_hour=7,
        created_at=NOW - timedelta(days=3),
        updated_at=NOW - timedelta(days=3),
    )


def delivery(**columns: object) -> Delivery:
    values: dict[str, object] = {
        "local_date": date(2026, 12, 6),
        "since": NOW - timedelta(days=1),
        "ranked_at": NOW - timedelta(minutes=5),
        "planned_at": NOW - timedelta(minutes=10),
        "status": "planned",
    }
    values.update(columns)
    return Delivery(**values)


def fill(store: Store) -> dict[str, int]:
    """One delivery per way of being ready or not; returns their ids by name."""
    with store.transaction() as session:
        people = [subscriber(n) for n in range(8)] + [subscriber(8, "unsubscribed")]
        session.add_all(people)
        session.flush()
        rows = {
            "fresh": delivery(),
            "given back": delivery(next_attempt_at=NOW - timedelta(minutes=1)),
            "deferred, due": delivery(
                status="deferred", attempts=1, next_attempt_at=NOW - timedelta(1)
            ),
            "deferred, later": delivery(
                status="deferred", attempts=1, next_attempt_at=NOW + timedelta(1)
            ),
            "lapsed lease": delivery(
                status="sending",
                attempts=2,
                lease_owner="dead",
                lease_until=NOW - timedelta(minutes=1),
                handed_over_at=NOW - timedelta(minutes=20),
            ),
            "live lease": delivery(status="sending", lease_owner="alive", lease_until=NOW + LEASE),
            "not ranked": delivery(ranked_at=None),
            "sent": delivery(status="sent", sent_at=NOW - timedelta(hours=1)),
            "left": delivery(),
        }
        for row, who in zip(rows.values(), people, strict=True):
            row.subscriber_id = who.id
        session.add_all(rows.values())
        session.flush()
        return {name: row.id for name, row in rows.items()}


def test_a_claim_takes_what_is_ready_and_leases_it(any_store: Store) -> None:
    ids = fill(any_store)
    lease = Lease("w1", NOW, LEASE)
    with any_store.transaction() as session:
        taken = outbox.claim(session, lease, 10)
    ready = ["fresh", "given back", "deferred, due", "lapsed lease"]
    assert [one.id for one in taken] == sorted(ids[name] for name in ready)
    with any_store.transaction() as session:
        rows = {row.id: row for row in session.scalars(select(Delivery))}
        before = {"fresh": 0, "given back": 0, "deferred, due": 1, "lapsed lease": 2}
        for one in taken:
            row = rows[one.id]
            # What the claim returned is the row as the claim left it.
            assert (one.public_id, one.subscriber_id, one.local_date, one.planned_at) == (
                row.public_id,
                row.subscriber_id,
                row.local_date,
                row.planned_at,
            )
            assert one.ranked and one.attempts == row.attempts
            assert (row.status, row.lease_owner, row.handed_over_at) == ("sending", "w1", None)
            assert row.lease_until == lease.until
        assert {name: rows[ids[name]].attempts for name in ready} == {
            name: count + 1 for name, count in before.items()
        }
        # The subscriber who left: cancelled with the reason, lease cleared, never returned.
        left = rows[ids["left"]]
        assert (left.status, left.lease_owner, left.lease_until) == ("cancelled", None, None)
        assert left.last_error == "not sent: the subscriber is unsubscribed"
        assert left.attempts == 0
        # The rest untouched.
        assert rows[ids["live lease"]].lease_owner == "alive"
        assert rows[ids["deferred, later"]].status == "deferred"
        assert rows[ids["not ranked"]].status == "planned"
        assert rows[ids["not ranked"]].lease_owner is None
        assert rows[ids["sent"]].status == "sent"
    # Nothing is ready twice: a second claim finds nothing.
    with any_store.transaction() as session:
        assert outbox.claim(session, Lease("w2", NOW, LEASE), 10) == []


def test_a_claim_takes_the_oldest_first_and_no_more_than_asked(any_store: Store) -> None:
    ids = fill(any_store)
    with any_store.transaction() as session:
        first = outbox.claim(session, Lease("w1", NOW, LEASE), 2)
    with any_store.transaction() as session:
        second = outbox.claim(session, Lease("w2", NOW, LEASE), 2)
    ready = sorted(ids[n] for n in ("fresh", "given back", "deferred, due", "lapsed lease"))
    assert [one.id for one in first] == ready[:2]
    assert [one.id for one in second] == ready[2:]


def test_a_claim_for_some_subscribers_takes_only_theirs(any_store: Store) -> None:
    ids = fill(any_store)
    with any_store.transaction() as session:
        wanted = session.get(Delivery, ids["deferred, due"]).subscriber_id
        taken = outbox.claim(session, Lease("w1", NOW, LEASE), 10, [wanted])
    assert [(one.id, one.attempts) for one in taken] == [(ids["deferred, due"], 2)]


def test_under_the_hold_policy_a_lapsed_lease_handed_over_is_held(any_store: Store) -> None:
    ids = fill(any_store)
    with any_store.transaction() as session:
        taken = outbox.claim(session, Lease("w1", NOW, LEASE), 10, policy="hold")
    assert ids["lapsed lease"] not in {one.id for one in taken}
    with any_store.transaction() as session:
        assert session.get(Delivery, ids["lapsed lease"]).status == "unknown"


def mail(**columns: object) -> TransactionalMail:
    values: dict[str, object] = {
        "kind": "confirm",
        "recipient": "someone@example.org",
        "payload": b"message",
        "planned_at": NOW - timedelta(minutes=10),
        "status": "planned",
    }
    values.update(columns)
    return TransactionalMail(**values)


def test_transactional_mail_is_claimed_whenever_one_is_ready(any_store: Store) -> None:
    lease = Lease("w1", NOW, LEASE)
    # None ready (one waits for later): nothing claimed, nothing written.
    with any_store.transaction() as session:
        later = mail(status="deferred", attempts=1, next_attempt_at=NOW + timedelta(hours=1))
        session.add(later)
    with any_store.transaction() as session:
        assert mail_outbox.claim(session, lease, 20) == []
    # Each way of being ready is found, alone.
    ready = {
        "new": {},
        "planned for now": {"next_attempt_at": NOW},
        "deferred, due": {"status": "deferred", "attempts": 1, "next_attempt_at": NOW},
        "lapsed lease": {
            "status": "sending",
            "attempts": 1,
            "lease_owner": "dead",
            "lease_until": NOW - LEASE,
        },
        "unknown, due": {"status": "unknown", "attempts": 1, "next_attempt_at": NOW},
    }
    for name, columns in ready.items():
        with any_store.transaction() as session:
            one = mail(**columns)
            session.add(one)
        with any_store.transaction() as session:
            taken = mail_outbox.claim(session, lease, 20)
        assert [(m.id, m.attempts) for m in taken] == [(one.id, one.attempts + 1)], name
        with any_store.transaction() as session:
            row = session.get(TransactionalMail, one.id)
            assert (row.status, row.lease_owner) == ("sending", "w1"), name
    with any_store.transaction() as session:
        assert session.get(TransactionalMail, later.id).status == "deferred"
    # Under the hold policy an unknown one is not resent by itself.
    with any_store.transaction() as session:
        held = mail(status="unknown", attempts=1, next_attempt_at=NOW)
        session.add(held)
    with any_store.transaction() as session:
        assert mail_outbox.claim(session, Lease("w2", NOW, LEASE), 20, policy="hold") == []
    with any_store.transaction() as session:
        assert [m.id for m in mail_outbox.claim(session, Lease("w2", NOW, LEASE), 20)] == [held.id]
