"""The real Celery app and worker run the modules' jobs against PostgreSQL,
through Redis when one is listening and through the embedded (folder)
broker always; the schedule and the outbox's subscribers come from the
modules (``api.modules``)."""

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
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api import modules, worker
from api.settings import Settings
from core.modules import Module
from core.outbox import OutboxEvent, Subscriber, drain, emit, outbox_events
from core.principal import system
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
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
    # A queue of this test's own: other runs on the machine share the Redis
    # database, and a worker of theirs would take this test's tasks (and
    # run them on their own database).
    queue = app.conf.task_default_queue = f"coalition-test-{uuid.uuid4().hex}"
    with start_worker(
        app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ):
        yield app
    worker.Resources.close_all()
    # Redis keeps the queue's bindings until it is deleted, and a channel
    # deletes only the bindings it has declared.
    with app.connection_for_write() as connection:
        bound = app.amqp.queues[queue](connection.default_channel)
        bound.declare()
        bound.delete()


@pytest.mark.parametrize("celery_app", BROKERS, indirect=True)
async def test_worker_settles_due_earnings_once(
    celery_app: Celery, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=0)
    now = datetime.now(UTC)
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await publish_rules(
        session,
        program,
        version.version,
        now - timedelta(days=1),
        now=now - timedelta(days=1),
        principal=system("test"),
    )
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="w-1"), principal=system("test")
    )
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
        principal=system("test"),
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
    await enrol_member(
        session, ledger, program, Enrolment(external_id="w-2"), principal=system("test")
    )
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
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="w-2"), principal=system("test")
    )
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


def test_the_schedule_is_every_job_of_the_modules(tmp_path: Path) -> None:
    app = worker.create_celery(Settings(data_dir=str(tmp_path)))
    jobs = [job for module in modules.MODULES for job in module.jobs]
    assert {
        name: (entry["task"], entry["schedule"]) for name, entry in app.conf.beat_schedule.items()
    } == {job.name: (worker.task_name(job), job.every) for job in jobs}
    assert {worker.task_name(job) for job in jobs} <= set(app.tasks)
    # Names that queued messages and the Stripe webhook carry.
    assert app.conf.beat_schedule["drain-outbox"]["task"] == "api.worker.drain_outbox"
    assert (
        app.conf.beat_schedule["process-stripe-inbox"]["task"] == "api.worker.process_stripe_inbox"
    )


async def test_the_drain_runs_as_a_task_and_once_by_name(database_url: str, tmp_path: Path) -> None:
    app = worker.create_celery(Settings(database_url=database_url, data_dir=str(tmp_path)))
    try:
        handled = await asyncio.to_thread(
            lambda: app.tasks["api.worker.drain_outbox"].apply().get()
        )
    finally:
        await asyncio.to_thread(worker.Resources.close_all)
    assert isinstance(handled, int)
    assert await modules.run_once("drain-outbox", database_url) >= 0
    with pytest.raises(modules.UnknownJob, match="drain-outbox"):
        modules.job("drain-the-swamp")


async def test_the_drain_hands_a_topic_to_every_module_subscribed_to_it(
    engine: AsyncEngine,
) -> None:
    topic, quiet = f"test.{uuid.uuid4().hex[:8]}", f"test.{uuid.uuid4().hex[:8]}"
    calls: list[tuple[str, str]] = []

    def recorder(name: str) -> Subscriber:
        async def record(session: AsyncSession, event: OutboxEvent) -> None:
            calls.append((name, event.topic))

        return record

    registry = [
        Module(
            name="emitter", topics=frozenset({topic, quiet}), subscribers={topic: recorder("a")}
        ),
        Module(name="listener", subscribers={topic: recorder("b")}),
    ]
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        await emit(session, topic, "member:1", {})
        silent = await emit(session, quiet, "member:2", {})
    assert await drain(sessions, modules.subscribers(registry), datetime.now(UTC)) == 2
    assert calls == [("a", topic), ("b", topic)]
    async with sessions() as session:
        handled_at = await session.scalar(
            select(outbox_events.c.handled_at).where(outbox_events.c.id == silent)
        )
    # A declared topic nobody subscribes to yet does not pile up.
    assert handled_at is not None


def test_a_subscription_to_a_topic_no_module_declares_is_refused() -> None:
    async def nothing(session: AsyncSession, event: OutboxEvent) -> None:
        pass

    with pytest.raises(ValueError, match="no module declares"):
        modules.subscribers([Module(name="typo", subscribers={"member.enroled": nothing})])
    with pytest.raises(ValueError, match="two modules declare"):
        modules.subscribers(
            [Module(name=n, topics=frozenset({"member.enrolled"})) for n in ("a", "b")]
        )
