"""What a leaving partner issued, what was redeemed at it and what of the
program's outstanding points is its share, all read from the ledger at one
instant (business time before it).

- The partner's figures are the transfers of the contract holder's own
  accounts (so its member companies acting under its contract count in
  them), summed in the database by the statements' own read
  (``Ledger.statement_sums``): points issued (code 100 out of its issuance
  account; a partner's issuance is never reversed), points captured at its
  tills (120 into its acceptance account) and refunded there (121 out).
- The program's figures come from the accounts of its ledger that are not
  its members' (the program's issuance, redemption and breakage, every
  partner's, every exchange account): by double entry what those accounts
  gave net is what the members hold, so ``outstanding`` is the members'
  posted points less their debts, read from a few accounts instead of a
  million wallets. ``issued`` is what the issuing accounts (the program's
  issuance account and every partner's issuance account, funding moved
  between them cancelling out) gave members net of reversals, plus the
  points converted in from other programs.
- Points are fungible in a wallet (there is no lot of points per issuer),
  so the partner's share of the outstanding points is pro rata:
  ``outstanding x issued by it / issued by all``, an exact fraction,
  rounded once to whole points, half-even.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode
from core.errors import NotFound
from core.models import Program
from ledger import Ledger, StatementWindow
from partners.contracts import acceptance_account, issuance_account
from partners.departure_models import PartnerDeparture
from partners.statement_models import PartnerStatement

#: Earlier than any business time a transfer can carry, so that the read
#: counts every transfer before the instant as one of its own period.
_EVER = datetime(1900, 1, 1, tzinfo=UTC)
#: The read's timestamps are microseconds: "up to just before ``at``".
_JUST_BEFORE = timedelta(microseconds=1)
_MEMBERS = (AccountCode.MEMBER_WALLET, AccountCode.MEMBER_DEBT)
_ISSUING = (AccountCode.ISSUANCE, AccountCode.PARTNER_ISSUANCE)
_PARTNER_CODES = (
    (TransferCode.PARTNER_ISSUANCE, True),
    (TransferCode.PARTNER_ACCEPTANCE, False),
    (TransferCode.PARTNER_ACCEPTANCE_REFUND, True),
)


@dataclass(frozen=True)
class Figures:
    """The ledger's figures of a leaving partner at ``as_of``."""

    as_of: datetime
    points_issued: int
    points_captured: int
    points_refunded: int
    program_points_issued: int
    program_points_outstanding: int

    @property
    def points_redeemed(self) -> int:
        return self.points_captured - self.points_refunded

    @property
    def share(self) -> Fraction:
        """The partner's share of the outstanding points, exact."""
        if self.program_points_issued <= 0 or self.program_points_outstanding <= 0:
            return Fraction(0)
        return Fraction(
            self.program_points_outstanding * self.points_issued, self.program_points_issued
        )

    @property
    def points_outstanding(self) -> int:
        """The share in whole points: ``round`` of a Fraction is half-even."""
        return round(self.share)


def stored(departure: PartnerDeparture) -> Figures:
    """The figures a final statement valued, as kept with its departure."""
    values = (
        departure.points_issued,
        departure.points_captured,
        departure.points_refunded,
        departure.program_points_issued,
        departure.program_points_outstanding,
    )
    if any(value is None for value in values):
        raise ValueError(f"departure {departure.id} has no final statement's figures")
    issued, captured, refunded, program_issued, outstanding = (int(v or 0) for v in values)
    return Figures(
        as_of=departure.valuation_at,
        points_issued=issued,
        points_captured=captured,
        points_refunded=refunded,
        program_points_issued=program_issued,
        program_points_outstanding=outstanding,
    )


def keep(departure: PartnerDeparture, figures: Figures) -> None:
    """Keep the figures a final statement valued with its departure."""
    departure.points_issued = figures.points_issued
    departure.points_captured = figures.points_captured
    departure.points_refunded = figures.points_refunded
    departure.program_points_issued = figures.program_points_issued
    departure.program_points_outstanding = figures.program_points_outstanding


async def stored_share(session: AsyncSession, statement: PartnerStatement) -> int:
    """The share of the outstanding points a final statement valued (its
    recomputation reads it back: the program's figures are not its
    holder's transfers, which the statement's cutoff bounds)."""
    departure = await session.scalar(
        select(PartnerDeparture).where(PartnerDeparture.final_statement_id == statement.id)
    )
    if departure is None:
        raise NotFound(f"no departure settled by statement {statement.number}")
    return stored(departure).points_outstanding


async def measure(
    ledger: Ledger, program: Program, holder_id: uuid.UUID, at: datetime, *, now: bool
) -> Figures:
    """The figures at ``at``; ``now`` when ``at`` is the present, which
    reads the program's accounts' running balances rather than summing
    their transfers up to ``at`` (every transfer of the program's ledger)."""
    issued, captured, refunded = await _partner_sums(ledger, program, holder_id, at)
    program_issued, outstanding = await _program_sums(ledger, program, at, now=now)
    return Figures(
        as_of=at,
        points_issued=issued,
        points_captured=captured,
        points_refunded=refunded,
        program_points_issued=program_issued,
        program_points_outstanding=outstanding,
    )


async def _partner_sums(
    ledger: Ledger, program: Program, holder_id: uuid.UUID, at: datetime
) -> tuple[int, int, int]:
    accounts = (issuance_account(program, holder_id), acceptance_account(program, holder_id))
    window = StatementWindow(
        debited=accounts,
        credited=(accounts[1],),
        codes=tuple(sorted({code for code, _ in _PARTNER_CODES})),
        after=0,
        up_to=await ledger.latest_timestamp(list(accounts)),
        period_start=_EVER,
        period_end=at,
        settled_up_to=0,
    )
    sums = await ledger.statement_sums(
        window, version_starts=[_EVER], period_unit="month", time_zone=program.time_zone
    )
    totals = dict.fromkeys(_PARTNER_CODES, 0)
    for group in sums:
        key = (group.code, group.debit)
        if group.counted and key in totals:
            totals[key] += group.amount
    issued, captured, refunded = (totals[key] for key in _PARTNER_CODES)
    return issued, captured, refunded


async def _program_sums(
    ledger: Ledger, program: Program, at: datetime, *, now: bool
) -> tuple[int, int]:
    """(issued to members net of reversals, outstanding) at ``at``."""
    accounts = await ledger.accounts_of(program.ledger_id, except_codes=_MEMBERS)
    codes = {account.id: account.code for account in accounts}
    if now:
        balances = [(a.id, a.debits_posted, a.credits_posted) for a in accounts]
    else:
        found = await ledger.balances_as_of(list(codes), at - _JUST_BEFORE, effective=True)
        balances = [(b.account_id, b.debits_posted, b.credits_posted) for b in found]
    issued = outstanding = 0
    for account_id, debits, credits in balances:
        outstanding += debits - credits
        code = codes[account_id]
        if code in _ISSUING:
            issued += debits - credits
        elif code == AccountCode.PARTNER_EXCHANGE:
            issued += debits
    return issued, outstanding
