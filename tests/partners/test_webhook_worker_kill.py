"""The real worker (``coalition worker``, Celery, in processes of its own)
killed in the middle of delivering a webhook: nothing is lost, the delivery
comes again with the same ``webhook-id`` once its lease ends, and the log
shows the one attempt that succeeded.

The worker runs on the test database and a folder broker of the test's own,
without its schedule: the test sends the ``deliver-webhooks`` task as the
schedule would, and no other job touches the shared database.
``WEBHOOK_TIMEOUT_SECONDS`` shortens the lease (four times the timeout)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from standardwebhooks import Webhook

from api import worker
from api.settings import ENVIRONMENT, Settings
from partners import webhook_job, webhook_targets
from partners.webhook_schemas import message_id
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.receiver import Answer, Receiver, receiver
from tests.partners.webhooks import (
    Sessions,
    attempts_of,
    deliveries_of,
    emit_event,
    new_endpoint,
    no_stray_deliveries,
    sessions,
)

__all__ = ["no_stray_deliveries", "sessions"]

pytestmark = pytest.mark.usefixtures("no_stray_deliveries")

ROOT = Path(__file__).resolve().parents[2]
#: Seconds an attempt may take: the lease is four times it.
TIMEOUT = 3
#: Worker start-up (migrations checked, Celery booted) on a loaded machine.
PATIENCE = 120


@pytest.fixture
def worker_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=str(tmp_path / "data"),
        webhook_private_targets=True,
        webhook_timeout_seconds=TIMEOUT,
    )


@pytest.fixture
def tasks(worker_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Celery:
    """The app as the test sends its tasks (the same folder broker)."""
    # Making the app configures this process's sender too: undone afterwards.
    monkeypatch.setattr(webhook_targets, "_policy", webhook_targets._policy)
    monkeypatch.setattr(webhook_job, "_options", webhook_job._options)
    return worker.create_celery(worker_settings)


@contextmanager
def running_worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``coalition worker`` (its main process and its pool's) in a process
    group of its own, so that a kill reaches every process of it."""
    environment = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    environment |= {
        "DATABASE_URL": settings.database_url or "",
        "COALITION_DATA_DIR": settings.data_dir,
        "WEBHOOK_PRIVATE_TARGETS": "true",
        "WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds),
        "COALITION_LOG_LEVEL": "warning",
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--no-beat", "--quiet"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the whole worker: no shutdown, no last outcome recorded."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


async def requests_at(hooks: Receiver, path: str, count: int, send: Celery | None = None) -> None:
    """Until ``count`` requests have reached ``path``; with ``send``, a
    ``deliver-webhooks`` task each second meanwhile, as the schedule does."""
    async with asyncio.timeout(PATIENCE):
        while len(hooks.at(path)) < count:
            if send is not None:
                send.send_task("api.worker.deliver_webhooks")
            for _ in range(20):
                if len(hooks.at(path)) >= count:
                    return
                await asyncio.sleep(0.05)


@pytest.fixture
async def hooks() -> AsyncIterator[Receiver]:
    async with receiver() as found:
        yield found


async def test_a_worker_killed_mid_call_sends_the_delivery_again_with_its_id(
    sessions: Sessions,
    new_program: NewProgram,
    new_partner: NewPartner,
    worker_settings: Settings,
    tasks: Celery,
    hooks: Receiver,
    tmp_path: Path,
) -> None:
    partner = await new_partner(await new_program())
    never = asyncio.Event()
    path = hooks.path([Answer(hold=never), Answer(200)])
    endpoint = await new_endpoint(sessions, partner, hooks.url(path))
    await emit_event(sessions, partner, member="m-kill")
    log = tmp_path / "worker.log"
    try:
        with running_worker(worker_settings, log) as first:
            tasks.send_task("api.worker.deliver_webhooks")
            await requests_at(hooks, path, 1)
            # The receiver holds the call: the worker dies in the middle of it.
            kill(first)
        [leased] = await deliveries_of(sessions, endpoint.id)
        assert (leased.status, leased.attempts) == ("pending", 1)
        assert await attempts_of(sessions, leased.id) == []

        with running_worker(worker_settings, log):
            await requests_at(hooks, path, 2, send=tasks)
            # Until its outcome is recorded.
            async with asyncio.timeout(PATIENCE):
                while True:
                    [row] = await deliveries_of(sessions, endpoint.id)
                    if row.status == "succeeded":
                        break
                    await asyncio.sleep(0.1)
    except BaseException:
        print(log.read_text(errors="replace"))
        raise
    finally:
        never.set()

    first_call, second_call = hooks.at(path)
    [delivery] = await deliveries_of(sessions, endpoint.id)
    assert first_call.headers["webhook-id"] == second_call.headers["webhook-id"]
    assert second_call.headers["webhook-id"] == message_id(delivery.id)
    assert first_call.body == second_call.body
    for call in (first_call, second_call):
        payload = Webhook(endpoint.secret).verify(call.body, call.headers)
        assert payload["data"]["member"] == "m-kill"
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    # The killed attempt left no outcome; the one that succeeded is logged once.
    [attempt] = await attempts_of(sessions, delivery.id)
    assert (attempt.number, attempt.succeeded, attempt.status_code) == (2, True, 200)
