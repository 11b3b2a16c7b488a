"""The trial balance of a program's ledger as of any day: per account code,
the posted debits and credits of its accounts up to the end of that
accounting day, from the ledger's daily aggregates
(``ledger.lots.account_code_balances``).

Two ledgers per program: its points ledger (in points) and its money
ledger in a currency (minor units; ``partners.money_ledger``), which exists
once a statement or a payment has used it. Every transfer debits one
account and credits another of the same ledger, so the debits and the
credits of a trial balance are equal: the report says so (``balanced``)
and shows the difference, never hides it.

Each line names its account code, and its general ledger account where
``finance.gl_accounts`` maps the code (the money accounts); the points
accounts keep the code's own name.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Annotated

import msgspec
import pyarrow as pa
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from finance.gl_accounts import GlAccounts
from ledger import Ledger, lots
from ledger.liability_reads import ledger_time_zone
from partners.money_ledger import ledger_name
from rewards.connections import session_connection


class TrialBalanceLedger(enum.StrEnum):
    POINTS = "points"
    MONEY = "money"


class TrialBalanceLine(msgspec.Struct, frozen=True, kw_only=True):
    account_code: Annotated[int, msgspec.Meta(description="The ledger's account code.")]
    account: Annotated[str, msgspec.Meta(description="The code's name (e.g. member_wallet).")]
    gl_account: Annotated[
        str,
        msgspec.Meta(
            description="The general ledger account the code maps to; the code's name when"
            " none does."
        ),
    ]
    debits: Annotated[int, msgspec.Meta(description="Posted debits through `as_of`.")]
    credits: Annotated[int, msgspec.Meta(description="Posted credits through `as_of`.")]
    balance: Annotated[
        int, msgspec.Meta(description="`debits` less `credits` (negative: a credit balance).")
    ]


class TrialBalance(msgspec.Struct, frozen=True, kw_only=True):
    program: Annotated[str, msgspec.Meta(description="The program's slug.")]
    ledger: Annotated[TrialBalanceLedger, msgspec.Meta(description="Which of its ledgers.")]
    ledger_id: Annotated[
        int | None,
        msgspec.Meta(description="The ledger's id; null: no money ledger in `unit` yet."),
    ]
    unit: Annotated[
        str,
        msgspec.Meta(
            description="`points`, or the money ledger's currency (ISO 4217, in minor units)."
        ),
    ]
    as_of: Annotated[date, msgspec.Meta(description="The accounting day, included.")]
    time_zone: Annotated[
        str, msgspec.Meta(description="The time zone of the ledger's accounting days.")
    ]
    lines: Annotated[list[TrialBalanceLine], msgspec.Meta(description="One per account code.")]
    debits: Annotated[int, msgspec.Meta(description="The sum of the lines' debits.")]
    credits: Annotated[int, msgspec.Meta(description="The sum of the lines' credits.")]
    difference: Annotated[int, msgspec.Meta(description="`debits` less `credits`: zero.")]
    balanced: Annotated[bool, msgspec.Meta(description="Whether debits equal credits.")]


def account_name(code: int) -> str:
    try:
        return AccountCode(code).name.lower()
    except ValueError:
        return f"code {code}"


async def trial_balance(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    as_of: date,
    which: TrialBalanceLedger = TrialBalanceLedger.POINTS,
    *,
    currency: str | None = None,
    principal: Principal,
) -> TrialBalance:
    """The trial balance of the program's points ledger, or of its money
    ledger in ``currency`` (the program's currency by default)."""
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    unit = "points"
    ledger_id: int | None = program.ledger_id
    if which is TrialBalanceLedger.MONEY:
        unit = currency or program.currency
        found = await ledger.ledger_named(ledger_name(program, unit))
        ledger_id = found.id if found is not None else None
    connection = await session_connection(session)
    gl = GlAccounts()
    lines: list[TrialBalanceLine] = []
    zone = "UTC"
    if ledger_id is not None:
        zone = await ledger_time_zone(connection, ledger_id)
        balances = await lots.account_code_balances(connection, ledger=ledger_id, as_of=as_of)
        for b in sorted(balances, key=lambda b: b.account_code):
            name = account_name(b.account_code)
            mapped = gl.for_account(b.account_code)
            lines.append(
                TrialBalanceLine(
                    account_code=b.account_code,
                    account=name,
                    gl_account=name if mapped.startswith("unmapped:") else mapped,
                    debits=b.debits,
                    credits=b.credits,
                    balance=b.debits - b.credits,
                )
            )
    debits = sum(line.debits for line in lines)
    credits = sum(line.credits for line in lines)
    return TrialBalance(
        program=program.slug,
        ledger=which,
        ledger_id=ledger_id,
        unit=unit,
        as_of=as_of,
        time_zone=zone,
        lines=lines,
        debits=debits,
        credits=credits,
        difference=debits - credits,
        balanced=debits == credits,
    )


#: The columns of a trial balance's export, one row per account code.
EXPORT_SCHEMA = pa.schema(
    [
        ("program", pa.string()),
        ("ledger", pa.string()),
        ("unit", pa.string()),
        ("as_of", pa.date32()),
        ("account_code", pa.int32()),
        ("account", pa.string()),
        ("gl_account", pa.string()),
        ("debits", pa.int64()),
        ("credits", pa.int64()),
        ("balance", pa.int64()),
    ]
)


async def export_rows(report: TrialBalance) -> AsyncIterator[Sequence[object]]:
    """``report``'s lines as rows of ``EXPORT_SCHEMA``."""
    for line in report.lines:
        yield (
            report.program,
            report.ledger.value,
            report.unit,
            report.as_of,
            line.account_code,
            line.account,
            line.gl_account,
            line.debits,
            line.credits,
            line.balance,
        )
