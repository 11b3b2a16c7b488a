"""A partner leaving the coalition: its departure recorded (or changed)
by an operator, read back, and its report.

A departure belongs to a contract holder (a member company acting under
another firm's contract leaves by being offboarded: its holder settles for
it). It has three days of the program's calendar: the last day the holder
issues points, the last day it takes new holds, and the valuation date, on
or after both, at whose end its final statement
(``partners.final_statements``) values its share of the outstanding
points. Each day ends at the next local midnight; the instants are taken
when the departure is recorded.

Nothing a departure says may rewrite what happened: every day it sets is
today or later, and a day that has ended stays as it is (issuance, holds
or captures were already refused or allowed by it). The same departure
again changes nothing; after the final statement nothing changes.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from ledger import Ledger
from partners.coalition_errors import PartnerNotActive
from partners.contracts import lock_partner
from partners.departure_errors import DepartureChangeRefused, InvalidDeparture
from partners.departure_figures import Figures, measure, stored
from partners.departure_models import PartnerDeparture
from partners.departure_schemas import DepartureReport, DepartureRequest, DepartureView
from partners.models import Partner, PartnerStatus
from partners.statement_errors import NotContractHolder
from partners.statement_models import LineKind, PartnerStatement, PartnerStatementLine
from partners.statements import published_versions

#: Each day of a departure and the column of the instant it ends at.
DAYS = {
    "last_issuing_day": "issuing_ends_at",
    "last_accepting_day": "accepting_ends_at",
    "valuation_date": "valuation_at",
}


def subject(program: Program, partner: Partner) -> str:
    return f"program:{program.slug}:partner:{partner.slug}:departure"


def end_of(day: date, zone: str) -> datetime:
    """The instant ``day`` of the zone's calendar ends: its next midnight."""
    midnight = datetime.combine(day, time.min, tzinfo=calendar.time_zone(zone))
    return calendar.local_day(midnight + timedelta(hours=12), zone)[1]


async def departure_of(session: AsyncSession, partner: Partner) -> PartnerDeparture | None:
    return await session.scalar(
        select(PartnerDeparture).where(PartnerDeparture.partner_id == partner.id)
    )


async def get_departure(session: AsyncSession, partner: Partner) -> PartnerDeparture:
    departure = await departure_of(session, partner)
    if departure is None:
        raise NotFound(f"partner {partner.slug!r} has no departure recorded")
    return departure


async def departure_view(
    session: AsyncSession, partner: Partner, departure: PartnerDeparture
) -> DepartureView:
    final = None
    if departure.final_statement_id is not None:
        final = await session.scalar(
            select(PartnerStatement.number).where(
                PartnerStatement.id == departure.final_statement_id
            )
        )
    return DepartureView.of(departure, partner.slug, final)


async def read_departure(
    session: AsyncSession, program: Program, partner: Partner, *, principal: Principal
) -> DepartureView:
    """The partner's departure. ``partner`` comes from a look-up within the
    principal's tenant."""
    return await departure_view(session, partner, await get_departure(session, partner))


async def record_departure(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    request: DepartureRequest,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[DepartureView, bool]:
    """Record the partner's departure, or change it, audited; and whether
    it is new. The same departure again answers it and writes nothing.
    Under the partner's row lock (which its statements take too), so a
    departure and a statement of the partner never cross. ``partner``
    comes from a look-up within the principal's tenant."""
    partner = await lock_partner(session, partner)
    departure = await departure_of(session, partner)
    wanted = _wanted(request)
    if departure is not None and all(
        getattr(departure, name) == value for name, value in wanted.items()
    ):
        return await departure_view(session, partner, departure), False
    if departure is not None and departure.final_statement_id is not None:
        raise DepartureChangeRefused(
            f"partner {partner.slug!r} has left: its final statement is issued, and its"
            " departure is final"
        )
    if partner.status == PartnerStatus.OFFBOARDED:
        raise PartnerNotActive(f"partner {partner.slug!r} is offboarded: it has left already")
    if not await published_versions(session, partner.id):
        raise NotContractHolder(
            f"partner {partner.slug!r} has no published contract of its own: a company acting"
            " under another firm's contract leaves by being offboarded (its contract holder"
            " settles for it)"
        )
    _check_days(request)
    ends = {column: end_of(wanted[day], program.time_zone) for day, column in DAYS.items()}
    _check_moves(departure, wanted, ends, now)
    fields = {**wanted, **ends, "recorded_by": principal.actor, "recorded_at": now}
    if departure is None:
        departure = PartnerDeparture(program_id=program.id, partner_id=partner.id, **fields)
        session.add(departure)
        action, details = "partner.departure.record", _builtins(wanted)
    else:
        details = {
            name: {"from": _builtin(getattr(departure, name)), "to": _builtin(value)}
            for name, value in wanted.items()
            if getattr(departure, name) != value
        }
        for name, value in fields.items():
            setattr(departure, name, value)
        action = "partner.departure.change"
    await session.flush()
    await audit.record(session, principal, action, subject(program, partner), details)
    return DepartureView.of(departure, partner.slug, None), action == "partner.departure.record"


def _wanted(request: DepartureRequest) -> dict[str, Any]:
    return {
        "last_issuing_day": request.last_issuing_day,
        "last_accepting_day": request.last_accepting_day,
        "valuation_date": request.valuation_date,
        "reason": request.reason,
    }


def _builtin(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _builtins(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _builtin(value) for name, value in values.items()}


def _check_days(request: DepartureRequest) -> None:
    for name in ("last_issuing_day", "last_accepting_day"):
        day: date = getattr(request, name)
        if request.valuation_date < day:
            raise InvalidDeparture(
                f"valuation_date: {request.valuation_date.isoformat()} is before {name}"
                f" ({day.isoformat()}); the final statement values what the partner did up"
                " to its last days"
            )


def _check_moves(
    departure: PartnerDeparture | None,
    wanted: dict[str, Any],
    ends: dict[str, datetime],
    now: datetime,
) -> None:
    """Each day set or moved is still to end; a day that has ended stays."""
    for day, column in DAYS.items():
        if departure is not None and getattr(departure, day) == wanted[day]:
            continue
        if departure is not None and getattr(departure, column) <= now:
            raise DepartureChangeRefused(
                f"{day}: {getattr(departure, day).isoformat()} has ended"
                f" ({getattr(departure, column).isoformat()}); it can no longer move"
            )
        if ends[column] <= now:
            raise InvalidDeparture(
                f"{day}: {wanted[day].isoformat()} has ended ({ends[column].isoformat()});"
                " a departure's days are today or later: what happened before stays as it is"
            )


async def departure_report(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    now: datetime,
    *,
    principal: Principal,
) -> DepartureReport:
    """What the partner issued, what was redeemed at it and its share of
    the outstanding points: from the ledger now, before its valuation
    instant; at that instant after it; as its final statement valued them
    once that is issued. ``partner`` comes from a look-up within the
    principal's tenant."""
    departure = await get_departure(session, partner)
    if departure.final_statement_id is not None:
        return await _final_report(session, partner, departure)
    if now < departure.valuation_at:
        figures = await measure(ledger, program, partner.id, now, now=True)
        return _report(partner, figures, "now")
    figures = await measure(ledger, program, partner.id, departure.valuation_at, now=False)
    return _report(partner, figures, "valuation")


async def _final_report(
    session: AsyncSession, partner: Partner, departure: PartnerDeparture
) -> DepartureReport:
    row = (
        await session.execute(
            select(PartnerStatement.number, PartnerStatementLine.points)
            .add_columns(PartnerStatementLine.amount_minor)
            .join(PartnerStatementLine, PartnerStatementLine.statement_id == PartnerStatement.id)
            .where(
                PartnerStatement.id == departure.final_statement_id,
                PartnerStatementLine.kind == LineKind.LIABILITY,
            )
        )
    ).one()
    number, points, amount = row
    return _report(
        partner,
        stored(departure),
        "final_statement",
        final=(number, points, amount),
    )


def _report(
    partner: Partner,
    figures: Figures,
    basis: str,
    *,
    final: tuple[int, int, int] | None = None,
) -> DepartureReport:
    return DepartureReport(
        partner=partner.slug,
        as_of=figures.as_of,
        basis=basis,
        points_issued=figures.points_issued,
        points_captured=figures.points_captured,
        points_refunded=figures.points_refunded,
        points_redeemed=figures.points_redeemed,
        program_points_issued=figures.program_points_issued,
        program_points_outstanding=figures.program_points_outstanding,
        points_outstanding=figures.points_outstanding,
        final_statement=final[0] if final else None,
        liability_points=final[1] if final else None,
        liability_minor=final[2] if final else None,
    )
