"""The roll-forward of a program's outstanding points over a period:

    opening + earned + bonuses + bought + redeemed + expired + exchanged
            + transferred + adjustments = closing

one line per kind of movement (transfer code), each the signed change it
made to the points members hold (redemptions and expiries are negative,
their cancellations and reinstatements positive), grouped under the
category ``LINES`` gives its code. Every transfer code of ``core.codes``
has its place in ``LINES`` (a test fails on a code without one); a code
that moves no member's points is listed with no category, and should one
ever move lots it is shown under ``unexpected``, never folded into another
line.

The figures come from the ledger's daily aggregates of lot movements
(``ledger.lots``): the opening is the outstanding points at the end of the
day before the period, the closing at the end of its last day. The
roll-forward then ties to the ledger's own totals: per code, what the
lots moved against what the transfers moved in and out of the wallets
(``ledger.lots.daily_totals``), and the closing against the wallets'
posted balances (``ledger.lots.account_code_balances``); each difference
is shown, and is zero when lots and ledger agree.

With a partner, only the lots that partner issued count (its own opening,
lines and closing); the tie to the ledger is the program's, since the
ledger's totals do not know who issued the points a wallet spends.
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, timedelta
from typing import Annotated

import msgspec
import pyarrow as pa
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode, movement_name
from core.errors import DomainError, ErrorKind, NotFound
from core.models import Program
from core.principal import Principal
from finance.issuers import PARTNER, issuers_of
from finance.lot_settling import settle_apart
from finance.report_dates import Period
from ledger import lots
from ledger.liability_reads import ledger_time_zone
from rewards.connections import session_connection


class Category(enum.StrEnum):
    EARNED = "earned"
    BONUSES = "bonuses"
    BOUGHT = "bought"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    EXCHANGED = "exchanged"
    #: Gifts between members: lots move from wallet to wallet, so the line
    #: nets to zero for the program (and for each issuer and cohort).
    TRANSFERRED = "transferred"
    ADJUSTMENTS = "adjustments"
    #: A code that should move no member's points, yet did.
    UNEXPECTED = "unexpected"


#: Where each kind of movement goes in the roll-forward; None: it never
#: moves a member's points (the program's and partners' own accounts, the
#: money ledgers).
LINES: dict[TransferCode, Category | None] = {
    TransferCode.PURCHASE_EARN: Category.EARNED,
    TransferCode.EVENT_EARN: Category.EARNED,
    TransferCode.PARTNER_ISSUANCE: Category.EARNED,
    # Earned points taken back: a return, and later earnings repaying the
    # debt a return left (wallet to debt account).
    TransferCode.RETURN_REVERSAL: Category.EARNED,
    TransferCode.DEBT_REPAYMENT: Category.EARNED,
    TransferCode.DEBT: None,
    TransferCode.THRESHOLD_BONUS: Category.BONUSES,
    TransferCode.CAMPAIGN_BONUS: Category.BONUSES,
    TransferCode.BOUGHT_POINTS: Category.BOUGHT,
    TransferCode.BOUGHT_POINTS_REFUND: Category.BOUGHT,
    TransferCode.CATALOG_REDEMPTION: Category.REDEEMED,
    TransferCode.POINTS_PAYMENT: Category.REDEEMED,
    TransferCode.PARTNER_ACCEPTANCE: Category.REDEEMED,
    TransferCode.PARTNER_ACCEPTANCE_REFUND: Category.REDEEMED,
    TransferCode.REDEMPTION_CANCELLATION: Category.REDEEMED,
    TransferCode.POINTS_PAYMENT_CANCELLATION: Category.REDEEMED,
    TransferCode.EXPIRY: Category.EXPIRED,
    TransferCode.PROGRAM_SUNSET: Category.EXPIRED,
    TransferCode.EXPIRY_REINSTATEMENT: Category.EXPIRED,
    TransferCode.PARTNER_EXCHANGE: Category.EXCHANGED,
    TransferCode.GIFT: Category.TRANSFERRED,
    TransferCode.ADJUSTMENT: Category.ADJUSTMENTS,
    TransferCode.FINANCE_CORRECTION: Category.ADJUSTMENTS,
    TransferCode.PARTNER_FUNDING: None,
    TransferCode.PARTNER_CREDIT_LINE: None,
    TransferCode.PARTNER_HEADROOM_RESTORED: None,
    TransferCode.PARTNER_SETTLEMENT: None,
    TransferCode.PARTNER_REIMBURSEMENT: None,
    TransferCode.PARTNER_PAYMENT: None,
    TransferCode.PARTNER_PAYOUT: None,
    TransferCode.PARTNER_PREPAID_DRAWN: None,
    TransferCode.PARTNER_NETTING: None,
    TransferCode.PARTNER_LIABILITY_TRANSFER: None,
    TransferCode.REFERRAL_REWARD_POINTS: None,
    TransferCode.REFERRAL_REWARD_MONEY: None,
    TransferCode.CAMPAIGN_BUDGET: None,
    TransferCode.CAMPAIGN_BUDGET_RELEASE: None,
    TransferCode.MDF_PAYMENT: None,
}

_ORDER = list(Category)
_WALLET = AccountCode.MEMBER_WALLET


class UnknownIssuer(DomainError):
    """The roll-forward's partner is not one of the program's partners."""

    type_slug = "unknown-partner"
    kind = ErrorKind.INVALID


def category_of(code: int) -> Category:
    try:
        placed = LINES[TransferCode(code)]
    except (ValueError, KeyError):
        return Category.UNEXPECTED
    return placed if placed is not None else Category.UNEXPECTED


class RollForwardLine(msgspec.Struct, frozen=True, kw_only=True):
    category: Annotated[
        Category, msgspec.Meta(description="Where the line goes in the roll-forward.")
    ]
    code: Annotated[int, msgspec.Meta(description="The transfer code of the movements.")]
    kind: Annotated[
        str, msgspec.Meta(description="The code's name (as the member's history names it).")
    ]
    points: Annotated[
        int,
        msgspec.Meta(
            description="The signed change those movements made to the points members hold."
        ),
    ]


class CategoryTotal(msgspec.Struct, frozen=True, kw_only=True):
    category: Annotated[Category, msgspec.Meta(description="The category.")]
    points: Annotated[int, msgspec.Meta(description="The sum of its lines.")]


class LedgerTie(msgspec.Struct, frozen=True, kw_only=True):
    code: Annotated[int, msgspec.Meta(description="The transfer code.")]
    kind: Annotated[str, msgspec.Meta(description="The code's name.")]
    lots: Annotated[int, msgspec.Meta(description="What the lots say that code moved.")]
    ledger: Annotated[
        int,
        msgspec.Meta(
            description="What the ledger's transfers of that code moved into wallets, less"
            " out of them."
        ),
    ]
    difference: Annotated[int, msgspec.Meta(description="`lots` less `ledger`: zero when tied.")]


class RollForwardTie(msgspec.Struct, frozen=True, kw_only=True):
    lines: Annotated[list[LedgerTie], msgspec.Meta(description="Per code moved in the period.")]
    movements_difference: Annotated[
        int, msgspec.Meta(description="The sum of the lines' differences.")
    ]
    opening_ledger: Annotated[
        int,
        msgspec.Meta(description="The wallets' posted balance at the end of the day before."),
    ]
    closing_ledger: Annotated[
        int, msgspec.Meta(description="The wallets' posted balance at the end of `last_day`.")
    ]
    opening_difference: Annotated[
        int, msgspec.Meta(description="`opening` less `opening_ledger`: zero when tied.")
    ]
    closing_difference: Annotated[
        int, msgspec.Meta(description="`closing` less `closing_ledger`: zero when tied.")
    ]
    tied: Annotated[bool, msgspec.Meta(description="Whether every difference is zero.")]


class RollForward(msgspec.Struct, frozen=True, kw_only=True):
    program: Annotated[str, msgspec.Meta(description="The program's slug.")]
    partner: Annotated[
        str | None,
        msgspec.Meta(description="The partner whose issued points alone count; null: all."),
    ]
    period: Annotated[
        str, msgspec.Meta(description="`YYYY-MM` for a calendar month, else `first..last`.")
    ]
    first_day: Annotated[date, msgspec.Meta(description="The period's first accounting day.")]
    last_day: Annotated[date, msgspec.Meta(description="Its last (both included).")]
    time_zone: Annotated[
        str, msgspec.Meta(description="The time zone of the ledger's accounting days.")
    ]
    opening: Annotated[
        int, msgspec.Meta(description="Outstanding points at the end of the day before.")
    ]
    lines: Annotated[
        list[RollForwardLine], msgspec.Meta(description="One line per kind of movement.")
    ]
    categories: Annotated[
        list[CategoryTotal], msgspec.Meta(description="The lines summed by category.")
    ]
    closing: Annotated[
        int, msgspec.Meta(description="Outstanding points at the end of `last_day`.")
    ]
    difference: Annotated[
        int,
        msgspec.Meta(description="`opening` plus every line less `closing`: zero when it rolls."),
    ]
    tie: Annotated[
        RollForwardTie | None,
        msgspec.Meta(description="The tie to the ledger's totals; null with a partner."),
    ]


async def roll_forward(
    session: AsyncSession,
    program: Program,
    period: Period,
    *,
    partner: str | None = None,
    principal: Principal,
) -> RollForward:
    """The roll-forward of ``period`` (accounting days, inclusive)."""
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    await settle_apart(session, program.ledger_id)
    connection = await session_connection(session)
    ledger = program.ledger_id
    sources = await _sources(session, program, partner)
    day_before = period.first_day - timedelta(days=1)
    opening = _points(await lots.outstanding(connection, ledger=ledger, as_of=day_before), sources)
    closing = _points(
        await lots.outstanding(connection, ledger=ledger, as_of=period.last_day), sources
    )
    moved = [
        row
        for row in await lots.lot_movement_totals(
            connection, ledger=ledger, first_day=period.first_day, last_day=period.last_day
        )
        if sources is None or row.source_account_id in sources
    ]
    by_code: dict[int, int] = defaultdict(int)
    for row in moved:
        by_code[row.code] += row.points
    lines = sorted(
        (
            RollForwardLine(
                category=category_of(code), code=code, kind=movement_name(code), points=points
            )
            for code, points in by_code.items()
        ),
        key=lambda line: (_ORDER.index(line.category), line.code),
    )
    totals: dict[Category, int] = defaultdict(int)
    for line in lines:
        totals[line.category] += line.points
    tie = None
    if sources is None:
        tie = await _tie(connection, ledger, period, by_code, opening, closing)
    return RollForward(
        program=program.slug,
        partner=partner,
        period=period.label,
        first_day=period.first_day,
        last_day=period.last_day,
        time_zone=await ledger_time_zone(connection, ledger),
        opening=opening,
        lines=lines,
        categories=[CategoryTotal(category=c, points=totals[c]) for c in _ORDER if c in totals],
        closing=closing,
        difference=opening + sum(by_code.values()) - closing,
        tie=tie,
    )


async def _sources(
    session: AsyncSession, program: Program, partner: str | None
) -> set[uuid.UUID] | None:
    """The accounts whose lots count: None for all, else the partner's."""
    if partner is None:
        return None
    accounts = await issuers_of(session, program)
    found = {
        a for a, issuer in accounts.items() if issuer.kind == PARTNER and issuer.key == partner
    }
    if not found:
        raise UnknownIssuer(f"partner: {partner!r} is not a partner of program {program.slug!r}")
    return found


def _points(rows: Iterable[lots.OutstandingPoints], sources: set[uuid.UUID] | None) -> int:
    return sum(r.points for r in rows if sources is None or r.source_account_id in sources)


async def _tie(
    connection: lots.Connection,
    ledger: int,
    period: Period,
    by_code: dict[int, int],
    opening: int,
    closing: int,
) -> RollForwardTie:
    """The lots' movements against the ledger's totals of the wallets."""
    in_ledger: dict[int, int] = defaultdict(int)
    for total in await lots.daily_totals(
        connection, ledger=ledger, first_day=period.first_day, last_day=period.last_day
    ):
        if total.credit_account_code == _WALLET:
            in_ledger[total.code] += total.amount
        if total.debit_account_code == _WALLET:
            in_ledger[total.code] -= total.amount
    lines = [
        LedgerTie(
            code=code,
            kind=movement_name(code),
            lots=by_code.get(code, 0),
            ledger=in_ledger.get(code, 0),
            difference=by_code.get(code, 0) - in_ledger.get(code, 0),
        )
        for code in sorted(set(by_code) | set(in_ledger))
    ]
    opening_ledger = await _wallets_balance(
        connection, ledger, period.first_day - timedelta(days=1)
    )
    closing_ledger = await _wallets_balance(connection, ledger, period.last_day)
    movements_difference = sum(line.difference for line in lines)
    return RollForwardTie(
        lines=lines,
        movements_difference=movements_difference,
        opening_ledger=opening_ledger,
        closing_ledger=closing_ledger,
        opening_difference=opening - opening_ledger,
        closing_difference=closing - closing_ledger,
        tied=movements_difference == 0
        and all(line.difference == 0 for line in lines)
        and opening == opening_ledger
        and closing == closing_ledger,
    )


async def _wallets_balance(connection: lots.Connection, ledger: int, as_of: date) -> int:
    balances = await lots.account_code_balances(connection, ledger=ledger, as_of=as_of)
    return sum(b.credits - b.debits for b in balances if b.account_code == _WALLET)


#: The columns of a roll-forward's export: the opening, one row per line,
#: the closing; ``ledger`` and ``difference`` are the tie's (empty with a partner).
EXPORT_SCHEMA = pa.schema(
    [
        ("program", pa.string()),
        ("partner", pa.string()),
        ("first_day", pa.date32()),
        ("last_day", pa.date32()),
        ("row", pa.string()),
        ("category", pa.string()),
        ("code", pa.int32()),
        ("kind", pa.string()),
        ("points", pa.int64()),
        ("ledger", pa.int64()),
        ("difference", pa.int64()),
    ]
)


async def export_rows(report: RollForward) -> AsyncIterator[Sequence[object]]:
    """``report`` as rows of ``EXPORT_SCHEMA``."""
    head = (report.program, report.partner, report.first_day, report.last_day)
    tie = report.tie
    ties = {line.code: line for line in tie.lines} if tie is not None else {}
    yield (
        *head,
        "opening",
        None,
        None,
        None,
        report.opening,
        tie.opening_ledger if tie else None,
        tie.opening_difference if tie else None,
    )
    for line in report.lines:
        tied = ties.get(line.code)
        yield (
            *head,
            "line",
            line.category.value,
            line.code,
            line.kind,
            line.points,
            tied.ledger if tied else None,
            tied.difference if tied else None,
        )
    # A code the ledger moved in wallets with no lot movement: shown, never dropped.
    for code in sorted(set(ties) - {line.code for line in report.lines}):
        tied = ties[code]
        category = category_of(code).value
        yield (*head, "line", category, code, tied.kind, 0, tied.ledger, tied.difference)
    yield (
        *head,
        "closing",
        None,
        None,
        None,
        report.closing,
        tie.closing_ledger if tie else None,
        tie.closing_difference if tie else None,
    )
