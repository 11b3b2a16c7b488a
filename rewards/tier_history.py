"""Members' tiers through time: one row per change of a member's tier
(``member_tier_changes``, migration 0047), from the instant it took effect,
with the tier before it.

The rows are written by a trigger on ``members`` (``AFTER UPDATE OF
tier_code``) in the transaction of the change, so every path that moves a
tier records it without knowing about it: a purchase's qualification (the
batched write of ``rewards.purchase_repository``), the downgrade job
(``rewards.tiers.evaluate_tiers``), any update of the column. The instant
is the change's ``tier_since`` (a qualifying purchase's business time, the
job's now), never before the member's previous change.

History starts at migration 0047: each member then got one row holding
their tier at that moment as both tier and tier before, so any earlier
instant counts them in that tier. A member with no row never changed tier
since: the current tier is the tier at every instant.

The ledger keeps the same history in its account classes (migration
0053): each tier has a class (``Tier.ledger_class``; 0 is no tier) and
every change moves the member's wallet to the new tier's class from the
change's instant, so that the ledger's aggregates give the points held in
each tier on any day (``finance.liability``). The trigger queues the move
in ``tier_classes_due`` and the commit makes it, one ledger call for all
of the transaction's changes: made at once, it would hold the ledger's
posting lock for the rest of the transaction, which a purchase posting
through the ledger's writer would then wait on. A member created with a
tier is in its class from the beginning of time, as in this history.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column


class TierChange(UUIDv7AuditBase):
    __tablename__ = "member_tier_changes"
    __table_args__ = (
        Index("ix_member_tier_changes_member", "member_id", "valid_from", "created_at"),
        Index("ix_member_tier_changes_program", "program_id", "valid_from"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    #: The tier from ``valid_from``; None: no tier.
    tier_code: Mapped[str | None] = mapped_column(String(50))
    #: The tier held just before ``valid_from``.
    previous_tier_code: Mapped[str | None] = mapped_column(String(50))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))


#: The wallets' moves to their tier's ledger class that the transaction's
#: tier changes owe, taken by its commit (migration 0053): empty outside.
tier_classes_due = Table(
    "tier_classes_due",
    UUIDv7AuditBase.metadata,
    Column("id", BigInteger, primary_key=True),  # bigserial
    Column("wallet_account_id", UUID(as_uuid=True), nullable=False),
    Column("ledger_class", Integer, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
)


# Per member: the last change at or before the instant, else the tier
# before the first change, else (no change recorded) the current tier. Two
# passes over the program's changes, hash-joined to its members (two index
# probes per member measured about the same: 2-3 s per 100k members on a
# loaded machine, most of it carrying the rows to Python).
_IN_FORCE = text("""
    WITH held AS (
        SELECT DISTINCT ON (member_id) member_id, tier_code FROM member_tier_changes
        WHERE program_id = :program AND valid_from <= :at
        ORDER BY member_id, valid_from DESC, created_at DESC
    ), first AS (
        SELECT DISTINCT ON (member_id) member_id, previous_tier_code FROM member_tier_changes
        WHERE program_id = :program
        ORDER BY member_id, valid_from, created_at
    )
    SELECT m.wallet_account_id,
        CASE WHEN held.member_id IS NOT NULL THEN held.tier_code
             WHEN first.member_id IS NOT NULL THEN first.previous_tier_code
             ELSE m.tier_code END AS tier_code
    FROM members m
    LEFT JOIN held ON held.member_id = m.id
    LEFT JOIN first ON first.member_id = m.id
    WHERE m.program_id = :program""")


async def tiers_in_force(
    session: AsyncSession, program_id: uuid.UUID, at: datetime
) -> dict[uuid.UUID, str | None]:
    """Each member's tier at the instant ``at``, by wallet account."""
    rows = await session.execute(_IN_FORCE, {"program": program_id, "at": at})
    return {wallet: code for wallet, code in rows.all()}
