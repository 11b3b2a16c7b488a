"""The Celery worker: the app, its schedule, and the tasks that call the
domain's job functions.

``BROKER_URL`` picks the broker (Redis or RabbitMQ in production). Without it
the broker is a folder under the data directory (kombu's filesystem
transport), which needs no server: enough for one machine.

Tasks carry no state of their own: every run re-reads what is due, so a
retry or a duplicate delivery changes nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from celery.signals import worker_process_shutdown
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from api.database import sqlalchemy_url
from api.settings import Settings, SettingsError
from ledger import Ledger
from ledger.connection import create_pool
from rewards import payments, tasks

T = TypeVar("T")

#: Seconds between runs of each periodic job.
SCHEDULE = {
    "settle-due-earnings": ("api.worker.settle_due_earnings", 60.0),
    "expire-pending-transfers": ("api.worker.expire_pending_transfers", 5.0),
    "evaluate-tiers": ("api.worker.evaluate_tiers", 3600.0),
    "expire-points": ("api.worker.expire_points", 3600.0),
    "process-stripe-inbox": ("api.worker.process_stripe_inbox", 10.0),
}


def create_celery(settings: Settings) -> Celery:
    app = Celery("coalition", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url or "filesystem://",
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        # A task whose worker dies is delivered again: tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        beat_schedule={
            name: {"task": task, "schedule": every} for name, (task, every) in SCHEDULE.items()
        },
    )
    app.conf.coalition_settings = settings
    if not settings.broker_url:
        for sub in ("queue", "processed", "control"):
            (broker_folder(settings) / sub).mkdir(parents=True, exist_ok=True)
    _register_tasks(app)
    return app


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url:
        return {}
    folder = broker_folder(settings)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        # The exchange tables of fanout (broadcast) messages; kombu's default
        # is a folder named "control" in the working directory.
        "control_folder": str(folder / "control"),
    }


def broker_folder(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / "broker"


class Resources:
    """One event loop, asyncpg pool, ledger and SQLAlchemy engine per worker
    thread, made on first use: Celery's tasks are synchronous."""

    _local = threading.local()
    _all: list[Resources] = []
    _lock = threading.Lock()

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(database_url, min_size=1, max_size=4))
        self.ledger = Ledger(self.pool)
        self.engine = create_async_engine(sqlalchemy_url(database_url), pool_size=4)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def current(cls, database_url: str) -> Resources:
        resources: Resources | None = getattr(cls._local, "resources", None)
        if resources is None:
            resources = cls(database_url)
            cls._local.resources = resources
            with cls._lock:
                cls._all.append(resources)
        return resources

    def close(self) -> None:
        self.loop.run_until_complete(self.ledger.close())
        self.loop.run_until_complete(self.pool.close())
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()

    @classmethod
    def close_all(cls) -> None:
        """Close every thread's resources (their threads must be done with them)."""
        with cls._lock:
            everything, cls._all = cls._all, []
        for resources in everything:
            resources.close()
        cls._local = threading.local()


def _database_url(app: Celery) -> str:
    settings: Settings = app.conf.coalition_settings
    if not settings.database_url:
        raise SettingsError("DATABASE_URL: the worker needs a PostgreSQL URL")
    return settings.database_url


def run(app: Celery, job: Callable[[Resources], Awaitable[T]]) -> T:
    resources = Resources.current(_database_url(app))
    return resources.loop.run_until_complete(job(resources))


async def _expire_pending(resources: Resources) -> int:
    total = 0
    while voided := await resources.ledger.expire_pending():
        total += voided
    return total


def _register_tasks(app: Celery) -> None:
    @app.task(name="api.worker.settle_due_earnings", bind=True, shared=False)
    def settle_due_earnings(task: Any) -> int:
        return run(task.app, lambda r: tasks.settle_due_earnings(r.sessions, r.ledger))

    @app.task(name="api.worker.process_stripe_inbox", bind=True, shared=False)
    def process_stripe_inbox(task: Any) -> int:
        return run(task.app, lambda r: payments.process_inbox(r.sessions, r.ledger))

    @app.task(name="api.worker.expire_points", bind=True, shared=False)
    def expire_points(task: Any) -> int:
        return run(task.app, lambda r: tasks.expire_all_points(r.sessions, r.ledger))

    @app.task(name="api.worker.evaluate_tiers", bind=True, shared=False)
    def evaluate_tiers(task: Any) -> int:
        return run(task.app, lambda r: tasks.evaluate_all_tiers(r.sessions))

    @app.task(name="api.worker.expire_pending_transfers", bind=True, shared=False)
    def expire_pending_transfers(task: Any) -> int:
        return run(task.app, _expire_pending)


@worker_process_shutdown.connect
def _close(**_: object) -> None:
    Resources.close_all()
