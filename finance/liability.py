"""The program's point liability as of any day: the points its members
hold at the end of that accounting day, broken down by who issued them
(partner), the month they were earned (cohort), the kind of movement that
created them (origin) or the member's tier, and valued at the redemption
value in force at the end of that day.

Outstanding points come from the ledger's daily aggregates (one sum over
days, never a scan of transfers): of lot movements
(``ledger.lots.outstanding``), and by tier of the wallets' account classes
(``ledger.classes``: each tier is a class, ``Tier.ledger_class``, 0 none,
and the wallet of a member changing tier changes class from the same
instant, migration 0053), so a member counts in the tier in force at the
end of the day: one who moved since counts in the tier held then. A ledger
that held points before its classes were assigned (``classes_since``, set
by migration 0053) answers a day ending before then from the scan: the
lots of each wallet (``ledger.liability_reads``) and each member's tier in
force at the end of the day (``rewards.tier_history``, whose history starts
at migration 0047, so an earlier day counts each member in the tier held
at that migration).

Rounding: the total is the exact product (points x value, the value being
NUMERIC(18, 6)) rounded half to even to a whole minor unit; the lines
share that total by largest remainder (ties to the line listed first), so
they add up to it exactly and each is within one minor unit of its own
exact product.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Annotated

import msgspec
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode, movement_name
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from finance.issuers import issuer_of, issuers_of
from finance.lot_settling import settle_apart
from finance.report_dates import end_of_day
from ledger import classes, lots
from ledger.liability_reads import ledger_time_zone, outstanding_by_account
from rewards.connections import session_connection
from rewards.models import Tier
from rewards.point_values import value_on
from rewards.tier_history import tiers_in_force

ROUNDING = (
    "total: points x value rounded half to even to a minor unit; lines: the total shared by"
    " largest remainder (ties to the first line), so that they add up to it"
)
NO_TIER = "none"
TIER_BASIS = "in_force"


class LiabilityBreakdown(enum.StrEnum):
    PROGRAM = "program"
    PARTNER = "partner"
    COHORT = "cohort"
    TIER = "tier"
    ORIGIN = "origin"


class LiabilityLine(msgspec.Struct, frozen=True, kw_only=True):
    group: Annotated[
        str,
        msgspec.Meta(
            description="What the line counts, by the breakdown: `program:<slug>` (the"
            " program's own issuance), `partner:<slug>`, `exchange:<program slug>` (points"
            " converted in) or `other:<account id>` by partner; the cohort's month"
            " (`YYYY-MM`); the origin's kind of movement (e.g. `earn`); the tier's code"
            " (`none`: members without a tier; `class:<n>`: an account class of the ledger"
            " that is no tier of the program); the program's slug with no breakdown."
        ),
    ]
    name: Annotated[
        str,
        msgspec.Meta(
            description="A name for people to read: the partner's or program's name, the"
            " tier's, the origin's transfer code; empty for a cohort."
        ),
    ]
    points: Annotated[int, msgspec.Meta(description="Outstanding points of the line.")]
    value_minor: Annotated[
        int,
        msgspec.Meta(
            description="Their value in minor units of `currency` (see `rounding`): the"
            " lines add up to `value_minor` of the whole."
        ),
    ]


class Liability(msgspec.Struct, frozen=True, kw_only=True):
    program: Annotated[str, msgspec.Meta(description="The program's slug.")]
    as_of: Annotated[
        date,
        msgspec.Meta(
            description="The accounting day (in the ledger's `time_zone`): points held at its end."
        ),
    ]
    by: Annotated[LiabilityBreakdown, msgspec.Meta(description="The breakdown of `lines`.")]
    time_zone: Annotated[
        str, msgspec.Meta(description="The time zone of the ledger's accounting days.")
    ]
    currency: Annotated[str, msgspec.Meta(description="The program's currency, ISO 4217.")]
    point_value_minor: Annotated[
        Decimal,
        msgspec.Meta(
            description="The redemption value of a point in force at the end of `as_of`, in"
            " minor units of `currency`, as a decimal string."
        ),
    ]
    points: Annotated[int, msgspec.Meta(description="Outstanding points of the program.")]
    value_minor: Annotated[
        int, msgspec.Meta(description="Their value in minor units of `currency`.")
    ]
    rounding: Annotated[str, msgspec.Meta(description="How values are rounded.")]
    tier_basis: Annotated[
        str,
        msgspec.Meta(
            description="By tier only: which tier a member counts in (`in_force`: the tier"
            " held at the end of `as_of`, from the history of tier changes, which starts at"
            " migration 0047: an earlier day counts the tier held then); empty otherwise."
        ),
    ]
    lines: Annotated[list[LiabilityLine], msgspec.Meta(description="The breakdown.")]


async def liability(
    session: AsyncSession,
    program: Program,
    as_of: date,
    by: LiabilityBreakdown = LiabilityBreakdown.PROGRAM,
    *,
    principal: Principal,
) -> Liability:
    """The program's outstanding points at the end of ``as_of``, valued."""
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    await settle_apart(session, program.ledger_id)
    connection = await session_connection(session)
    zone = await ledger_time_zone(connection, program.ledger_id)
    value = await value_on(session, program, end_of_day(as_of, zone))
    if by is LiabilityBreakdown.TIER:
        groups = await _by_tier(session, program, as_of, end_of_day(as_of, zone))
    else:
        rows = await lots.outstanding(connection, ledger=program.ledger_id, as_of=as_of)
        groups = await _grouped(session, program, by, rows)
    total = sum(points for _, _, points in groups)
    total_value = _rounded(Decimal(total) * value)
    shares = share_by_largest_remainder(total_value, [Decimal(p) * value for _, _, p in groups])
    return Liability(
        program=program.slug,
        as_of=as_of,
        by=by,
        time_zone=zone,
        currency=program.currency,
        point_value_minor=value,
        points=total,
        value_minor=total_value,
        rounding=ROUNDING,
        tier_basis=TIER_BASIS if by is LiabilityBreakdown.TIER else "",
        lines=[
            LiabilityLine(group=group, name=name, points=points, value_minor=share)
            for (group, name, points), share in zip(groups, shares, strict=True)
        ],
    )


async def _grouped(
    session: AsyncSession,
    program: Program,
    by: LiabilityBreakdown,
    rows: Iterable[lots.OutstandingPoints],
) -> list[tuple[str, str, int]]:
    sums: dict[tuple[str, str], int] = defaultdict(int)
    if by is LiabilityBreakdown.PARTNER:
        accounts = await issuers_of(session, program)
        for row in rows:
            issuer = issuer_of(accounts, row.source_account_id)
            sums[(f"{issuer.kind}:{issuer.key}", issuer.name)] += row.points
    elif by is LiabilityBreakdown.COHORT:
        for row in rows:
            sums[(f"{row.cohort:%Y-%m}", "")] += row.points
    elif by is LiabilityBreakdown.ORIGIN:
        for row in rows:
            sums[(movement_name(row.origin_code), _code_name(row.origin_code))] += row.points
    else:
        sums[(program.slug, program.name)] = sum(row.points for row in rows)
    return sorted((group, name, points) for (group, name), points in sums.items())


async def _by_tier(
    session: AsyncSession, program: Program, as_of: date, day_end: datetime
) -> list[tuple[str, str, int]]:
    connection = await session_connection(session)
    since = await classes.classes_since(connection, ledger=program.ledger_id)
    # A move of class at ``since`` itself belongs to the day after one that
    # ends then: such a day is the scan's too.
    if since is not None and day_end <= since:
        return await tier_lines_by_scan(session, program, as_of, day_end)
    held = await classes.points_by_class(connection, ledger=program.ledger_id, as_of=as_of)
    tiers = {
        ledger_class: (code, name)
        for ledger_class, code, name in (
            await session.execute(
                select(Tier.ledger_class, Tier.code, Tier.name).where(Tier.program_id == program.id)
            )
        ).all()
    }
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for ledger_class, points in held.items():
        sums[_tier_of_class(tiers, ledger_class)] += points
    return sorted((code, name, points) for (code, name), points in sums.items() if points)


def _tier_of_class(tiers: dict[int, tuple[str, str]], ledger_class: int) -> tuple[str, str]:
    """The line of a class: its tier's code and name, ``none`` for class 0,
    and the class's number for a class that is no tier of the program (set
    on the ledger by something else)."""
    if ledger_class == 0:
        return NO_TIER, ""
    return tiers.get(ledger_class) or (f"class:{ledger_class}", f"class {ledger_class}")


async def tier_lines_by_scan(
    session: AsyncSession, program: Program, as_of: date, day_end: datetime
) -> list[tuple[str, str, int]]:
    """``_by_tier`` from every wallet's lots and every member's tier in
    force at ``day_end``: what the class aggregates stand in for, and all
    there is for a day before the ledger's classes were assigned."""
    connection = await session_connection(session)
    held = await outstanding_by_account(connection, ledger=program.ledger_id, as_of=as_of)
    wallets = await tiers_in_force(session, program.id, day_end)
    names = dict(
        (
            await session.execute(select(Tier.code, Tier.name).where(Tier.program_id == program.id))
        ).all()
    )
    sums: dict[str, int] = defaultdict(int)
    for account in held:
        sums[wallets.get(account.account_id) or NO_TIER] += account.points
    return sorted((code, names.get(code, ""), points) for code, points in sums.items())


def _code_name(code: int) -> str:
    try:
        return TransferCode(code).name.lower()
    except ValueError:
        return f"code {code}"


def _rounded(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_HALF_EVEN))


def share_by_largest_remainder(total: int, exact: list[Decimal]) -> list[int]:
    """``total`` shared among lines in proportion to nothing but their own
    exact amounts: each gets its amount rounded down, and the units left go
    one each to the largest fractional parts (ties to the earlier line)."""
    floors = [int(amount.to_integral_value(rounding=ROUND_FLOOR)) for amount in exact]
    # Between 0 and len(exact): the floors sum to at most the exact total,
    # whose rounding is within a unit of it per line.
    left = total - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    shares = list(floors)
    for i in order[:left]:
        shares[i] += 1
    return shares


#: The columns of a liability's export (CSV or Parquet), one row per line.
EXPORT_SCHEMA = pa.schema(
    [
        ("program", pa.string()),
        ("as_of", pa.date32()),
        ("by", pa.string()),
        ("group", pa.string()),
        ("name", pa.string()),
        ("points", pa.int64()),
        ("value_minor", pa.int64()),
        ("currency", pa.string()),
        ("point_value_minor", pa.decimal128(18, 6)),
    ]
)


async def export_rows(report: Liability) -> AsyncIterator[Sequence[object]]:
    """``report``'s lines as rows of ``EXPORT_SCHEMA``."""
    for line in report.lines:
        yield (
            report.program,
            report.as_of,
            report.by.value,
            line.group,
            line.name,
            line.points,
            line.value_minor,
            report.currency,
            report.point_value_minor,
        )
