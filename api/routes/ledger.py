"""The operator API of the points ledger: ledgers, accounts, transfers.

Handlers translate HTTP to ``ledger.Ledger`` calls and back; the ledger
decides everything else. A transfer or account that fails is a per-item
result in a 200 answer, as in TigerBeetle; only a request that cannot be
taken at all is an HTTP error.

The ledger's accounts and transfers belong to every program at once, with
no tenant of their own to filter by: a key bound to one program may not
use these routes (403, see ``api.access.platform_only``).
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter, PathParameter, QueryParameter

from api.access import platform_only
from api.problems import not_found, problem, problem_responses
from api.schemas import (
    HISTORY_CURSOR_MAX,
    AccountBatch,
    AccountResults,
    Basis,
    TransferBatch,
    TransferResults,
)
from ledger import AccountState, HistoryPage, Ledger, LedgerTotals, TransferState
from ledger.bounds import INTEGER_MAX, MOMENT_RULE, moment_fault
from ledger.schemas import Ledger as LedgerDefinition

HISTORY_LIMIT_MAX = 500

LedgerIdPath = Annotated[int, Parameter(ge=1, le=INTEGER_MAX, description="The ledger's id.")]
AccountIdPath = Annotated[UUID, PathParameter(description="The account's id.")]
TransferIdPath = Annotated[UUID, PathParameter(description="The transfer's id.")]
#: Opaque to clients; the ledger refuses what it did not hand out (invalid-cursor).
HistoryCursor = Annotated[
    str | None,
    QueryParameter(
        max_length=HISTORY_CURSOR_MAX,
        description="The `next_cursor` of the previous page; none for the newest page.",
    ),
]


def _problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Every ledger route may answer 401 (no token), 403 (an API key without the
    scope, or bound to one program) and 503 (the database is unavailable)."""
    return problem_responses(
        HTTPStatus.UNAUTHORIZED,
        HTTPStatus.FORBIDDEN,
        HTTPStatus.SERVICE_UNAVAILABLE,
        *statuses,
    )


#: What a body may also cause: invalid (400), too large (413), a stored bound
#: broken (422).
_BODY = (
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    HTTPStatus.UNPROCESSABLE_ENTITY,
)


class LedgerController(Controller):
    path = "/ledger"
    tags = ["ledger"]
    # After the router's scope guard, which identifies the caller.
    guards = [platform_only]

    @post(
        "/ledgers",
        summary="Create a ledger",
        description="Creates a ledger (a points currency). Sending the same ledger again"
        " answers 200 with it; another ledger under the same id or name is a conflict.",
        status_code=HTTPStatus.CREATED,
        responses={
            HTTPStatus.OK: ResponseSpec(
                data_container=LedgerDefinition,
                description="The ledger exists already, with the same fields",
                generate_examples=False,
            ),
            **_problems(*_BODY, HTTPStatus.CONFLICT),
        },
    )
    async def create_ledger(
        self, data: JSONBody[LedgerDefinition], ledger: NamedDependency[Ledger]
    ) -> Response[LedgerDefinition]:
        try:
            created = await ledger.create_ledger(data)
        except asyncpg.UniqueViolationError:
            raise problem(
                HTTPStatus.CONFLICT,
                "ledger-name-taken",
                f"another ledger is already named {data.name!r}",
            ) from None
        if created:
            return Response(data, status_code=HTTPStatus.CREATED)
        existing = next((d for d in await ledger.ledgers() if d.id == data.id), None)
        if existing is None or existing != data:
            held = f" as {existing.name!r}, scale {existing.asset_scale}" if existing else ""
            raise problem(
                HTTPStatus.CONFLICT,
                "ledger-exists-with-different-fields",
                f"ledger {data.id} already exists{held}",
            )
        return Response(existing, status_code=HTTPStatus.OK)

    @get("/ledgers", summary="List ledgers", responses=_problems())
    async def list_ledgers(self, ledger: NamedDependency[Ledger]) -> list[LedgerDefinition]:
        return await ledger.ledgers()

    @get(
        "/ledgers/{ledger_id:int}/totals",
        summary="Totals of a ledger",
        description="Sums of the balances of every account of the ledger; posted debits"
        " always equal posted credits.",
        responses=_problems(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND),
    )
    async def ledger_totals(
        self, ledger_id: LedgerIdPath, ledger: NamedDependency[Ledger]
    ) -> LedgerTotals:
        totals = await ledger.totals(ledger_id)
        if not totals:
            raise not_found(f"ledger {ledger_id}")
        return totals[0]

    @post(
        "/accounts",
        summary="Create accounts",
        description="Creates up to 8,000 accounts; answers one result per account, in order.",
        status_code=HTTPStatus.OK,
        responses=_problems(*_BODY),
    )
    async def create_accounts(
        self, data: JSONBody[AccountBatch], ledger: NamedDependency[Ledger]
    ) -> AccountResults:
        return AccountResults(results=await ledger.create_accounts(data.accounts))

    @get(
        "/accounts/{account_id:uuid}",
        summary="Look up an account",
        description="The account with its balances; with `as_of`, the balances implied by"
        " the transfers up to that time, by the time they were recorded or (with"
        " `basis=effective`) by their business time.",
        responses=_problems(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND),
    )
    async def get_account(
        self,
        account_id: AccountIdPath,
        ledger: NamedDependency[Ledger],
        as_of: Annotated[
            datetime | None,
            QueryParameter(description=f"Balances as of this time. {MOMENT_RULE}"),
        ] = None,
        basis: Annotated[
            Basis,
            QueryParameter(
                description="With `as_of`: `recorded` counts the transfers recorded by then,"
                " `effective` those whose business time (`effective_at`, else the time"
                " recorded) is by then."
            ),
        ] = "recorded",
    ) -> AccountState:
        accounts = await ledger.lookup_accounts([account_id])
        if not accounts:
            raise not_found(f"account {account_id}")
        account = accounts[0]
        if as_of is None:
            return account
        if fault := moment_fault(as_of):
            raise ValidationException(
                detail=f"as_of: {fault}",
                extra=[{"key": "as_of", "source": "query", "message": fault}],
            )
        (balance,) = await ledger.balances_as_of(
            [account_id], as_of, effective=basis == "effective"
        )
        return msgspec.structs.replace(
            account,
            debits_pending=balance.debits_pending,
            debits_posted=balance.debits_posted,
            credits_pending=balance.credits_pending,
            credits_posted=balance.credits_posted,
        )

    @get(
        "/accounts/{account_id:uuid}/transfers",
        summary="Transfers of an account",
        description="The transfers debiting or crediting the account, newest first, a page"
        " at a time; pass `next_cursor` back as `cursor` for the next page.",
        responses=_problems(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND),
    )
    async def account_transfers(
        self,
        account_id: AccountIdPath,
        ledger: NamedDependency[Ledger],
        limit: Annotated[
            int,
            QueryParameter(ge=1, le=HISTORY_LIMIT_MAX, description="The most transfers to answer."),
        ] = 50,
        cursor: HistoryCursor = None,
    ) -> HistoryPage:
        page = await ledger.history(account_id, limit=limit, cursor=cursor)
        if not page.transfers and not await ledger.lookup_accounts([account_id]):
            raise not_found(f"account {account_id}")
        return page

    @post(
        "/transfers",
        summary="Create transfers",
        description="Posts up to 8,000 transfers with the semantics of posting each in"
        " order; answers one result per transfer. Ids are idempotency keys: a retry"
        " answers `exists`.",
        status_code=HTTPStatus.OK,
        responses=_problems(*_BODY),
    )
    async def create_transfers(
        self, data: JSONBody[TransferBatch], ledger: NamedDependency[Ledger]
    ) -> TransferResults:
        return TransferResults(results=await ledger.create_transfers(data.transfers))

    @get(
        "/transfers/{transfer_id:uuid}",
        summary="Look up a transfer",
        responses=_problems(HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND),
    )
    async def get_transfer(
        self, transfer_id: TransferIdPath, ledger: NamedDependency[Ledger]
    ) -> TransferState:
        transfers = await ledger.lookup_transfers([transfer_id])
        if not transfers:
            raise not_found(f"transfer {transfer_id}")
        return transfers[0]
