"""Timed-out pending transfers are voided: by the app's sweeper, or by the CLI."""

from __future__ import annotations

import asyncio
import uuid

from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from ledger import repository
from tests.api.conftest import ADMIN_TOKEN, AUTH, Book, post_transfers
from tests.api.test_cli import run


async def test_app_sweeper_voids_timed_out_holds(database_url: str, book: Book) -> None:
    app = create_app(
        Settings(admin_token=ADMIN_TOKEN, sweep_interval=0.2), database_url=database_url
    )
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        hold = book.transfer(book.issuance, book.alice, 30, flags=2, timeout=1)
        assert [r["result"] for r in await post_transfers(client, hold)] == ["ok"]
        account = (await client.get(f"/ledger/accounts/{book.alice}")).json()
        assert account["credits_pending"] == 30
        expiry = repository.expiry_transfer_id(uuid.UUID(hold["id"]))
        for _ in range(50):
            await asyncio.sleep(0.1)
            if (await client.get(f"/ledger/transfers/{expiry}")).status_code == 200:
                break
        void = (await client.get(f"/ledger/transfers/{expiry}")).json()
        assert void["pending_id"] == hold["id"]
        assert void["flags"] == 8
        account = (await client.get(f"/ledger/accounts/{book.alice}")).json()
        assert (account["credits_pending"], account["credits_posted"]) == (0, 0)


def test_cli_expire_voids_due_holds(private_database: str) -> None:
    from tests.api.test_cli import sql

    async def prepare() -> None:
        from ledger import Account, Ledger, Transfer, TransferFlags
        from ledger.connection import create_pool
        from ledger.schemas import Ledger as LedgerDefinition

        pool = await create_pool(private_database, min_size=1, max_size=2)
        ledger = Ledger(pool)
        await ledger.create_ledger(LedgerDefinition(id=7, name="seven"))
        a, b = uuid.uuid4(), uuid.uuid4()
        await ledger.create_accounts(
            [Account(id=a, ledger=7, code=1), Account(id=b, ledger=7, code=1)]
        )
        await ledger.create_transfers(
            [
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=a,
                    credit_account_id=b,
                    amount=5,
                    ledger=7,
                    code=1,
                    flags=TransferFlags.PENDING,
                    timeout=1,
                )
                for _ in range(3)
            ]
        )
        await ledger.close()
        await pool.close()

    asyncio.run(prepare())
    asyncio.run(asyncio.sleep(1.2))
    result = run(["ledger", "expire"], DATABASE_URL=private_database)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ledger expire: 3 pending transfers voided\n"
    assert sql(private_database, "SELECT sum(debits_pending) FROM accounts") == 0
    again = run(["ledger", "expire"], DATABASE_URL=private_database)
    assert again.stdout == "ledger expire: 0 pending transfers voided\n"
