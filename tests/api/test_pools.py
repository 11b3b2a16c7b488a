"""The ledger's pool is the ledger's; the app has its own."""

from __future__ import annotations

import asyncio

import asyncpg
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.settings import Settings, load_settings
from core.principal import system
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member
from tests.api.conftest import ADMIN_TOKEN
from tests.api.test_member_api import SECRET, bearer, token
from tests.conftest import NewProgram


def test_pool_sizes_are_settings() -> None:
    settings = load_settings({"COALITION_DB_POOL_SIZE": "6", "COALITION_LEDGER_POOL_SIZE": "3"})
    assert (settings.db_pool_size, settings.ledger_pool_size) == (6, 3)


async def test_member_reads_do_not_wait_for_the_ledgers_connections(
    database_url: str, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await enrol_member(
        session, ledger, program, Enrolment(external_id="ann"), principal=system("test")
    )
    await session.commit()
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        sweep_interval=0,
        db_pool_size=3,
        ledger_pool_size=2,
    )
    app = create_app(settings, database_url=database_url)
    async with AsyncTestClient(app=app) as client:
        ledgers: asyncpg.Pool = app.state.ledger.pool
        pool: asyncpg.Pool = app.state.pool
        assert ledgers is not pool
        assert (pool.get_max_size(), ledgers.get_max_size()) == (3, 2)
        # Every connection of the ledger's pool busy (its writer's batches,
        # say): the member balance is read on the app's pool all the same.
        # The pools live on the app's event loop (the client's portal).
        portal = client.blocking_portal
        held = [portal.call(ledgers.acquire) for _ in range(ledgers.get_max_size())]
        try:
            answer = await asyncio.wait_for(
                client.get("/me/balance", headers=bearer(token(program.slug, "ann"))), 5
            )
        finally:
            for connection in held:
                portal.call(ledgers.release, connection)
        assert answer.status_code == 200, answer.text
        assert answer.json()["available"] == 0
    assert pool.is_closing()
    assert ledgers.is_closing()
