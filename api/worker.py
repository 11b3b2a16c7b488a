"""The Celery worker: the app, its schedule, and one task per job of the
modules (``api.modules.MODULES``), the outbox's drain among them.

``BROKER_URL`` picks the broker (Redis or RabbitMQ in production). Without it
the broker is a folder under the data directory (kombu's filesystem
transport), which needs no server: enough for one machine.

Tasks carry no state of their own: every run re-reads what is due, so a
retry or a duplicate delivery changes nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from api.database import sqlalchemy_url
from api.modules import JOBS, SUBSCRIBERS
from api.settings import Settings, SettingsError
from core.modules import Job, JobContext
from ledger import Ledger
from ledger.connection import create_pool
from partners import webhook_job, webhook_targets
from partners.webhook_sending import SendingOptions
from partners.webhook_targets import TargetPolicy

#: Seconds a scheduled run may wait in the broker past its successor's time
#: (the folder broker, polled each second, keeps a message a few seconds)
#: before it is dropped.
EXPIRY_SLACK = 10.0


def task_name(job: Job) -> str:
    """The job's task: ``settle-due-earnings`` is ``api.worker.settle_due_earnings``
    (the names the tasks had before the modules listed them, which queued
    messages and ``api.stripe.webhooks`` carry)."""
    return "api.worker." + job.name.replace("-", "_")


def create_celery(settings: Settings) -> Celery:
    app = Celery("coalition", set_as_current=False)
    app.conf.update(
        # The host is meaningless to the folder transport, but kombu warns
        # on every connection that names none.
        broker_url=settings.broker_url or "filesystem://localhost/",
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        # A task whose worker dies is delivered again: tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        beat_schedule={
            job.name: {
                "task": task_name(job),
                "schedule": job.every,
                # A run not started soon after the next one's time is
                # dropped, not queued: the next does the same work. Else a
                # job that runs longer than its period (the webhooks'
                # sender) piles up runs without end, and every other job
                # waits behind them.
                "options": {"expires": job.every + EXPIRY_SLACK},
            }
            for job in JOBS.values()
        },
    )
    app.conf.coalition_settings = settings
    # The webhooks' sender reads where it may send from its process.
    webhook_targets.configure(TargetPolicy(private=settings.webhook_private_targets))
    webhook_job.configure(SendingOptions.within(settings.webhook_timeout_seconds))
    if not settings.broker_url:
        for sub in ("queue", "processed", "control"):
            (broker_folder(settings) / sub).mkdir(parents=True, exist_ok=True)
    for job in JOBS.values():
        app.task(name=task_name(job), bind=True, shared=False)(_task(job))
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
        # Seconds between two looks at the folder (kombu's default, 1 s,
        # makes each hand-over between two runs of a job wait that long).
        "polling_interval": 0.1,
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

    def context(self) -> JobContext:
        return JobContext(
            sessions=self.sessions,
            ledger=self.ledger,
            now=datetime.now(UTC),
            subscribers=SUBSCRIBERS,
        )

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


def run(app: Celery, job: Job) -> int:
    """Run ``job`` once in this thread's resources, its clock read now."""
    resources = Resources.current(_database_url(app))
    return resources.loop.run_until_complete(job.run(resources.context()))


def _task(job: Job) -> Callable[[Any], int]:
    def run_job(task: Any) -> int:
        return run(task.app, job)

    run_job.__doc__ = job.summary
    return run_job


@worker_process_shutdown.connect
def _close(**_: object) -> None:
    Resources.close_all()
