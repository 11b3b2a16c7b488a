"""Points as payment: a checkout holds points (a pending ledger transfer),
then the merchant captures all or part of them, or releases them. A hold
never resolved times out: the ledger's sweeper voids it."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import IdempotencyKeyReused, NotFound
from core.members import lock_member, require_active
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger, Transfer, TransferFlags
from ledger.bounds import BIGINT_MAX, ExternalId, PositiveBigInt
from rewards.errors import CaptureExceedsHold, HoldClosed, InsufficientPoints, LedgerRefused
from rewards.models import HoldStatus, PointHold
from rewards.programs import record_transfers


class HoldRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_ref: Annotated[
        ExternalId, msgspec.Meta(description="The merchant's order the points pay for.")
    ]
    amount_minor: Annotated[
        PositiveBigInt,
        msgspec.Meta(
            description="The part of the order the member pays with points, in minor units"
            " of the program's currency; the points held are its worth at the program's"
            " point value, rounded up."
        ),
    ]
    timeout_seconds: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=86_400,
            description="Seconds the hold lasts unless captured or released; then the points"
            " come back.",
        ),
    ] = 900


class Capture(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    points: (
        Annotated[
            PositiveBigInt,
            msgspec.Meta(
                description="Points to take, at most those held; the rest is released. None"
                " (or left out) takes them all."
            ),
        ]
        | None
    ) = None


class HoldView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[
        uuid.UUID, msgspec.Meta(description="The hold's id, to capture or release it by.")
    ]
    order_ref: Annotated[str, msgspec.Meta(description="The merchant's order, as sent.")]
    points: Annotated[int, msgspec.Meta(description="Points held.")]
    value_minor: Annotated[
        int, msgspec.Meta(description="The amount they pay, in minor units, as sent.")
    ]
    status: Annotated[
        str,
        msgspec.Meta(
            description="`held`; then `captured` (points taken), `released` (points back)"
            " or `expired` (not resolved by `expires_at`: the points come back)."
        ),
    ]
    captured_points: Annotated[
        int, msgspec.Meta(description="Points taken by the capture; 0 until then.")
    ]
    expires_at: Annotated[
        datetime, msgspec.Meta(description="When the hold ends unless captured or released.")
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when the request repeats one already done (the same"
            " Idempotency-Key, or a capture or release of a hold already resolved so):"
            " nothing moved twice."
        ),
    ] = False


def points_for_amount(program: Program, amount_minor: int) -> int:
    """Points that pay ``amount_minor`` at the program's redeem rate, rounded
    up: a member never pays less than the amount's worth."""
    return math.ceil(Decimal(amount_minor) / program.point_value_minor)


async def hold_points(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    key: str,
    request: HoldRequest,
    now: datetime,
) -> HoldView:
    # Looked up under the lock: a duplicate sent at the same moment waits
    # for the first to commit, then answers its outcome.
    await lock_member(session, member.id)
    earlier = await _earlier_hold(session, member, key, request, now)
    if earlier is not None:
        return earlier
    require_active(member)
    points = points_for_amount(program, request.amount_minor)
    if points > BIGINT_MAX:
        # At a tiny point value an amount is worth more points than the
        # ledger counts (bigint): no wallet holds them, and the ledger would
        # refuse the transfer itself, not the member's balance.
        raise InsufficientPoints(f"{points} points are needed, more than a wallet can hold")
    # From the member's id, not their external id: one enrolled again after
    # an erasure is another member, whose keys start afresh.
    transfer_id = derived_id(program.id, "hold", str(member.id), key)
    await record_transfers(
        ledger,
        [
            Transfer(
                id=transfer_id,
                debit_account_id=member.wallet_account_id,
                credit_account_id=program.redemption_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.POINTS_PAYMENT,
                flags=TransferFlags.PENDING,
                timeout=request.timeout_seconds,
                metadata={"order_ref": request.order_ref},
            )
        ],
        insufficient=f"{points} points are needed",
    )
    hold = PointHold(
        program_id=program.id,
        member_id=member.id,
        idempotency_key=key,
        order_ref=request.order_ref,
        points=points,
        value_minor=request.amount_minor,
        transfer_id=transfer_id,
        status=HoldStatus.HELD,
        captured_points=0,
        expires_at=now + timedelta(seconds=request.timeout_seconds),
    )
    session.add(hold)
    await session.flush()
    return _view(hold, now)


async def _earlier_hold(
    session: AsyncSession, member: Member, key: str, request: HoldRequest, now: datetime
) -> HoldView | None:
    """The hold recorded under ``key``, if any (the same request only)."""
    earlier = await session.scalar(
        select(PointHold).where(PointHold.member_id == member.id, PointHold.idempotency_key == key)
    )
    if earlier is None:
        return None
    if (earlier.order_ref, earlier.value_minor) != (request.order_ref, request.amount_minor):
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for another hold")
    return _view(earlier, now, replayed=True)


async def capture_hold(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    hold_id: uuid.UUID,
    capture: Capture,
    now: datetime,
    *,
    principal: Principal,
) -> HoldView:
    """Capture the hold, audited. The capture commits through the ledger's
    writer first; a retry after a failure before the hold's row committed
    finds it (``exists``) and writes the row and its audit line, which
    commit together: one line per capture."""
    hold = await _locked(session, program, hold_id)
    if hold.status == HoldStatus.CAPTURED:
        return _view(hold, now, replayed=True)
    points = capture.points or hold.points
    if points > hold.points:
        raise CaptureExceedsHold(f"only {hold.points} points are held")
    await _resolve(ledger, hold, program, TransferFlags.POST_PENDING, points)
    hold.status, hold.captured_points = HoldStatus.CAPTURED, points
    await session.flush()
    await audit.record(
        session,
        principal,
        "hold.capture",
        f"program:{program.slug}:hold:{hold_id}",
        {"points": points},
    )
    return _view(hold, now)


async def release_hold(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    hold_id: uuid.UUID,
    now: datetime,
    member: Member | None = None,
    *,
    principal: Principal,
) -> HoldView:
    """Release the hold (``member``: only one of theirs), audited once, as
    a capture is."""
    hold = await _locked(session, program, hold_id)
    if member is not None and hold.member_id != member.id:
        raise NotFound(f"no hold {hold_id}")
    if hold.status == HoldStatus.RELEASED:
        return _view(hold, now, replayed=True)
    await _resolve(ledger, hold, program, TransferFlags.VOID_PENDING, 0)
    hold.status = HoldStatus.RELEASED
    await session.flush()
    await audit.record(session, principal, "hold.release", f"program:{program.slug}:hold:{hold_id}")
    return _view(hold, now)


async def _locked(session: AsyncSession, program: Program, hold_id: uuid.UUID) -> PointHold:
    hold = await session.scalar(
        select(PointHold)
        .where(PointHold.id == hold_id, PointHold.program_id == program.id)
        .with_for_update()
    )
    if hold is None:
        raise NotFound(f"no hold {hold_id}")
    return hold


async def _resolve(
    ledger: Ledger, hold: PointHold, program: Program, flags: TransferFlags, points: int
) -> None:
    kind = "capture" if flags == TransferFlags.POST_PENDING else "release"
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=derived_id(program.id, kind, str(hold.id)),
                pending_id=hold.transfer_id,
                flags=flags,
                amount=points,
            )
        ]
    )
    if outcome.result in ("ok", "exists"):
        return
    if kind == "release" and outcome.result == "pending_already_voided":
        return  # the sweeper released it first: the same end
    if outcome.result in ("pending_expired", "pending_already_voided", "pending_already_posted"):
        raise HoldClosed(f"the hold is closed ({outcome.result})")
    raise LedgerRefused(f"ledger refused: {outcome.result}")


def _view(hold: PointHold, now: datetime, *, replayed: bool = False) -> HoldView:
    status = hold.status
    if status == HoldStatus.HELD and hold.expires_at <= now:
        status = "expired"
    return HoldView(
        id=hold.id,
        order_ref=hold.order_ref,
        points=hold.points,
        value_minor=hold.value_minor,
        status=status,
        captured_points=hold.captured_points,
        expires_at=hold.expires_at,
        replayed=replayed,
    )
