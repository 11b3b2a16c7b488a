"""Cancelling a completed spend: a catalog redemption, or a captured points
payment (a hold the merchant captured). The points come back to exactly the
lots the spend consumed, with their original expiry: the credit names the
spend's debit (``{"restores": "<transfer id>"}``) and the ledger puts back
what that debit took, in the reverse order of consumption.

A spend is cancelled once, whole: its credit's id derives from the spend,
so no retry, race or second cancellation moves points twice. The operator's
``cancellation_id`` is the idempotency key: sent again, it answers the first
outcome; another id for a spend already cancelled is refused.

One transaction: the row, the audit line, the catalog's stock and the
ledger credit (``create_transfers_within``, last) commit together or not at
all, under the member's lock.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import Conflict, DomainError, ErrorKind, NotFound
from core.members import lock_member
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger, Transfer
from ledger.bounds import ExternalId, Text500
from rewards.connections import session_connection
from rewards.lot_models import SpendCancellation, SpendKind
from rewards.models import CatalogReward, HoldStatus, PointHold, Redemption
from rewards.programs import record_transfers


class AlreadyCancelled(DomainError):
    """The spend was cancelled before, under another cancellation id."""

    type_slug = "already-cancelled"
    kind = ErrorKind.CONFLICT


class SpendNotCompleted(DomainError):
    """The hold was not captured: nothing was spent that could be restored
    (release a hold still held)."""

    type_slug = "spend-not-completed"
    kind = ErrorKind.CONFLICT


class SpendCancellationRequest(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    cancellation_id: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The operator's id of the cancellation, its idempotency key: sent"
            " again, it answers the first outcome."
        ),
    ]
    reason: Annotated[Text500, msgspec.Meta(min_length=3, description="Why, for the audit trail.")]


class SpendCancellationOutcome(msgspec.Struct, kw_only=True, frozen=True):
    cancellation_id: Annotated[str, msgspec.Meta(description="The cancellation's id, as sent.")]
    kind: Annotated[
        str,
        msgspec.Meta(
            description="What was cancelled: `redemption` (a catalog redemption) or"
            " `points_payment` (a captured hold)."
        ),
    ]
    points: Annotated[
        int, msgspec.Meta(description="Points restored to the member: all the spend took.")
    ]
    spent_transfer_id: Annotated[
        uuid.UUID,
        msgspec.Meta(description="The spend's ledger transfer, whose lots were restored."),
    ]
    transfer_id: Annotated[
        uuid.UUID, msgspec.Meta(description="The ledger transfer that restored them.")
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when this cancellation id was used before: the first outcome"
            " again, nothing moved twice."
        ),
    ]


async def cancel_redemption(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    spent_transfer_id: uuid.UUID,
    request: SpendCancellationRequest,
    *,
    principal: Principal,
) -> SpendCancellationOutcome:
    """Cancel the member's catalog redemption named by its ledger transfer
    (the movement's id in the member's history): its points back to their
    lots, its units back in stock."""
    await lock_member(session, member.id)
    redemption = await session.scalar(
        select(Redemption).where(
            Redemption.member_id == member.id, Redemption.transfer_id == spent_transfer_id
        )
    )
    if redemption is None:
        raise NotFound(f"no redemption {spent_transfer_id} of member {member.external_id!r}")
    earlier = await _earlier(session, program, request, SpendKind.REDEMPTION, redemption.id)
    if earlier is not None:
        return earlier
    reward = await session.scalar(
        select(CatalogReward).where(CatalogReward.id == redemption.reward_id).with_for_update()
    )
    assert reward is not None  # rewards are never deleted
    if reward.stock is not None:
        reward.stock += redemption.quantity
    return await _cancel(
        session,
        ledger,
        program,
        member,
        request,
        kind=SpendKind.REDEMPTION,
        spend_id=redemption.id,
        spent_transfer_id=redemption.transfer_id,
        points=redemption.points,
        code=TransferCode.REDEMPTION_CANCELLATION,
        subject=f"program:{program.slug}:member:{member.external_id}",
        details={"sku": reward.sku, "quantity": redemption.quantity},
        principal=principal,
    )


async def cancel_points_payment(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    hold_id: uuid.UUID,
    request: SpendCancellationRequest,
    *,
    principal: Principal,
) -> SpendCancellationOutcome:
    """Cancel a captured hold: the points its capture took back to their lots."""
    hold = await session.scalar(
        select(PointHold).where(PointHold.id == hold_id, PointHold.program_id == program.id)
    )
    if hold is None:
        raise NotFound(f"no hold {hold_id}")
    await lock_member(session, hold.member_id)
    member = await session.get_one(Member, hold.member_id)
    earlier = await _earlier(session, program, request, SpendKind.POINTS_PAYMENT, hold.id)
    if earlier is not None:
        return earlier
    # Under the member's lock: a capture in progress has committed by now.
    await session.refresh(hold, with_for_update=True)
    if hold.status != HoldStatus.CAPTURED or hold.captured_points <= 0:
        raise SpendNotCompleted(f"hold {hold_id} is {hold.status}, not captured")
    return await _cancel(
        session,
        ledger,
        program,
        member,
        request,
        kind=SpendKind.POINTS_PAYMENT,
        spend_id=hold.id,
        # The capture (the post of the pending transfer) is the movement
        # that consumed the lots: the hold itself moved none.
        spent_transfer_id=derived_id(program.id, "capture", str(hold.id)),
        points=hold.captured_points,
        code=TransferCode.POINTS_PAYMENT_CANCELLATION,
        subject=f"program:{program.slug}:hold:{hold.id}",
        details={"order_ref": hold.order_ref},
        principal=principal,
    )


async def _earlier(
    session: AsyncSession,
    program: Program,
    request: SpendCancellationRequest,
    kind: SpendKind,
    spend_id: uuid.UUID,
) -> SpendCancellationOutcome | None:
    """The outcome recorded under the request's cancellation id (for this
    spend only), or None; a spend cancelled under another id is refused."""
    found = await session.scalars(
        select(SpendCancellation).where(
            (
                (SpendCancellation.program_id == program.id)
                & (SpendCancellation.cancellation_id == request.cancellation_id)
            )
            | ((SpendCancellation.kind == kind) & (SpendCancellation.spend_id == spend_id))
        )
    )
    rows = list(found)
    for row in rows:
        if row.cancellation_id == request.cancellation_id:
            if (row.kind, row.spend_id) != (kind, spend_id):
                raise Conflict(
                    f"cancellation {request.cancellation_id!r} was recorded for another spend"
                )
            return _outcome(row, replayed=True)
    for row in rows:
        what = kind.replace("_", " ")
        raise AlreadyCancelled(f"the {what} was cancelled by {row.cancellation_id!r}")
    return None


async def _cancel(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    request: SpendCancellationRequest,
    *,
    kind: SpendKind,
    spend_id: uuid.UUID,
    spent_transfer_id: uuid.UUID,
    points: int,
    code: TransferCode,
    subject: str,
    details: dict[str, object],
    principal: Principal,
) -> SpendCancellationOutcome:
    # From the spend, not the cancellation id: whatever ids are sent, the
    # spend's points come back once.
    transfer_id = derived_id(program.id, f"cancel-{kind}", str(spend_id))
    row = SpendCancellation(
        program_id=program.id,
        member_id=member.id,
        cancellation_id=request.cancellation_id,
        kind=kind,
        spend_id=spend_id,
        spent_transfer_id=spent_transfer_id,
        transfer_id=transfer_id,
        points=points,
        reason=request.reason,
    )
    session.add(row)
    await session.flush()
    outcome = _outcome(row, replayed=False)
    await audit.record(
        session,
        principal,
        f"{kind}.cancel",
        subject,
        {
            "cancellation_id": request.cancellation_id,
            "points": points,
            "spent_transfer_id": str(spent_transfer_id),
            "reason": request.reason,
            **details,
        },
    )
    # Last: from the ledger call to the commit the transaction holds the
    # program ledger's lock.
    await record_transfers(
        ledger,
        [
            Transfer(
                id=transfer_id,
                debit_account_id=program.redemption_account_id,
                credit_account_id=member.wallet_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=code,
                metadata={
                    "restores": str(spent_transfer_id),
                    "cancellation_id": request.cancellation_id,
                },
            )
        ],
        within=await session_connection(session),
    )
    return outcome


def _outcome(row: SpendCancellation, *, replayed: bool) -> SpendCancellationOutcome:
    return SpendCancellationOutcome(
        cancellation_id=row.cancellation_id,
        kind=row.kind,
        points=row.points,
        spent_transfer_id=row.spent_transfer_id,
        transfer_id=row.transfer_id,
        replayed=replayed,
    )
