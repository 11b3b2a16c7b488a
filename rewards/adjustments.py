"""Manual adjustments of a member's points, always with a reason."""

from __future__ import annotations

from typing import Annotated

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import Conflict
from core.members import lock_member
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger, Transfer
from ledger.bounds import ExternalId, Text500
from rewards.errors import InsufficientPoints, LedgerRefused


class Adjustment(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    adjustment_id: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The operator's id of the adjustment, its idempotency key: sent"
            " again, it answers the first outcome."
        ),
    ]
    points: Annotated[
        int,
        msgspec.Meta(
            ge=-(10**12),
            le=10**12,
            description="Points to add (positive) or take (negative; at most what the wallet"
            " holds); not 0.",
        ),
    ]
    reason: Annotated[
        Text500,
        msgspec.Meta(min_length=3, description="Why, for the audit trail."),
    ]

    def __post_init__(self) -> None:
        if self.points == 0:
            raise ValueError("points must not be zero")


class AdjustmentOutcome(msgspec.Struct, kw_only=True, frozen=True):
    adjustment_id: Annotated[str, msgspec.Meta(description="The adjustment's id, as sent.")]
    points: Annotated[int, msgspec.Meta(description="Points added (positive) or taken.")]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when this adjustment id was made before: the first"
            " outcome again, nothing moved twice."
        ),
    ]


async def adjust_points(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    adjustment: Adjustment,
    *,
    principal: Principal,
) -> AdjustmentOutcome:
    """Credit or debit the wallet against the issuance account, and audit
    it. A debit can never take more than the wallet holds.

    The transfer commits through the ledger's writer, before the session:
    a retry after a failure between the two finds it (``exists``) and
    writes the audit line that is missing, so every adjustment ends with
    exactly one line; ``replayed`` is for an adjustment made (and audited)
    before."""
    wallet, issuance = member.wallet_account_id, program.issuance_account_id
    credit = adjustment.points > 0
    # Credits too: a duplicate sent at the same moment waits for the first
    # to commit its audit line, then finds it.
    await lock_member(session, member.id)
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=derived_id(program.id, "adjust", adjustment.adjustment_id),
                debit_account_id=issuance if credit else wallet,
                credit_account_id=wallet if credit else issuance,
                amount=abs(adjustment.points),
                ledger=program.ledger_id,
                code=TransferCode.ADJUSTMENT,
                metadata={"reason": adjustment.reason, "member": member.external_id},
            )
        ]
    )
    if outcome.result == "exceeds_credits":
        raise InsufficientPoints("the wallet does not hold that many points")
    if outcome.result == "exists_with_different_fields":
        raise Conflict(f"adjustment {adjustment.adjustment_id!r} was made with other fields")
    if outcome.result not in ("ok", "exists"):
        raise LedgerRefused(f"adjustment refused: {outcome.result}")
    subject = f"program:{program.slug}:member:{member.external_id}"
    made = outcome.result == "exists" and await audit.recorded(
        session, "member.adjust", subject, adjustment_id=adjustment.adjustment_id
    )
    if not made:
        await audit.record(session, principal, "member.adjust", subject, adjustment)
    return AdjustmentOutcome(
        adjustment_id=adjustment.adjustment_id, points=adjustment.points, replayed=made
    )
