"""``Ledger``: the one Python API to the points ledger.

Every other package moves points through this class; nothing else writes the
ledger's tables. Writes go through the micro-batching writer; reads are plain
queries on the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from ledger import lots, repository
from ledger.connection import create_pool
from ledger.errors import BatchTooLarge, InvalidCursor
from ledger.schemas import (
    BATCH_MAX,
    AccountFlags,
    AccountOutcome,
    AccountState,
    Balance,
    CreateAccountResult,
    HistoryPage,
    LedgerTotals,
    StatementSum,
    StatementWindow,
    Transfer,
    TransferFlags,
    TransferOutcome,
    TransferState,
)
from ledger.schemas import Account as AccountRequest
from ledger.schemas import Ledger as LedgerDefinition
from ledger.writer import TransferWriter, post_batch

_ACCOUNT_RESULTS = tuple(CreateAccountResult)


class Ledger:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = BATCH_MAX) -> None:
        self.pool = pool
        self._writer = TransferWriter(pool, max_batch=max_batch)
        self._owns_pool = False

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        max_size: int,
        command_timeout: float = 60,
        connect_timeout: float = 60,
    ) -> Ledger:
        """A ledger on a pool of its own, closed by ``close``: the app's
        queries then never wait behind the writer's batches for a connection,
        nor the writer behind them."""
        pool = await create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
        )
        ledger = cls(pool)
        ledger._owns_pool = True
        return ledger

    async def close(self) -> None:
        await self._writer.close()
        if self._owns_pool:
            await self.pool.close()

    # -- writes ---------------------------------------------------------------

    async def create_ledger(self, definition: LedgerDefinition, *, time_zone: str = "UTC") -> bool:
        """Create a ledger (a points currency); False if it already exists.

        ``time_zone`` (an IANA name PostgreSQL knows, else
        ``asyncpg.InvalidParameterValueError``) gives the ledger's accounting
        days; it is kept when the ledger exists already."""
        status = await self.pool.execute(
            "INSERT INTO ledgers (id, name, asset_scale, time_zone) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (id) DO NOTHING",
            definition.id,
            definition.name,
            definition.asset_scale,
            time_zone,
        )
        return status.endswith(" 1")

    async def create_accounts(self, accounts: Sequence[AccountRequest]) -> list[AccountOutcome]:
        _check_batch(len(accounts))
        if not accounts:
            return []
        codes = await self.pool.fetchval(
            "SELECT ledger_create_accounts($1::uuid[], $2::integer[], $3::integer[],"
            " $4::integer[], $5::jsonb[])",
            [a.id for a in accounts],
            [a.ledger for a in accounts],
            [a.code for a in accounts],
            [int(a.flags) for a in accounts],
            [a.metadata for a in accounts],
        )
        return [
            AccountOutcome(id=a.id, result=_ACCOUNT_RESULTS[code])
            for a, code in zip(accounts, codes, strict=True)
        ]

    async def create_transfers(self, transfers: Sequence[Transfer]) -> list[TransferOutcome]:
        """Post a batch with the semantics of posting each transfer in order.

        Raises ``LedgerUnavailable`` if the database did not confirm the batch;
        retrying the same ids is then safe (a recorded transfer answers
        ``exists``).
        """
        _check_batch(len(transfers))
        return await self._writer.submit(transfers)

    async def create_transfers_within(
        self,
        connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
        transfers: Sequence[Transfer],
    ) -> list[TransferOutcome]:
        """``create_transfers`` inside the caller's open transaction on
        ``connection``: the transfers commit, or roll back, with the caller's
        own writes.

        From this call to its end the transaction holds the ledger's lock.
        Before it ends it must not wait on the writer (``create_transfers``),
        nor on any lock that a caller waiting on the writer may hold (a
        member's row, say): the writer's batch mixes ledgers and would wait
        for this lock, and PostgreSQL cannot see that cycle.
        """
        _check_batch(len(transfers))
        if not transfers:
            return []
        [outcomes] = await post_batch(connection, [transfers])
        return outcomes

    async def expire_pending(self, *, limit: int = 1000) -> int:
        """Void pending transfers whose timeout has passed; returns how many.

        Each expiry is a ``VOID_PENDING`` transfer with an id derived from the
        pending one, so two sweepers racing void each at most once.
        """
        due = await repository.due_pending(self.pool, limit)
        if not due:
            return 0
        voids = [
            Transfer(
                id=repository.expiry_transfer_id(pending_id),
                pending_id=pending_id,
                flags=TransferFlags.VOID_PENDING,
                metadata={"reason": "expired"},
            )
            for pending_id in due
        ]
        outcomes = await self.create_transfers(voids)
        return sum(1 for o in outcomes if o.ok)

    async def settle_lots(self) -> int:
        """Write what the lot accounts' plain movements made and consumed,
        ledger by ledger (each under its own lock, briefly); returns the lot
        movements written. What a movement makes or consumes is fixed when it
        posts: this only writes it down (``ledger.lots.settle_lots``)."""
        written = 0
        for ledger_id in await self.pool.fetch("SELECT id FROM ledgers ORDER BY id"):
            settled = await lots.settle_lots(self.pool, ledger=ledger_id["id"])
            written += settled.movements
        return written

    # -- reads ----------------------------------------------------------------

    async def lookup_accounts(self, ids: Sequence[UUID]) -> list[AccountState]:
        rows = await self.pool.fetch(repository.LOOKUP_ACCOUNTS, list(ids))
        return [_account(row) for row in rows]

    async def accounts_of(
        self, ledger: int, *, except_codes: Sequence[int] = ()
    ) -> list[AccountState]:
        """The accounts of ``ledger`` whose code is none of ``except_codes``,
        by id (a program's accounts other than its members', say: a few,
        whose balances sum, by double entry, to what the others hold)."""
        rows = await self.pool.fetch(repository.ACCOUNTS_OF, ledger, list(except_codes))
        return [_account(row) for row in rows]

    async def lookup_transfers(self, ids: Sequence[UUID]) -> list[TransferState]:
        rows = await self.pool.fetch(repository.LOOKUP_TRANSFERS, list(ids))
        return [_transfer(row) for row in rows]

    async def balances_as_of(
        self, ids: Sequence[UUID], at: datetime, *, effective: bool = False
    ) -> list[Balance]:
        """Balances implied by the transfers recorded up to ``at`` (or, with
        ``effective``, whose business time is up to ``at``)."""
        query = repository.BALANCES_AS_OF_EFFECTIVE if effective else repository.BALANCES_AS_OF
        rows = await self.pool.fetch(query, list(ids), at)
        return [Balance(**dict(row)) for row in rows]

    async def history(
        self, account_id: UUID, *, limit: int = 50, cursor: str | None = None
    ) -> HistoryPage:
        """Transfers touching the account, newest first, a page at a time."""
        before = _decode_cursor(cursor)
        rows = await self.pool.fetch(repository.HISTORY, account_id, before, limit + 1)
        transfers = [_transfer(row) for row in rows[:limit]]
        more = len(rows) > limit
        return HistoryPage(
            transfers=transfers,
            next_cursor=str(transfers[-1].timestamp) if more and transfers else None,
        )

    async def totals(self, ledger: int | None = None) -> list[LedgerTotals]:
        rows = await self.pool.fetch(repository.TOTALS, ledger)
        return [LedgerTotals(**dict(row)) for row in rows]

    async def posted_credits_up_to(self, ids: Sequence[UUID], at: datetime) -> dict[UUID, int]:
        """Per account, the posted credits recorded up to ``at``."""
        rows = await self.pool.fetch(repository.POSTED_CREDITS_UP_TO, list(ids), at)
        return {row["account_id"]: row["credits"] for row in rows}

    async def last_activity(self, ids: Sequence[UUID]) -> dict[UUID, datetime | None]:
        """Per account, when a transfer last touched it."""
        rows = await self.pool.fetch(repository.LAST_ACTIVITY, list(ids))
        return {row["account_id"]: row["at"] for row in rows}

    async def resolved(self, pending_ids: Sequence[UUID]) -> set[UUID]:
        """Those of the pending transfers already posted, voided or expired."""
        if not pending_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT pending_id FROM transfers WHERE pending_id = ANY($1::uuid[])",
            list(pending_ids),
        )
        return {row["pending_id"] for row in rows}

    async def count_transfers(self, ledger: int | None = None) -> int:
        """Transfers recorded (in ``ledger``, or in all): a full count, for operators."""
        count = await self.pool.fetchval(
            "SELECT count(*) FROM transfers"
            " WHERE ledger <> 0 AND ($1::integer IS NULL OR ledger = $1)",
            ledger,
        )
        return int(count)

    async def latest_timestamp(self, ids: Sequence[UUID]) -> int:
        """The ledger timestamp of the last transfer touching any of the
        accounts (0 if none): a statement's cutoff. A transfer of these
        accounts committed later always has a larger one (timestamps are
        taken under the ledger's lock)."""
        value = await self.pool.fetchval(repository.LATEST_TIMESTAMP, list(ids))
        return int(value or 0)

    async def statement_sums(
        self,
        window: StatementWindow,
        *,
        version_starts: Sequence[datetime],
        period_unit: str,
        time_zone: str,
    ) -> list[StatementSum]:
        """The sums of a statement's transfers, grouped in the database (a
        statement over a million transfers loads none of them)."""
        rows = await self.pool.fetch(
            repository.STATEMENT_SUMS,
            list(window.debited),
            list(window.credited),
            list(window.codes),
            window.after,
            window.up_to,
            window.period_start,
            window.period_end,
            window.settled_up_to,
            list(version_starts),
            period_unit,
            time_zone,
        )
        return [StatementSum(**dict(row)) for row in rows]

    async def statement_line_transfers(
        self,
        window: StatementWindow,
        *,
        account_id: UUID,
        debit: bool,
        code: int,
        business_from: datetime,
        business_until: datetime,
        before: int | None,
        limit: int,
    ) -> list[TransferState]:
        """The transfers a statement line counts (one side and code, business
        time in ``[business_from, business_until)``), newest first, before
        the timestamp ``before``."""
        query = repository.STATEMENT_LINE_TRANSFERS.format(side="debit" if debit else "credit")
        rows = await self.pool.fetch(
            query,
            account_id,
            code,
            window.after,
            window.up_to,
            limit,
            business_from,
            business_until,
            window.period_start,
            window.settled_up_to,
            before if before is not None else 2**63 - 1,
        )
        return [_transfer(row) for row in rows]

    async def ledgers(self) -> list[LedgerDefinition]:
        rows = await self.pool.fetch("SELECT id, name, asset_scale FROM ledgers ORDER BY id")
        return [LedgerDefinition(**dict(row)) for row in rows]

    async def ledger_named(self, name: str) -> LedgerDefinition | None:
        row = await self.pool.fetchrow(
            "SELECT id, name, asset_scale FROM ledgers WHERE name = $1", name
        )
        return LedgerDefinition(**dict(row)) if row is not None else None


def _check_batch(size: int) -> None:
    if size > BATCH_MAX:
        raise BatchTooLarge(f"a batch holds at most {BATCH_MAX} items, got {size}")


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**63 - 1
    try:
        value = int(cursor)
    except ValueError:
        raise InvalidCursor(f"not a history cursor: {cursor!r}") from None
    # A cursor is a ledger timestamp: a positive bigint.
    if not 0 < value <= 2**63 - 1:
        raise InvalidCursor(f"not a history cursor: {cursor!r}")
    return value


def _account(row: asyncpg.Record) -> AccountState:
    values: dict[str, Any] = dict(row)
    values["flags"] = AccountFlags(values["flags"])
    return AccountState(**values)


def _transfer(row: asyncpg.Record) -> TransferState:
    values: dict[str, Any] = dict(row)
    values["flags"] = TransferFlags(values["flags"])
    return TransferState(**values)
