"""The money ledger: one ledger per program and currency (minor units, the
currency's scale), on which statements, payments and payouts move money
between a partner's receivable and payable accounts and the program's
revenue, redemption cost, cash and prepaid accounts.

What a partner owes is then its receivable's debit balance, what the
program owes it its payable's credit balance: account balances that
finance reconciles, never a sum kept beside the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode, derived_id, money_account_id
from core.models import Program
from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags
from ledger.schemas import Ledger as LedgerDefinition
from partners.statement_lines import Line
from partners.statement_models import LineKind
from rewards.connections import session_connection
from rewards.errors import LedgerRefused

#: ISO 4217 currencies whose minor unit is not a hundredth.
_EXPONENTS = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
#: An advisory lock's first key: opening a money ledger (second: its name).
_OPENING_LOCK = 1297042503

_PROGRAM_ACCOUNTS = (
    AccountCode.PARTNER_REVENUE,
    AccountCode.PARTNER_REDEMPTION_COST,
    AccountCode.PARTNER_CASH,
)
_PARTNER_ACCOUNTS = {
    # Credits (payments) never exceed what was billed: an overpayment is refused.
    AccountCode.PARTNER_RECEIVABLE: AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
    # Debits (payouts) never exceed what is owed: a payout beyond it is refused.
    AccountCode.PARTNER_PAYABLE: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountCode.PARTNER_PREPAID: AccountFlags.NONE,
}


def asset_scale(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def ledger_name(program: Program, currency: str) -> str:
    return f"money:{program.slug}:{currency}"


async def money_ledger(
    session: AsyncSession, ledger: Ledger, program: Program, currency: str
) -> int:
    """The id of the program's money ledger in ``currency``, created on
    first use (under an advisory lock, so two first uses make one; the
    ledger commits on its own and is found by its name on a retry)."""
    name = ledger_name(program, currency)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:name))"),
        {"key": _OPENING_LOCK, "name": name},
    )
    found = await ledger.ledger_named(name)
    if found is not None:
        return found.id
    ledger_id = int(await session.scalar(text("SELECT nextval('program_ledger_id_seq')")) or 0)
    await ledger.create_ledger(
        LedgerDefinition(id=ledger_id, name=name, asset_scale=asset_scale(currency))
    )
    return ledger_id


async def open_money_accounts(
    ledger: Ledger, program: Program, currency: str, ledger_id: int, partner_id: uuid.UUID
) -> None:
    """The program's money accounts and the partner's (ids derived: opening
    again is a no-op)."""
    accounts = [
        Account(
            id=money_account_id(program.id, currency, role),
            ledger=ledger_id,
            code=role,
        )
        for role in _PROGRAM_ACCOUNTS
    ] + [
        Account(
            id=money_account_id(program.id, currency, role, partner_id),
            ledger=ledger_id,
            code=role,
            flags=flags,
        )
        for role, flags in _PARTNER_ACCOUNTS.items()
    ]
    outcomes = await ledger.create_accounts(accounts)
    refused = [o for o in outcomes if o.result not in ("ok", "exists")]
    if refused:
        raise LedgerRefused(f"money account {refused[0].id} was refused: {refused[0].result}")


def _leg(line: Line) -> tuple[TransferCode, AccountCode, AccountCode, int]:
    """The movement of one line: (code, debited, credited, amount)."""
    amount = abs(line.amount_minor)
    if line.kind == LineKind.REDEEMED:
        return (
            TransferCode.PARTNER_REIMBURSEMENT,
            AccountCode.PARTNER_REDEMPTION_COST,
            AccountCode.PARTNER_PAYABLE,
            amount,
        )
    if line.kind == LineKind.REFUNDED:
        # A refund gives back part of a reimbursement: the partner owes it.
        return (
            TransferCode.PARTNER_REIMBURSEMENT,
            AccountCode.PARTNER_RECEIVABLE,
            AccountCode.PARTNER_REDEMPTION_COST,
            amount,
        )
    if line.kind == LineKind.PREPAID_CREDIT:
        return (
            TransferCode.PARTNER_PREPAID_DRAWN,
            AccountCode.PARTNER_PREPAID,
            AccountCode.PARTNER_RECEIVABLE,
            amount,
        )
    code = (
        TransferCode.PARTNER_LIABILITY_TRANSFER
        if line.kind == LineKind.LIABILITY
        else TransferCode.PARTNER_SETTLEMENT
    )
    return code, AccountCode.PARTNER_RECEIVABLE, AccountCode.PARTNER_REVENUE, amount


def _account(
    program: Program, currency: str, role: AccountCode, partner_id: uuid.UUID
) -> uuid.UUID:
    owner = partner_id if role in _PARTNER_ACCOUNTS else None
    return money_account_id(program.id, currency, role, owner)


async def post_statement(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    *,
    statement_id: uuid.UUID,
    partner_id: uuid.UUID,
    currency: str,
    ledger_id: int,
    lines: Sequence[tuple[int, Line]],
) -> None:
    """Post an issued statement's lines as one linked chain (all or
    nothing), in the session's transaction, then set off what it owes both
    ways, so that only the net is left on one side. Ids derive from the
    statement and the line: posting again moves nothing twice. Call last:
    from here to the commit the transaction holds the ledger's lock."""
    transfers: list[Transfer] = []
    owed = billed_back = 0
    for number, line in lines:
        if line.amount_minor == 0:
            continue
        code, debit, credit, amount = _leg(line)
        transfers.append(
            Transfer(
                id=derived_id(program.id, "statement", str(statement_id), str(number)),
                debit_account_id=_account(program, currency, debit, partner_id),
                credit_account_id=_account(program, currency, credit, partner_id),
                amount=amount,
                ledger=ledger_id,
                code=code,
                flags=TransferFlags.LINKED,
                metadata={"statement": str(statement_id), "line": number},
            )
        )
        if credit == AccountCode.PARTNER_PAYABLE:
            owed += amount
        elif debit == AccountCode.PARTNER_RECEIVABLE:
            billed_back += amount
        elif credit == AccountCode.PARTNER_RECEIVABLE:
            billed_back -= amount
    setoff = min(owed, billed_back)
    if setoff > 0:
        transfers.append(
            Transfer(
                id=derived_id(program.id, "statement", str(statement_id), "netting"),
                debit_account_id=_account(
                    program, currency, AccountCode.PARTNER_PAYABLE, partner_id
                ),
                credit_account_id=_account(
                    program, currency, AccountCode.PARTNER_RECEIVABLE, partner_id
                ),
                amount=setoff,
                ledger=ledger_id,
                code=TransferCode.PARTNER_NETTING,
                metadata={"statement": str(statement_id)},
            )
        )
    if not transfers:
        return
    last = transfers[-1]
    transfers[-1] = msgspec.structs.replace(last, flags=TransferFlags.NONE)
    outcomes = await ledger.create_transfers_within(await session_connection(session), transfers)
    refused = [o for o in outcomes if o.result not in ("ok", "exists")]
    if refused:
        raise LedgerRefused(f"the statement's money transfer was refused: {refused[0].result}")


async def move_money(
    session: AsyncSession,
    ledger: Ledger,
    *,
    transfer_id: uuid.UUID,
    ledger_id: int,
    code: TransferCode,
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount: int,
    metadata: dict[str, object],
) -> str:
    """One movement of money in the session's transaction; answers the
    ledger's result (``ok``, ``exists``, or why it refused). Call last."""
    [outcome] = await ledger.create_transfers_within(
        await session_connection(session),
        [
            Transfer(
                id=transfer_id,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                ledger=ledger_id,
                code=code,
                metadata=metadata,
            )
        ],
    )
    return str(outcome.result)


async def money_balances(
    ledger: Ledger, program: Program, currency: str, partner_id: uuid.UUID
) -> tuple[int, int]:
    """What the partner owes the program and what the program owes it, in
    ``currency`` (0, 0 before its first statement)."""
    receivable = money_account_id(program.id, currency, AccountCode.PARTNER_RECEIVABLE, partner_id)
    payable = money_account_id(program.id, currency, AccountCode.PARTNER_PAYABLE, partner_id)
    found = {a.id: a for a in await ledger.lookup_accounts([receivable, payable])}
    owes = (
        found[receivable].debits_posted - found[receivable].credits_posted
        if receivable in found
        else 0
    )
    owed = found[payable].credits_posted - found[payable].debits_posted if payable in found else 0
    return owes, owed
