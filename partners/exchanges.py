"""A member converts points of their program into points of another, under
the two programs' exchange agreement (``partners.exchange_agreements``).

A conversion is one linked chain of two transfers in one ledger call, inside
the use case's own transaction: on the source ledger, the member's wallet to
the source program's exchange account for the target; on the target ledger,
the target's exchange account for the source to the member's wallet there.
Both post or neither does (the ledger rolls a failed chain back whole), and
both commit, or roll back, with the conversion's row and audit line.

The member is the same person in both programs when the two enrolments
carry the same external id: member tokens come from the installation's one
identity provider, whose subject is the external id in every program.

The daily cap is counted under the member's row lock, as the gift allowance
is (``rewards.redeeming``): of concurrent conversions, each sees the ones
committed before it, so the cap admits exactly what fits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.codes import TransferCode, derived_id, exchange_account_id
from core.errors import IdempotencyKeyReused, NotFound
from core.members import find_member, lock_member, require_active
from core.models import Member, Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from ledger import Ledger, Transfer, TransferFlags
from partners.exchange_agreements import version_in_force
from partners.exchange_errors import (
    ExchangeAgreementNotActive,
    ExchangeCapExceeded,
    ExchangeClosed,
    ExchangeMemberNotEnrolled,
    ExchangeOutOfBounds,
)
from partners.exchange_models import AgreementStatus, Exchange, ExchangeAgreement
from partners.exchange_schemas import (
    DirectionTerms,
    ExchangeOutcome,
    ExchangeQuote,
    ExchangeRequest,
    ExchangeView,
    direction_of,
)
from rewards.connections import session_connection
from rewards.end_of_earning import check_earning_in
from rewards.programs import record_transfers

_NOT_ENOUGH = "the wallet does not hold enough points"


@dataclass(frozen=True)
class _Route:
    """Where a member's points may go: the target, under which agreement,
    version and terms."""

    target: Program
    agreement: ExchangeAgreement
    version: int
    terms: DirectionTerms


def received_points(points: int, terms: DirectionTerms) -> int:
    """Points of the target for ``points`` of the source: exactly
    ``points * receive / give``, rounded down (the fraction is never created)."""
    return points * terms.receive // terms.give


async def quote_exchange(
    session: AsyncSession,
    program: Program,
    member: Member,
    to_program: str,
    points: int,
    now: datetime,
    *,
    principal: Principal,
) -> ExchangeQuote:
    """What converting ``points`` into ``to_program`` would give now, and
    what of today's cap is used; refused as the conversion would be (but
    for the wallet's balance and the member's enrolment in the target)."""
    _require_own(principal, program)
    route = await _route(session, program, to_program, now)
    received = _priced(points, route.terms)
    return ExchangeQuote(
        to_program=route.target.slug,
        points=points,
        received_points=received,
        give=route.terms.give,
        receive=route.terms.receive,
        rate_version=route.version,
        min_points=route.terms.min_points,
        max_points=route.terms.max_points,
        daily_cap=route.terms.daily_cap,
        converted_today=await _converted_today(session, program, member, route.target, now),
    )


async def convert_points(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    key: str,
    request: ExchangeRequest,
    now: datetime,
    *,
    principal: Principal,
) -> ExchangeOutcome:
    """Convert the member's points, idempotent by ``key``: a repeated key
    with the same request answers the first conversion (``replayed``),
    with another request ``IdempotencyKeyReused`` (409)."""
    _require_own(principal, program)
    # The key is looked up under the lock: a duplicate sent at the same
    # moment waits for the first to commit, then answers its outcome.
    await lock_member(session, member.id)
    earlier = await session.scalar(
        select(Exchange).where(Exchange.member_id == member.id, Exchange.idempotency_key == key)
    )
    if earlier is not None:
        return await _replay(session, program, earlier, key, request)
    require_active(member)
    route = await _route(session, program, request.to_program, now)
    target_member = await find_member(session, route.target, member.external_id)
    # Points converted in are earned in the target program: not after its
    # sunset's end of earning (converting out of an ending program is spending).
    await check_earning_in(session, route.target, now, now)
    if target_member is None:
        raise ExchangeMemberNotEnrolled(
            f"member {member.external_id!r} is not enrolled in program {route.target.slug!r}"
        )
    require_active(target_member)
    received = _priced(request.points, route.terms)
    converted = await _converted_today(session, program, member, route.target, now)
    if converted + request.points > route.terms.daily_cap:
        raise ExchangeCapExceeded(
            f"conversions into {route.target.slug!r} today would total"
            f" {converted + request.points} points, more than the daily cap of"
            f" {route.terms.daily_cap}"
        )
    # From the member's id, not their external id: one enrolled again after
    # an erasure is another member, whose keys start afresh.
    out_id = derived_id(program.id, "exchange", str(member.id), key, "out")
    in_id = derived_id(program.id, "exchange", str(member.id), key, "in")
    exchange = Exchange(
        id=uuid.uuid4(),
        program_id=program.id,
        member_id=member.id,
        to_program_id=route.target.id,
        to_member_id=target_member.id,
        agreement_id=route.agreement.id,
        rate_version=route.version,
        idempotency_key=key,
        points=request.points,
        received_points=received,
        give=route.terms.give,
        receive=route.terms.receive,
        out_transfer_id=out_id,
        in_transfer_id=in_id,
        occurred_at=now,
    )
    # The row (and its foreign keys' row locks) before the ledger call: from
    # that call to the commit the transaction holds both ledgers' locks, and
    # it must wait on no row lock meanwhile (``Ledger.create_transfers_within``).
    session.add(exchange)
    await session.flush()
    await audit.record(
        session,
        principal,
        "exchange.convert",
        f"program:{program.slug}:member:{member.external_id}:exchange:{exchange.id}",
        {
            "to_program": route.target.slug,
            "points": request.points,
            "received_points": received,
            "rate_version": route.version,
            "key": key,
        },
    )
    metadata = {"exchange": str(exchange.id)}
    await record_transfers(
        ledger,
        [
            Transfer(
                id=out_id,
                debit_account_id=member.wallet_account_id,
                credit_account_id=exchange_account_id(program.id, route.target.id),
                amount=request.points,
                ledger=program.ledger_id,
                code=TransferCode.PARTNER_EXCHANGE,
                flags=TransferFlags.LINKED,
                metadata={**metadata, "to_program": route.target.slug},
            ),
            Transfer(
                id=in_id,
                debit_account_id=exchange_account_id(route.target.id, program.id),
                credit_account_id=target_member.wallet_account_id,
                amount=received,
                ledger=route.target.ledger_id,
                code=TransferCode.PARTNER_EXCHANGE,
                metadata={**metadata, "from_program": program.slug},
            ),
        ],
        within=await session_connection(session),
        insufficient=_NOT_ENOUGH,
    )
    return _outcome(exchange, program.slug, route.target.slug, replayed=False)


async def list_exchanges(
    session: AsyncSession,
    program: Program,
    member: Member,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None = None,
) -> Page[ExchangeView]:
    """The member's conversions out of their program, newest first."""
    _require_own(principal, program)
    after = decode_cursor(cursor)
    query = (
        select(Exchange, Program.slug)
        .join(Program, Program.id == Exchange.to_program_id)
        .where(Exchange.program_id == program.id, Exchange.member_id == member.id)
        .order_by(Exchange.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(Exchange.id < after)
    rows = (await session.execute(query)).all()
    return page_of(
        [_view(exchange, program.slug, slug) for exchange, slug in rows],
        [exchange.id for exchange, _ in rows],
        limit,
    )


def _require_own(principal: Principal, program: Program) -> None:
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")


async def _route(session: AsyncSession, program: Program, to_program: str, now: datetime) -> _Route:
    """The target program, reached only through an agreement of ``program``:
    a program without one is not found, exactly as a missing one."""
    agreement_of = ExchangeAgreement
    found = (
        await session.execute(
            select(Program, agreement_of)
            .join(
                agreement_of,
                or_(
                    Program.id == agreement_of.program_a_id, Program.id == agreement_of.program_b_id
                ),
            )
            .where(
                Program.slug == to_program,
                Program.id != program.id,
                or_(
                    agreement_of.program_a_id == program.id, agreement_of.program_b_id == program.id
                ),
            )
        )
    ).first()
    if found is None:
        raise NotFound(f"program {program.slug!r} has no exchange agreement with {to_program!r}")
    target, agreement = found
    if agreement.status != AgreementStatus.ACTIVE:
        raise ExchangeAgreementNotActive(
            f"the exchange agreement with {target.slug!r} awaits its acceptance"
        )
    version = await version_in_force(session, agreement, now)
    terms = direction_of(version.terms, program.id) if version is not None else None
    if version is None or terms is None:
        raise ExchangeClosed(
            f"points of {program.slug!r} cannot be converted into {target.slug!r} now"
        )
    return _Route(target=target, agreement=agreement, version=version.version, terms=terms)


def _priced(points: int, terms: DirectionTerms) -> int:
    if points < terms.min_points:
        raise ExchangeOutOfBounds(f"points: at least {terms.min_points} per conversion")
    if points > terms.max_points:
        raise ExchangeOutOfBounds(f"points: at most {terms.max_points} per conversion")
    received = received_points(points, terms)
    if received < 1:
        raise ExchangeOutOfBounds(
            f"points: {points} would not buy one point ({terms.give} for {terms.receive})"
        )
    return received


async def _converted_today(
    session: AsyncSession, program: Program, member: Member, target: Program, now: datetime
) -> int:
    # The cap is per day of the source program's calendar, not of UTC.
    day_start, day_end = calendar.local_day(now, program.time_zone)
    total = await session.scalar(
        select(func.coalesce(func.sum(Exchange.points), 0)).where(
            Exchange.member_id == member.id,
            Exchange.to_program_id == target.id,
            Exchange.occurred_at >= day_start,
            Exchange.occurred_at < day_end,
        )
    )
    return int(total or 0)


async def _replay(
    session: AsyncSession,
    program: Program,
    earlier: Exchange,
    key: str,
    request: ExchangeRequest,
) -> ExchangeOutcome:
    target = await session.get_one(Program, earlier.to_program_id)
    if (target.slug, earlier.points) != (request.to_program, request.points):
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for another exchange")
    return _outcome(earlier, program.slug, target.slug, replayed=True)


def _view(exchange: Exchange, source: str, target: str) -> ExchangeView:
    return ExchangeView(
        id=exchange.id,
        from_program=source,
        to_program=target,
        points=exchange.points,
        received_points=exchange.received_points,
        give=exchange.give,
        receive=exchange.receive,
        rate_version=exchange.rate_version,
        at=exchange.occurred_at,
    )


def _outcome(exchange: Exchange, source: str, target: str, *, replayed: bool) -> ExchangeOutcome:
    view = msgspec.structs.asdict(_view(exchange, source, target))
    return ExchangeOutcome(**view, replayed=replayed)
