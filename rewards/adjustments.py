"""Manual adjustments of a member's points, always with a reason.

An adjustment that ``corrects`` a transfer is a finance correction: a
closed period is never posted into (the ledger refuses it), so what a
closed month got wrong is put right in the open period, by a transfer of
code ``FINANCE_CORRECTION`` whose metadata names the corrected transfer.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import Conflict, DomainError, ErrorKind
from core.members import lock_member
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger, Transfer
from ledger.bounds import ExternalId, Text500
from ledger.errors import PeriodClosed
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
    corrects: Annotated[
        UUID | None,
        msgspec.Meta(
            description="The ledger transfer this adjustment corrects, one of the program's"
            " (a movement of a closed period, say): the adjustment then posts in the open"
            " period as a correction (code 300) naming it. None: a plain adjustment."
        ),
    ] = None

    def __post_init__(self) -> None:
        if self.points == 0:
            raise ValueError("points must not be zero")


class UnknownCorrectedTransfer(DomainError):
    """The transfer an adjustment corrects is not one of the program's ledger."""

    type_slug = "corrected-transfer-not-found"
    kind = ErrorKind.INVALID


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
    it. A debit can never take more than the wallet holds. With
    ``corrects``, that transfer must be one of the program's ledger
    (``UnknownCorrectedTransfer`` otherwise, nothing written).

    The transfer commits through the ledger's writer, before the session:
    a retry after a failure between the two finds it (``exists``) and
    writes the audit line that is missing, so every adjustment ends with
    exactly one line; ``replayed`` is for an adjustment made (and audited)
    before."""
    wallet, issuance = member.wallet_account_id, program.issuance_account_id
    credit = adjustment.points > 0
    metadata: dict[str, Any] = {"reason": adjustment.reason, "member": member.external_id}
    code = TransferCode.ADJUSTMENT
    if adjustment.corrects is not None:
        await _require_transfer_of(ledger, program, adjustment.corrects)
        metadata["corrects"] = str(adjustment.corrects)
        code = TransferCode.FINANCE_CORRECTION
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
                code=code,
                metadata=metadata,
            )
        ]
    )
    if outcome.result == "exceeds_credits":
        raise InsufficientPoints("the wallet does not hold that many points")
    if outcome.result == "business_time_in_closed_period":
        raise PeriodClosed("the ledger's current period is closed")
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


async def _require_transfer_of(ledger: Ledger, program: Program, transfer_id: UUID) -> None:
    found = await ledger.lookup_transfers([transfer_id])
    if not found or found[0].ledger != program.ledger_id:
        # Another program's transfer is as unknown here as a missing one.
        raise UnknownCorrectedTransfer(
            f"corrects: transfer {transfer_id} is not one of this program's ledger"
        )
