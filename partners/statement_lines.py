"""A statement's lines from the ledger's sums: pure arithmetic, no I/O.

Amounts are exact ``Decimal`` products of points and rates (minor units per
point, to 6 places), each rounded once to minor units, half-even, per line;
the statement's total is the sum of its rounded lines. A line's sign says
who owes: > 0 the partner owes the program, < 0 the program owes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import UUID

from core.codes import TransferCode
from ledger import StatementSum
from partners.coalition_models import PartnerContract
from partners.settlement_periods import label_of, period_of
from partners.statement_models import Direction, LineKind

#: The transfer codes a statement reads, the account side they move, and
#: the line they make.
READ_CODES: dict[tuple[int, bool], LineKind] = {
    (TransferCode.PARTNER_ISSUANCE, True): LineKind.ISSUED,
    (TransferCode.PARTNER_ACCEPTANCE, False): LineKind.REDEEMED,
    (TransferCode.PARTNER_ACCEPTANCE_REFUND, True): LineKind.REFUNDED,
}
_ORDER = {LineKind.ISSUED: 0, LineKind.REFUNDED: 1, LineKind.REDEEMED: 2}
_ONE = Decimal(1)


def round_minor(amount: Decimal) -> int:
    """Exact minor units of an exact amount: half-even, once."""
    return int(amount.quantize(_ONE, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Line:
    kind: LineKind
    points: int
    rate: Decimal | None
    amount_minor: int
    tax_code: str | None
    contract_version: int | None = None
    late_period: str | None = None
    account_id: UUID | None = None
    debit: bool | None = None
    code: int | None = None
    business_from: datetime | None = None
    business_until: datetime | None = None
    transfers: int = 0


@dataclass(frozen=True)
class Carried:
    """What a statement hands on to the next: the deferred points not yet
    billed and the prepaid credit drawn so far."""

    deferred_open_points: int = 0
    prepaid_drawn_minor: int = 0


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    unit: str
    zone: str


@dataclass
class Computed:
    lines: list[Line] = field(default_factory=list)
    carried: Carried = field(default_factory=Carried)
    carry_from: int | None = None

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def billed_minor(self) -> int:
        return sum(
            line.amount_minor
            for line in self.lines
            if line.kind not in (LineKind.REDEEMED, LineKind.PREPAID_CREDIT)
        )

    @property
    def reimbursed_minor(self) -> int:
        return -sum(line.amount_minor for line in self.lines if line.kind == LineKind.REDEEMED)

    @property
    def direction(self) -> Direction:
        total = self.total_minor
        if total > 0:
            return Direction.PARTNER_OWES
        return Direction.PROGRAM_OWES if total < 0 else Direction.SETTLED


def _rate(kind: LineKind, contract: PartnerContract) -> tuple[Decimal, str | None, int]:
    """Minor units per point of a line of ``kind``, its tax code and sign."""
    if kind == LineKind.ISSUED:
        price = contract.issue_price_per_point * contract.issuance_share
        return price, contract.issuance_tax_code, 1
    if kind == LineKind.REDEEMED:
        return contract.redemption_rate_per_point, contract.redemption_tax_code, -1
    return contract.redemption_rate_per_point, contract.redemption_tax_code, 1


def compute_lines(
    sums: Sequence[StatementSum],
    *,
    versions: Sequence[PartnerContract],
    at_end: PartnerContract,
    period: Period,
    before: Carried,
    regular: bool = True,
    liability_points: int | None = None,
) -> Computed:
    """The lines of a statement over ``sums``. ``versions`` are the holder's
    published versions in the order of their starts (the buckets of
    ``sums``); ``at_end`` the one in force at the period's end (the
    deferred price, the minimum commitment, the prepaid credit). A final
    statement (not ``regular``) has no minimum commitment (its period is
    cut short) and carries the liability line for ``liability_points``,
    the partner's share of the outstanding points.
    """
    computed = Computed()
    starts = [v.effective_from for v in versions]
    read: list[tuple[tuple[int, int, str], Line]] = []
    for group in sums:
        if not group.counted:
            if group.first_after_period is not None:
                computed.carry_from = min(
                    group.first_after_period, computed.carry_from or group.first_after_period
                )
            continue
        kind = READ_CODES.get((group.code, group.debit))
        if kind is None:
            continue
        bucket = max(group.version_bucket, 1)
        contract = versions[bucket - 1]
        rate, tax_code, sign = _rate(kind, contract)
        if group.late_period is None:
            late, frame = None, (period.start, period.end)
        else:
            late = label_of(group.late_period, period.unit, period.zone)
            frame = period_of(group.late_period, period.unit, period.zone)
        version_from = starts[bucket - 1] if group.version_bucket >= 1 else None
        version_until = starts[bucket] if bucket < len(starts) else None
        business_from = max(frame[0], version_from) if version_from else frame[0]
        business_until = min(frame[1], version_until) if version_until else frame[1]
        line = Line(
            kind=kind,
            points=group.amount,
            rate=rate,
            amount_minor=sign * round_minor(group.amount * rate),
            tax_code=tax_code,
            contract_version=contract.version,
            late_period=late,
            account_id=group.account_id,
            debit=group.debit,
            code=group.code,
            business_from=business_from,
            business_until=business_until,
            transfers=group.transfers,
        )
        read.append(((0 if late is None else 1, _ORDER[kind], late or ""), line))
    computed.lines = [
        line for _, line in sorted(read, key=lambda pair: (pair[0], pair[1].contract_version or 0))
    ]
    _derived_lines(computed, versions, at_end, before, regular, liability_points)
    return computed


def _derived_lines(
    computed: Computed,
    versions: Sequence[PartnerContract],
    at_end: PartnerContract,
    before: Carried,
    regular: bool,
    liability_points: int | None,
) -> None:
    """The lines computed from the others: the deferred issue price, the
    minimum commitment's shortfall, a final statement's liability and the
    prepaid credit drawn (last: it is drawn against all of them)."""
    lines = computed.lines
    by_version = {v.version: v for v in versions}
    deferred_in = sum(
        line.points
        for line in lines
        if line.kind == LineKind.ISSUED
        and by_version[line.contract_version or 0].issuance_share < 1
    )
    redeemed = sum(line.points for line in lines if line.kind == LineKind.REDEEMED) - sum(
        line.points for line in lines if line.kind == LineKind.REFUNDED
    )
    open_points = before.deferred_open_points + deferred_in
    billed_points = max(0, min(open_points, redeemed))
    deferred_rate = at_end.issue_price_per_point * (1 - at_end.issuance_share)
    if billed_points and deferred_rate:
        lines.append(
            Line(
                kind=LineKind.DEFERRED,
                points=billed_points,
                rate=deferred_rate,
                amount_minor=round_minor(billed_points * deferred_rate),
                tax_code=at_end.issuance_tax_code,
                contract_version=at_end.version,
            )
        )
    if regular and at_end.minimum_commitment_minor:
        billed = sum(
            line.amount_minor
            for line in lines
            if line.late_period is None and line.kind in (LineKind.ISSUED, LineKind.DEFERRED)
        )
        shortfall = at_end.minimum_commitment_minor - billed
        if shortfall > 0:
            lines.append(
                Line(
                    kind=LineKind.SHORTFALL,
                    points=0,
                    rate=None,
                    amount_minor=shortfall,
                    tax_code=at_end.fee_tax_code,
                    contract_version=at_end.version,
                )
            )
    if liability_points is not None:
        # The deferred price of the partner's share of the points still
        # outstanding, never of more points than it issued and was not yet
        # billed the deferred price of (which redemptions at it bill).
        billable = max(0, min(liability_points, open_points - billed_points))
        lines.append(
            Line(
                kind=LineKind.LIABILITY,
                points=billable,
                rate=deferred_rate,
                amount_minor=round_minor(billable * deferred_rate),
                tax_code=at_end.issuance_tax_code,
                contract_version=at_end.version,
            )
        )
        billed_points += billable
    owed = sum(line.amount_minor for line in lines)
    credit_left = at_end.prepaid_credit_minor - before.prepaid_drawn_minor
    drawn = min(owed, credit_left) if owed > 0 and credit_left > 0 else 0
    if drawn:
        lines.append(
            Line(
                kind=LineKind.PREPAID_CREDIT,
                points=0,
                rate=None,
                amount_minor=-drawn,
                tax_code=None,
                contract_version=at_end.version,
            )
        )
    computed.carried = Carried(
        deferred_open_points=open_points - billed_points,
        prepaid_drawn_minor=before.prepaid_drawn_minor + drawn,
    )
