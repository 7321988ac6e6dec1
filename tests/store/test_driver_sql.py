"""A statement handed to the driver (``DriverStatement``) writes what SQLAlchemy's own
execution of the same statement writes, on SQLite and PostgreSQL: the sender records every
message sent through one (``outbox.mark_sent``), so a datetime stored in another form, a
state spelled otherwise or a constant left out would be a wrong row in every delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from delivery_helpers import planned_day
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, cast, select, update

from digest.config import Settings
from digest.domain.states import DeliveryState
from digest.errors import StoreError
from digest.models import Delivery
from digest.store import Store, outbox
from digest.store.driver_sql import DriverStatement

NOW = datetime(2026, 12, 6, 7, 0, 5, 123456, tzinfo=UTC)
COLUMNS = ("status", "sent_at", "smtp_reply", "lease_until", "next_attempt_at", "lease_owner")


def _leased(settings: Settings, store: Store, count: int) -> list[int]:
    planned_day(settings, store, count, NOW)
    with store.transaction() as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.id)))
        session.execute(
            update(Delivery).values(
                status=DeliveryState.SENDING,
                lease_owner="A",
                lease_until=NOW + timedelta(minutes=5),
                next_attempt_at=NOW,
            )
        )
    return ids


def _rows(store: Store, ids: list[int]) -> list[tuple[object, ...]]:
    """The columns as the database holds them (as text: a datetime stored in another
    form, or another zone, would read back equal through the ORM and still sort wrong)."""
    with store.connected() as connection:
        wanted = [cast(getattr(Delivery, c), Text) for c in COLUMNS]
        return [
            tuple(connection.execute(select(*wanted).where(Delivery.id == i)).one()) for i in ids
        ]


def test_a_driver_statement_writes_what_sqlalchemy_writes(
    settings: Settings, any_store: Store
) -> None:
    first, second, lost = _leased(settings, any_store, 3)
    statement = outbox._statements(Delivery)[0]
    reply = "250 2.0.0 Ok: queued as 50% %s %(x)s 'é'"
    with any_store.connected() as connection:
        core = connection.execute(
            statement.statement,
            {"delivery_id": first, "owner": "A", "now": NOW, "reply": reply},
        )
        assert core.rowcount == 1
        assert (
            statement.execute(
                connection, delivery_id=second, owner="A", now=NOW, reply=reply
            ).rowcount
            == 1
        )
        # Another sender's lease: nothing changes, as with SQLAlchemy's execution.
        assert not outbox.mark_sent(connection, lost, "B", NOW, reply)
    done, driven, untouched = _rows(any_store, [first, second, lost])
    assert driven == done
    assert done[0] == "sent" and done[2] == reply and done[3] is None
    assert untouched[0] == "sending" and untouched[5] == "A"
    with any_store.transaction() as session:
        sent_at = session.scalar(select(Delivery.sent_at).where(Delivery.id == second))
    assert sent_at == NOW


def test_every_bound_value_must_be_given(settings: Settings, any_store: Store) -> None:
    """A value left out is an error naming it (ours for SQLite's positional parameters,
    the driver's for PostgreSQL's named ones), never a NULL written."""
    (one,) = _leased(settings, any_store, 1)
    statement = DriverStatement(
        update(Delivery)
        .where(Delivery.id == bindparam("delivery_id"))
        .values(smtp_reply=bindparam("reply"))
    )
    with pytest.raises((KeyError, StoreError), match="reply"), any_store.connected() as connection:
        statement.execute(connection, delivery_id=one)


def test_a_failing_statement_is_the_stores_error(any_store: Store) -> None:
    """Errors come wrapped as SQLAlchemy's, so the store turns them into its own (a busy or
    vanished database is ``Unavailable``, which the sender retries), not a driver's."""
    missing = Table("no_such_table", MetaData(), Column("id", Integer), Column("note", Text))
    statement = DriverStatement(
        update(missing).where(missing.c.id == bindparam("id")).values(note=bindparam("note"))
    )
    with pytest.raises(StoreError, match="no_such_table"), any_store.connected() as connection:
        statement.execute(connection, id=1, note="x")
