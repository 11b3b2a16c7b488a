"""Reinstatement: "restore every lot that expired since a date" in a program
(a law that forbids expiry by the passage of time alone, retroactively; a
program reversing its expiry).

One idempotent, auditable operation, kept as a row (``reinstatements``)
with its parameters and totals. Each expiry transfer whose points are not
yet restored gets one credit (code ``EXPIRY_REINSTATEMENT``) from breakage
back to the wallet, naming it (``{"restores": "<expiry id>"}``): the ledger
puts the points back into the very lots the expiry took them from, with the
new expiry (``"lot_expires_at"``; null: never). The credit's id derives
from the expiry transfer alone, so an expiry is restored once, whatever
reinstatements run, retry or race; running one again restores nothing (it
finds nothing left to restore).

A page of credits commits with the row's running totals, so the totals
match the ledger after a crash anywhere, and a retry (the same reference)
goes on where it stopped. Done, the run is audited and emits
``rewards.points_reinstated``, for the breakage re-estimate.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.codes import TransferCode, derived_id
from core.errors import Conflict, DomainError, ErrorKind, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from core.programs import lock_program
from ledger import Ledger, Transfer
from ledger.bounds import MOMENT_RULE, ExternalId, Moment, check_moment
from ledger.lots import ExpiredPoints, expired_lots_since
from rewards.connections import session_connection
from rewards.errors import LedgerRefused
from rewards.lot_models import Reinstatement, ReinstatementStatus

PAGE = 1000
REINSTATED = "rewards.points_reinstated"
#: A lot's expiry that never comes, as PostgreSQL spells it.
NEVER = "infinity"


class InvalidReinstatement(DomainError):
    type_slug = "invalid-reinstatement"
    kind = ErrorKind.INVALID


class ReinstatementRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reference: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The operator's id of the reinstatement, its idempotency key: sent"
            " again, it answers (or finishes) the first."
        ),
    ]
    since: Annotated[
        Moment,
        msgspec.Meta(
            description="Restore every point that expired at or after this time (not in"
            f" the future). {MOMENT_RULE}"
        ),
    ]
    lot_expires_at: (
        Annotated[
            Moment,
            msgspec.Meta(
                description="When the restored points expire again (in the future); left"
                f" out or none: never. {MOMENT_RULE}"
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        check_moment("since", self.since)
        check_moment("lot_expires_at", self.lot_expires_at)


class ReinstatementView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The reinstatement's id.")]
    reference: Annotated[str, msgspec.Meta(description="The operator's id, as sent.")]
    since: Annotated[
        datetime, msgspec.Meta(description="Points expired from then on were restored.")
    ]
    lot_expires_at: Annotated[
        datetime | None,
        msgspec.Meta(description="When the restored points expire again; none: never."),
    ]
    status: Annotated[
        str,
        msgspec.Meta(
            description="`done`, or `running` (interrupted: the same request again finishes it)."
        ),
    ]
    points: Annotated[int, msgspec.Meta(description="Points restored.")]
    expiries: Annotated[
        int, msgspec.Meta(description="Expiry transfers whose points were restored.")
    ]
    started_at: Annotated[datetime, msgspec.Meta(description="When it was first asked for.")]
    finished_at: Annotated[datetime | None, msgspec.Meta(description="When it was done.")]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when the reference was done before: its outcome again,"
            " nothing restored twice."
        ),
    ] = False


class ReinstatementPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ReinstatementView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description="Send it back as `cursor` to read the next (older) page; none on the"
            " last page."
        ),
    ] = None


def _view(row: Reinstatement, *, replayed: bool = False) -> ReinstatementView:
    return ReinstatementView(
        id=row.id,
        reference=row.reference,
        since=row.since,
        lot_expires_at=row.lot_expires_at,
        status=row.status,
        points=row.points,
        expiries=row.expiries,
        started_at=row.created_at,
        finished_at=row.finished_at,
        replayed=replayed,
    )


async def reinstate_expired(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    request: ReinstatementRequest,
    now: datetime,
    *,
    principal: Principal,
) -> ReinstatementView:
    """Restore every lot of the program expired since ``request.since``.
    Commits page by page (the session must not expire its objects on
    commit); the caller commits the last."""
    await lock_program(session, program)
    row = await session.scalar(
        select(Reinstatement).where(
            Reinstatement.program_id == program.id, Reinstatement.reference == request.reference
        )
    )
    if row is not None:
        if (row.since, row.lot_expires_at) != (request.since, request.lot_expires_at):
            raise Conflict(f"reinstatement {request.reference!r} was asked with other fields")
        if row.status == ReinstatementStatus.DONE:
            return _view(row, replayed=True)
    else:
        if request.since > now:
            raise InvalidReinstatement("since: must not be in the future")
        if request.lot_expires_at is not None and request.lot_expires_at <= now:
            raise InvalidReinstatement("lot_expires_at: must be in the future (or none: never)")
        row = Reinstatement(
            program_id=program.id,
            reference=request.reference,
            since=request.since,
            lot_expires_at=request.lot_expires_at,
            status=ReinstatementStatus.RUNNING,
            points=0,
            expiries=0,
            created_at=now,
        )
        session.add(row)
        await session.flush()
    await _restore(session, ledger, program, row)
    await _finish(session, program, row, now, principal)
    return _view(row)


async def _restore(
    session: AsyncSession, ledger: Ledger, program: Program, row: Reinstatement
) -> None:
    expired = await expired_lots_since(ledger.pool, ledger=program.ledger_id, since=row.since)
    # "infinity" for never: the ledger reads a null expiry as "keep the
    # lot's own" (by the program's policy from when it was earned).
    metadata_expiry = NEVER if row.lot_expires_at is None else row.lot_expires_at.isoformat()
    for start in range(0, len(expired), PAGE):
        page = await _expiries_by_policy(ledger, expired[start : start + PAGE])
        transfers = [
            Transfer(
                id=derived_id(program.id, "reinstate", str(e.transfer_id)),
                debit_account_id=program.breakage_account_id,
                credit_account_id=e.account_id,
                amount=e.points,
                ledger=program.ledger_id,
                code=TransferCode.EXPIRY_REINSTATEMENT,
                metadata={
                    "restores": str(e.transfer_id),
                    "lot_expires_at": metadata_expiry,
                    "reinstatement": row.reference,
                },
            )
            for e in page
        ]
        outcomes = await ledger.create_transfers_within(
            await session_connection(session), transfers
        )
        restored = []
        for transfer, outcome in zip(transfers, outcomes, strict=True):
            if outcome.result == "ok":
                restored.append(transfer)
            elif outcome.result not in ("exists", "exists_with_different_fields"):
                raise LedgerRefused(f"reinstatement refused by the ledger: {outcome.result}")
            # exists: another reinstatement restored this expiry meanwhile.
        await session.execute(
            update(Reinstatement)
            .where(Reinstatement.id == row.id)
            .values(
                points=Reinstatement.points + sum(t.amount for t in restored),
                expiries=Reinstatement.expiries + len(restored),
            )
        )
        await session.commit()


async def _expiries_by_policy(ledger: Ledger, found: list[ExpiredPoints]) -> list[ExpiredPoints]:
    """Those of the expired points that the expiry policy took: a sunset's
    mass expiry ended the program, it is not an expiry by the passage of time."""
    transfers = await ledger.lookup_transfers([e.transfer_id for e in found])
    by_policy = {t.id for t in transfers if t.code == TransferCode.EXPIRY}
    return [e for e in found if e.transfer_id in by_policy]


async def _finish(
    session: AsyncSession, program: Program, row: Reinstatement, now: datetime, principal: Principal
) -> None:
    """Mark it done with its audit line and its event, once: of two runs
    of one reference (a retry beside the first), one finishes it."""
    await session.refresh(row, with_for_update=True)
    if row.status == ReinstatementStatus.DONE:
        return
    row.status, row.finished_at = ReinstatementStatus.DONE, now
    await session.flush()
    totals = {
        "reference": row.reference,
        "since": row.since.isoformat(),
        "lot_expires_at": None if row.lot_expires_at is None else row.lot_expires_at.isoformat(),
        "points": row.points,
        "expiries": row.expiries,
    }
    await audit.record(
        session,
        principal,
        "points.reinstate",
        f"program:{program.slug}:reinstatement:{row.reference}",
        totals,
    )
    await outbox.emit(
        session,
        REINSTATED,
        f"program:{program.id}",
        {"program": program.slug, "reinstatement_id": str(row.id), **totals},
    )


async def get_reinstatement(
    session: AsyncSession, program: Program, reinstatement_id: uuid.UUID
) -> ReinstatementView:
    row = await session.scalar(
        select(Reinstatement).where(
            Reinstatement.id == reinstatement_id, Reinstatement.program_id == program.id
        )
    )
    if row is None:
        raise NotFound(f"no reinstatement {reinstatement_id}")
    return _view(row)


async def list_reinstatements(
    session: AsyncSession, program: Program, *, limit: int, cursor: str | None
) -> Page[ReinstatementView]:
    """The program's reinstatements, newest first."""
    after = decode_cursor(cursor)
    query = select(Reinstatement).where(Reinstatement.program_id == program.id)
    if after is not None:
        query = query.where(Reinstatement.id < after)
    rows = list(await session.scalars(query.order_by(Reinstatement.id.desc()).limit(limit + 1)))
    return page_of([_view(r) for r in rows], [r.id for r in rows], limit)
