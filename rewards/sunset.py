"""A program's sunset: announced with a notice period, then, at its date,
one auditable mass expiry of every point left in every wallet.

Scheduling stores the date (at least ``notice_days`` ahead) and emits
``rewards.sunset_scheduled``, so members can be told; it can be cancelled
until the date. Earning stops first: from ``earning_ends_at`` (the
announcement, unless a later instant is named) no new points are credited
(``rewards.end_of_earning``), while members redeem until the date. The
sunset is written under the program's end-of-earning lock, which every
earning's check holds in share mode: an earning checked before the sunset
commits before it, one checked after sees it.

From the date on, the ``sunset-programs`` job (or an operator's run of it)
expires every wallet's spendable points to breakage with code
``PROGRAM_SUNSET``, a page of members at a time as expiry does:
each page's members locked (those in a spend are skipped until the next
run), its transfers posted inside the page's transaction together with the
sunset's running totals, so a crash anywhere leaves totals that match the
ledger, and a rerun takes only what is left. Once a run has seen every
member, the sunset is completed: audited with its totals, and
``rewards.sunset_completed`` emitted.

Points still held by a checkout at the sunset are not spendable: they are
left to their capture or release.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit, outbox
from core.codes import TransferCode, derived_id
from core.errors import Conflict, DomainError, ErrorKind, NotFound
from core.models import Member, Program
from core.principal import Principal, system
from core.programs import lock_program
from ledger import Ledger, Transfer
from ledger.bounds import MOMENT_RULE, Moment, Text500, check_moment
from ledger.reads import spendable
from rewards.connections import session_connection
from rewards.end_of_earning import lock_end_of_earning
from rewards.lot_models import ProgramSunset, SunsetStatus
from rewards.programs import record_transfers

PAGE = 1000
SCHEDULED = "rewards.sunset_scheduled"
CANCELLED = "rewards.sunset_cancelled"
COMPLETED = "rewards.sunset_completed"
TOPICS = frozenset({SCHEDULED, CANCELLED, COMPLETED})


class SunsetNoticeTooShort(DomainError):
    type_slug = "sunset-notice-too-short"
    kind = ErrorKind.INVALID


class InvalidEndOfEarning(DomainError):
    type_slug = "invalid-end-of-earning"
    kind = ErrorKind.INVALID


class SunsetLocked(DomainError):
    """The sunset's date has come (its mass expiry runs or ran): it can no
    longer be cancelled or replaced."""

    type_slug = "sunset-locked"
    kind = ErrorKind.CONFLICT


class SunsetRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sunset_at: Annotated[
        Moment,
        msgspec.Meta(
            description="When the program ends and every point left expires: at least"
            f" `notice_days` from now. {MOMENT_RULE}"
        ),
    ]
    notice_days: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=3650,
            description="The notice members are given, in days: `sunset_at` must be at least"
            " this far ahead.",
        ),
    ] = 90
    reason: Annotated[
        Text500, msgspec.Meta(min_length=3, description="Why, for the audit trail and members.")
    ]
    earning_ends_at: (
        Annotated[
            Moment,
            msgspec.Meta(
                description="When members stop earning (new earnings are refused with 409"
                " `program-sunsetting` from then on; redemptions go on until `sunset_at`):"
                " not in the past, not after"
                " `sunset_at`. Left out or none: at once, when the sunset is scheduled."
                f" {MOMENT_RULE}"
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        check_moment("sunset_at", self.sunset_at)
        check_moment("earning_ends_at", self.earning_ends_at)


class SunsetView(msgspec.Struct, kw_only=True, frozen=True):
    sunset_at: Annotated[datetime, msgspec.Meta(description="When the program ends.")]
    earning_ends_at: Annotated[
        datetime,
        msgspec.Meta(description="From when nothing new is earned (redemptions go on)."),
    ]
    notice_days: Annotated[int, msgspec.Meta(description="The notice given, in days.")]
    reason: Annotated[str, msgspec.Meta(description="Why, as sent.")]
    status: Annotated[
        str,
        msgspec.Meta(
            description="`scheduled` (announced; the mass expiry runs from `sunset_at`),"
            " `cancelled`, or `completed` (every wallet's points expired)."
        ),
    ]
    announced_at: Annotated[datetime, msgspec.Meta(description="When it was scheduled.")]
    cancelled_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was cancelled, if it was.")
    ]
    completed_at: Annotated[
        datetime | None, msgspec.Meta(description="When the mass expiry completed, if it has.")
    ]
    points: Annotated[int, msgspec.Meta(description="Points the mass expiry took so far.")]
    wallets: Annotated[int, msgspec.Meta(description="Wallets it took points from so far.")]


def _view(sunset: ProgramSunset) -> SunsetView:
    return SunsetView(
        sunset_at=sunset.sunset_at,
        earning_ends_at=sunset.earning_ends_at,
        notice_days=sunset.notice_days,
        reason=sunset.reason,
        status=sunset.status,
        announced_at=sunset.created_at,
        cancelled_at=sunset.cancelled_at,
        completed_at=sunset.completed_at,
        points=sunset.points,
        wallets=sunset.wallets,
    )


def _subject(program: Program) -> str:
    return f"program:{program.slug}:sunset"


async def _standing(session: AsyncSession, program: Program) -> ProgramSunset | None:
    return await session.scalar(
        select(ProgramSunset).where(
            ProgramSunset.program_id == program.id,
            ProgramSunset.status != SunsetStatus.CANCELLED,
        )
    )


async def schedule_sunset(
    session: AsyncSession,
    program: Program,
    request: SunsetRequest,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[SunsetView, bool]:
    """Schedule the program's sunset, audited, with the members' notice
    event; and whether it is new. The same request again answers the
    sunset scheduled; another while one stands is refused (cancel it
    first)."""
    await lock_program(session, program)
    standing = await _standing(session, program)
    if standing is not None:
        same = (standing.sunset_at, standing.notice_days, standing.reason) == (
            request.sunset_at,
            request.notice_days,
            request.reason,
        ) and _same_end_of_earning(standing, request)
        if same and standing.status == SunsetStatus.SCHEDULED:
            return _view(standing), False
        if standing.status == SunsetStatus.COMPLETED:
            raise SunsetLocked(f"program {program.slug!r} ended at {standing.sunset_at}")
        raise Conflict(
            f"a sunset of program {program.slug!r} is scheduled for"
            f" {standing.sunset_at.isoformat()}: cancel it first"
        )
    earliest = now + timedelta(days=request.notice_days)
    if request.sunset_at < earliest:
        raise SunsetNoticeTooShort(
            f"sunset_at must be at least {request.notice_days} days ahead, at or after"
            f" {earliest.isoformat()}"
        )
    earning_ends_at = now if request.earning_ends_at is None else request.earning_ends_at
    if earning_ends_at < now or earning_ends_at > request.sunset_at:
        raise InvalidEndOfEarning(
            "earning_ends_at: must be between now and sunset_at"
            f" ({now.isoformat()} to {request.sunset_at.isoformat()})"
        )
    # Earnings checked and not yet committed are waited for; those checked
    # from now on wait for this commit, and then see the sunset.
    await lock_end_of_earning(await session_connection(session), program.id)
    sunset = ProgramSunset(
        program_id=program.id,
        sunset_at=request.sunset_at,
        earning_ends_at=earning_ends_at,
        notice_days=request.notice_days,
        reason=request.reason,
        status=SunsetStatus.SCHEDULED,
        points=0,
        wallets=0,
        created_at=now,
    )
    session.add(sunset)
    await session.flush()
    await audit.record(session, principal, "program.sunset.schedule", _subject(program), request)
    await outbox.emit(
        session,
        SCHEDULED,
        f"program:{program.id}",
        {
            "program": program.slug,
            "sunset_at": request.sunset_at.isoformat(),
            "earning_ends_at": earning_ends_at.isoformat(),
            "notice_days": request.notice_days,
            "reason": request.reason,
        },
    )
    return _view(sunset), True


def _same_end_of_earning(standing: ProgramSunset, request: SunsetRequest) -> bool:
    """Whether the request names the standing sunset's end of earning (none:
    at its announcement)."""
    if request.earning_ends_at is None:
        return standing.earning_ends_at == standing.created_at
    return standing.earning_ends_at == request.earning_ends_at


async def cancel_sunset(
    session: AsyncSession, program: Program, now: datetime, *, principal: Principal
) -> SunsetView:
    """Cancel the scheduled sunset before its date, audited, with an event
    telling members; again, the sunset cancelled last is the answer."""
    await lock_program(session, program)
    standing = await _standing(session, program)
    if standing is None:
        latest = await _latest(session, program)
        if latest is None:
            raise NotFound(f"no sunset of program {program.slug!r}")
        return _view(latest)
    if standing.status == SunsetStatus.COMPLETED or standing.sunset_at <= now:
        raise SunsetLocked(
            f"the sunset of program {program.slug!r} is due since {standing.sunset_at}:"
            " its mass expiry runs and cannot be cancelled"
        )
    standing.status, standing.cancelled_at = SunsetStatus.CANCELLED, now
    await session.flush()
    await audit.record(
        session,
        principal,
        "program.sunset.cancel",
        _subject(program),
        {"sunset_at": standing.sunset_at.isoformat()},
    )
    await outbox.emit(
        session,
        CANCELLED,
        f"program:{program.id}",
        {"program": program.slug, "sunset_at": standing.sunset_at.isoformat()},
    )
    return _view(standing)


async def _latest(session: AsyncSession, program: Program) -> ProgramSunset | None:
    return await session.scalar(
        select(ProgramSunset)
        .where(ProgramSunset.program_id == program.id)
        .order_by(ProgramSunset.id.desc())
        .limit(1)
    )


async def show_sunset(session: AsyncSession, program: Program) -> SunsetView:
    """The standing sunset, else the one cancelled last."""
    found = await _standing(session, program) or await _latest(session, program)
    if found is None:
        raise NotFound(f"no sunset of program {program.slug!r}")
    return _view(found)


async def run_sunset(session: AsyncSession, ledger: Ledger, program: Program, now: datetime) -> int:
    """Expire every point left in the program's wallets if its sunset is
    due; returns how many this run took. Commits page by page (the
    session must not expire its objects on commit)."""
    sunset = await session.scalar(
        select(ProgramSunset).where(
            ProgramSunset.program_id == program.id,
            ProgramSunset.status == SunsetStatus.SCHEDULED,
            ProgramSunset.sunset_at <= now,
        )
    )
    await session.commit()
    if sunset is None:
        return 0
    taken, seen, after = 0, 0, None
    while True:
        query = select(Member).where(Member.program_id == program.id).order_by(Member.id)
        if after is not None:
            query = query.where(Member.id > after)
        members = list(await session.scalars(query.limit(PAGE).with_for_update(skip_locked=True)))
        if not members:
            break
        after, seen = members[-1].id, seen + len(members)
        taken += await _expire_page(session, ledger, program, sunset, members)
        await session.commit()
    enrolled = await session.scalar(
        select(func.count()).select_from(Member).where(Member.program_id == program.id)
    )
    if seen >= (enrolled or 0):
        await _complete(session, program, sunset, now)
    await session.commit()
    return taken


async def _expire_page(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    sunset: ProgramSunset,
    members: list[Member],
) -> int:
    states = {s.id: s for s in await ledger.lookup_accounts([m.wallet_account_id for m in members])}
    transfers = []
    for member in members:
        state = states[member.wallet_account_id]
        points = spendable(state)
        if points <= 0:
            continue
        transfers.append(
            Transfer(
                # From the wallet as read: a rerun over the same wallet is the
                # same transfer, a wallet that moved since a new one.
                id=derived_id(
                    program.id, "sunset", str(sunset.id), str(member.id), str(state.debits_posted)
                ),
                debit_account_id=member.wallet_account_id,
                credit_account_id=program.breakage_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.PROGRAM_SUNSET,
                metadata={"sunset_at": sunset.sunset_at.isoformat()},
            )
        )
    if not transfers:
        return 0
    # The members are locked and the page's totals commit with its
    # transfers: nothing else could take these points meanwhile.
    outcomes = await record_transfers(ledger, transfers, within=await session_connection(session))
    moved = [t for t, o in zip(transfers, outcomes, strict=True) if o.result == "ok"]
    points = sum(t.amount for t in moved)
    await session.execute(
        update(ProgramSunset)
        .where(ProgramSunset.id == sunset.id)
        .values(points=ProgramSunset.points + points, wallets=ProgramSunset.wallets + len(moved))
    )
    return points


async def _complete(
    session: AsyncSession, program: Program, sunset: ProgramSunset, now: datetime
) -> None:
    await session.refresh(sunset, with_for_update=True)
    if sunset.status != SunsetStatus.SCHEDULED:
        return  # another worker completed it
    sunset.status, sunset.completed_at = SunsetStatus.COMPLETED, now
    await session.flush()
    totals = {"points": sunset.points, "wallets": sunset.wallets}
    await audit.record(
        session,
        system("sunset-programs"),
        "program.sunset.complete",
        _subject(program),
        {"sunset_at": sunset.sunset_at.isoformat(), **totals},
    )
    await outbox.emit(
        session,
        COMPLETED,
        f"program:{program.id}",
        {"program": program.slug, "sunset_at": sunset.sunset_at.isoformat(), **totals},
    )


async def run_due_sunsets(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, now: datetime
) -> int:
    """The job: every program whose sunset is due; answers the points taken."""
    async with sessions() as session:
        programs = list(
            await session.scalars(
                select(Program)
                .join(ProgramSunset, ProgramSunset.program_id == Program.id)
                .where(
                    ProgramSunset.status == SunsetStatus.SCHEDULED, ProgramSunset.sunset_at <= now
                )
            )
        )
    taken = 0
    for program in programs:
        async with sessions() as session:
            taken += await run_sunset(session, ledger, await session.merge(program), now)
    return taken
