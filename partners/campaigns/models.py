"""Tables of joint campaigns (migration 0033): the campaign, its
participants (funders, with their shares and approvals), its stores, the
members of its segment (the holdout drawn at the start among them) and the
bonuses it gave."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race, taken


class CampaignStatus(enum.StrEnum):
    #: Waiting for every participant's approval.
    PROPOSED = "proposed"
    #: Every participant approved: starts at ``starts_at`` (the start job).
    APPROVED = "approved"
    #: Budgets funded, holdout drawn: its bonus applies.
    RUNNING = "running"
    #: Its start failed (a participant could not fund its share): nothing moved.
    UNFUNDED = "unfunded"
    #: A participant (or the operator) stopped it before its end.
    STOPPED = "stopped"
    #: Its end date passed.
    ENDED = "ended"


#: Statuses in which a campaign may still be stopped.
STOPPABLE = frozenset({CampaignStatus.PROPOSED, CampaignStatus.APPROVED, CampaignStatus.RUNNING})


class Campaign(UUIDv7AuditBase):
    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("program_id", "reference"),
        Index("ix_campaigns_status_starts_at", "status", "starts_at"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The proposer's id of the campaign: the idempotency key, per program.
    reference: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    #: The partner that proposed it; None: the operator.
    proposed_by_partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    proposed_by: Mapped[str] = mapped_column(String(300))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(10))
    #: The segment targeted ({"kind": "all" | "tiers" | "active" | "list", ...}).
    segment: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: The bonus earn rules (``partners.campaigns.schemas.BonusRules``).
    rules: Mapped[dict[str, Any]] = mapped_column(JSONB)
    budget_points: Mapped[int] = mapped_column(BigInteger)
    #: Share of the segment held out, in basis points (0 to 5,000).
    holdout_bp: Mapped[int] = mapped_column(Integer)
    #: How many members the segment had at the start, and how many were held out.
    segment_size: Mapped[int | None] = mapped_column(Integer)
    holdout_size: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When it stopped applying (its end, or a stop).
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stopped_by: Mapped[str | None] = mapped_column(String(300))
    #: When the unspent budget went back to the participants.
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure: Mapped[str | None] = mapped_column(String(500))


class CampaignParticipant(UUIDv7AuditBase):
    """A funder of the campaign: its share, its approval, its budget account."""

    __tablename__ = "campaign_participants"
    __table_args__ = (
        UniqueConstraint("campaign_id", "partner_id"),
        Index("ix_campaign_participants_partner_id", "partner_id"),
    )

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: Order in the proposal: the rounding rule's tie-break.
    position: Mapped[int] = mapped_column(Integer)
    #: Share of every bonus point and of the budget, in basis points.
    share_bp: Mapped[int] = mapped_column(Integer)
    #: Its part of the budget (the budget split by the rounding rule).
    budget_points: Mapped[int] = mapped_column(BigInteger)
    #: The account its part is funded from and released to (its contract holder's).
    funding_account_id: Mapped[uuid.UUID | None]
    #: The participant's budget account (bounded: never overspent).
    budget_account_id: Mapped[uuid.UUID]
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_by: Mapped[str | None] = mapped_column(String(300))


class CampaignStore(UUIDv7AuditBase):
    """A store (a partner company) whose purchases earn the bonus."""

    __tablename__ = "campaign_stores"
    __table_args__ = (
        UniqueConstraint("campaign_id", "company_id"),
        Index("ix_campaign_stores_company_id", "company_id"),
    )

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    company_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The participant whose store it is (spend per participant).
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))


class CampaignMember(UUIDv7AuditBase):
    """A member of the segment as drawn at the start; ``holdout`` gets no bonus."""

    __tablename__ = "campaign_members"
    __table_args__ = (UniqueConstraint("campaign_id", "member_id"),)

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    holdout: Mapped[bool] = mapped_column(Boolean)


class CampaignBonus(UUIDv7AuditBase):
    """The bonus of one purchase (a partner issuance) under a campaign: one
    linked multi-leg ledger posting, or a refusal (the budget spent)."""

    __tablename__ = "campaign_bonuses"
    __table_args__ = (
        UniqueConstraint("campaign_id", "issuance_id"),
        Index("ix_campaign_bonuses_campaign_member", "campaign_id", "member_id"),
    )

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    issuance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner_issuances.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    company_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The bonus the rules gave; 0 points moved when ``refused``.
    points: Mapped[int] = mapped_column(BigInteger)
    #: Participant id -> points of its leg (the rounding rule's split).
    legs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: None when posted; else why the ledger refused it (``exceeds_credits``: budget spent).
    refused: Mapped[str | None] = mapped_column(String(50))


#: Each is looked up (or locked) before it is written.
CONSTRAINTS = (
    taken("uq_campaigns_program_id", "reference", "a campaign with this reference exists"),
    race("uq_campaign_participants_campaign_id", "campaign participant"),
    race("uq_campaign_stores_campaign_id", "campaign store"),
    race("uq_campaign_members_campaign_id", "campaign member"),
    race("uq_campaign_bonuses_campaign_id", "campaign bonus"),
)
