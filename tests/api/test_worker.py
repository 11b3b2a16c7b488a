"""The real Celery app and worker run the rewards jobs against PostgreSQL,
through Redis when one is listening and through the embedded (folder)
broker always."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from sqlalchemy.ext.asyncio import AsyncSession

from api import worker
from api.settings import Settings
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.purchases import PurchaseEvent, record_purchase
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from tests.conftest import NewProgram


def _redis_listening() -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", 6379)) == 0


BROKERS = [
    pytest.param(None, id="embedded-folder-broker"),
    pytest.param(
        "redis://127.0.0.1:6379/15",
        id="redis",
        marks=pytest.mark.skipif(not _redis_listening(), reason="no Redis here"),
    ),
]


@pytest.fixture
def celery_app(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Celery]:
    settings = Settings(database_url=database_url, broker_url=request.param, data_dir=str(tmp_path))
    app = worker.create_celery(settings)
    with start_worker(
        app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ):
        yield app
    worker.Resources.close_all()


@pytest.mark.parametrize("celery_app", BROKERS, indirect=True)
async def test_worker_settles_due_earnings_once(
    celery_app: Celery, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=0)
    now = datetime.now(UTC)
    version = await draft_rules(session, program, EarnRules(points_per_unit=Decimal(1)))
    await publish_rules(
        session, program, version.version, now - timedelta(days=1), now=now - timedelta(days=1)
    )
    member, _ = await enrol_member(session, ledger, program, Enrolment(external_id="w-1"))
    await record_purchase(
        session,
        ledger,
        program,
        PurchaseEvent(
            member="w-1",
            order_id="W-1",
            amount_minor=4200,
            currency="ZAR",
            occurred_at=now - timedelta(minutes=1),
        ),
        now,
    )
    await session.commit()
    assert (await member_balance(ledger, program, member)).pending == 42

    settle = celery_app.tasks["api.worker.settle_due_earnings"]
    settle.delay()
    deadline = time.monotonic() + 30
    while (await member_balance(ledger, program, member)).available != 42:
        assert time.monotonic() < deadline, "the worker never settled the earning"
        await asyncio.sleep(0.1)
    # Run again, through the broker too: nothing changes.
    settle.delay()
    # ...and eagerly, in a thread of its own (this one runs the test's loop).
    again = await asyncio.to_thread(lambda: settle.apply().get())
    assert again == 0
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending) == (42, 0)


@pytest.mark.parametrize("celery_app", BROKERS[:1], indirect=True)
async def test_worker_processes_the_stripe_inbox(
    celery_app: Celery,
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    pool: asyncpg.Pool,
) -> None:
    program = await new_program()
    await enrol_member(session, ledger, program, Enrolment(external_id="w-2"))
    await session.commit()
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    payload = {
        "id": event_id,
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": f"pi_{uuid.uuid4().hex[:12]}",
                "amount": 100,
                "currency": "zar",
                "created": int(time.time()),
                "metadata": {
                    "kind": "points_purchase",
                    "program": program.slug,
                    "member": "w-2",
                    "points": "77",
                },
            }
        },
    }
    await pool.execute(
        "INSERT INTO stripe_events (id, type, payload) VALUES ($1, $2, $3)",
        event_id,
        payload["type"],
        payload,
    )
    celery_app.tasks["api.worker.process_stripe_inbox"].delay()
    deadline = time.monotonic() + 30
    while (
        await pool.fetchval("SELECT processed_at FROM stripe_events WHERE id = $1", event_id)
        is None
    ):
        assert time.monotonic() < deadline, "the worker never processed the inbox"
        await asyncio.sleep(0.1)
    outcome = await pool.fetchval("SELECT outcome FROM stripe_events WHERE id = $1", event_id)
    assert outcome == "points bought: 77"
    member, _ = await enrol_member(session, ledger, program, Enrolment(external_id="w-2"))
    assert (await member_balance(ledger, program, member)).available == 77


def test_folder_broker_keeps_its_exchanges_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broadcasts (``control.ping``, the pidbox) write exchange tables; they
    belong under the data directory, not in a ``control/`` folder wherever
    the process was started."""
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    data = tmp_path / "data"
    app = worker.create_celery(Settings(data_dir=str(data)))
    assert app.control.ping(timeout=0.1) == []
    assert list(working.iterdir()) == []
    assert any((data / "broker" / "control").glob("*.exchange"))
