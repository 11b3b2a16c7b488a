"""Tables of lead sharing and deal registration (migration 0032).

A lead is registered by one partner (``partner_id``): kept for itself (a
deal registration, ``shared`` false) or shared to be routed to another
partner (``assignee_id`` once one accepts). Scoring criteria and routing
configurations are versions, never changed once saved: a lead names the
version that scored it, a decision the one that ranked it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class LeadStatus(enum.StrEnum):
    #: Registered, held by its registrant (a deal) or waiting to be routed.
    REGISTERED = "registered"
    #: Shared and offered to a partner, waiting for its answer.
    OFFERED = "offered"
    #: Accepted by a partner (shared) and being worked.
    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    WON = "won"
    LOST = "lost"
    #: Shared, but no eligible partner is left to offer it to.
    UNROUTED = "unrouted"
    #: Its exclusivity ended before it was won or lost.
    EXPIRED = "expired"


#: Statuses of a lead that still holds its company (a conflict for others).
ACTIVE_STATUSES = frozenset(
    {
        LeadStatus.REGISTERED,
        LeadStatus.OFFERED,
        LeadStatus.ACCEPTED,
        LeadStatus.CONTACTED,
        LeadStatus.QUALIFIED,
    }
)
CLOSED_STATUSES = frozenset({LeadStatus.WON, LeadStatus.LOST})


class OfferStatus(enum.StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    #: Not answered within the SLA: offered to the next candidate.
    WITHDRAWN = "withdrawn"


class ExtensionStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class LeadScoringVersion(UUIDv7AuditBase):
    """A version of a program's lead scoring criteria and weights."""

    __tablename__ = "lead_scoring_versions"
    __table_args__ = (UniqueConstraint("program_id", "version"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    #: ``{"criteria": [...]}``, as ``schemas.ScoringCriteria``.
    criteria: Mapped[dict[str, Any]] = mapped_column(JSONB)


class LeadRoutingVersion(UUIDv7AuditBase):
    """A version of a program's routing configuration (weights of each
    criterion, grades of partner tiers, the acceptance SLA)."""

    __tablename__ = "lead_routing_versions"
    __table_args__ = (UniqueConstraint("program_id", "version"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)


class LeadReferralTerms(UUIDv7AuditBase):
    """What a partner earns when a lead it shared is won (one per program)."""

    __tablename__ = "lead_referral_terms"
    __table_args__ = (UniqueConstraint("program_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: ``points`` or ``money``.
    reward: Mapped[str] = mapped_column(String(8))
    #: ``fixed`` or ``share`` (of the won value; money only).
    basis: Mapped[str] = mapped_column(String(8))
    #: Points, or minor units of ``currency``, of a fixed reward.
    amount: Mapped[int] = mapped_column(BigInteger)
    #: Basis points of the won value of a share.
    share_bps: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(3))


class PartnerLeadProfile(UUIDv7AuditBase):
    """What routing knows of a partner: where and what it sells, how many
    leads it takes at once, and how it answered offers so far."""

    __tablename__ = "partner_lead_profiles"
    __table_args__ = (
        UniqueConstraint("partner_id"),
        Index("ix_partner_lead_profiles_program_id", "program_id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    territories: Mapped[list[str]] = mapped_column(JSONB)
    capabilities: Mapped[list[str]] = mapped_column(JSONB)
    capacity: Mapped[int] = mapped_column(Integer)
    #: Leads offered to it and not declined or withdrawn, not yet won or lost.
    open_leads: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    offers_accepted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    offers_declined: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    offers_withdrawn: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: Seconds from offer to answer, summed over the answered offers.
    response_seconds: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Lead(UUIDv7AuditBase):
    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("partner_id", "reference"),
        Index("ix_leads_program_id_domain_key", "program_id", "domain_key"),
        Index("ix_leads_program_id_name_key", "program_id", "name_key"),
        Index("ix_leads_assignee_id", "assignee_id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The registrant: the partner that registered (or shared) it.
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The registrant's id of the registration: its idempotency key.
    reference: Mapped[str] = mapped_column(String(200))
    shared: Mapped[bool] = mapped_column(Boolean)
    company_name: Mapped[str] = mapped_column(String(200))
    company_domain: Mapped[str] = mapped_column(String(253))
    #: Normalised domain and name: what conflicts are found by.
    domain_key: Mapped[str] = mapped_column(String(253))
    name_key: Mapped[str] = mapped_column(String(200))
    company_size: Mapped[int | None] = mapped_column(Integer)
    industry: Mapped[str | None] = mapped_column(String(100))
    contact: Mapped[dict[str, Any]] = mapped_column(JSONB)
    estimated_value_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    expected_close: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(String(4000))
    territory: Mapped[str] = mapped_column(String(64))
    products: Mapped[list[str]] = mapped_column(JSONB)
    lawful_basis: Mapped[str] = mapped_column(String(32))
    consent_reference: Mapped[str | None] = mapped_column(String(200))
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    exclusive_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    score: Mapped[int] = mapped_column(Integer)
    scoring_version: Mapped[int | None] = mapped_column(Integer)
    #: ``[{"criterion", "weight", "value", "contribution"}]``.
    score_details: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    #: The partner that accepted it (shared leads).
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    won_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The referral reward posted for its win: kind, amount, transfer.
    reward: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class LeadRoutingDecision(UUIDv7AuditBase):
    """Why a shared lead went where it went (migration 0044: arrays, not a
    document per partner): the candidates in rank order with their scores
    by criterion, and the partners left out, grouped by reason. Totals and
    ranks follow from the scores and weights (``routing_decisions.rank``)."""

    __tablename__ = "lead_routing_decisions"
    __table_args__ = (UniqueConstraint("lead_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    lead_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("leads.id"))
    routing_version: Mapped[int] = mapped_column(Integer)
    #: Criterion -> weight, as used for the totals.
    weights: Mapped[dict[str, Any]] = mapped_column(JSONB)
    tie_rule: Mapped[str] = mapped_column(String(300))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The criteria, in the order of each row of ``candidate_scores``.
    criteria: Mapped[list[str]] = mapped_column(ARRAY(Text))
    #: The candidates, best first: ids, when each joined the program (the
    #: tie rule's third key), and a row of scores (0-1000) each.
    candidate_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))
    candidate_registered_at: Mapped[list[datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))
    candidate_scores: Mapped[list[list[int]]] = mapped_column(ARRAY(Integer, dimensions=2))
    #: Why partners were left out, in order, with how many for each; their
    #: ids, grouped in the same order (then by id).
    excluded_reasons: Mapped[list[str]] = mapped_column(ARRAY(Text))
    excluded_counts: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    excluded_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))


class LeadOffer(UUIDv7AuditBase):
    __tablename__ = "lead_offers"
    __table_args__ = (
        UniqueConstraint("lead_id", "partner_id"),
        # One open offer per lead: the backstop of "exactly once".
        Index(
            "uq_lead_offers_open",
            "lead_id",
            unique=True,
            postgresql_where=text("status = 'offered'"),
        ),
        Index("ix_lead_offers_partner_id", "partner_id", "status"),
        Index("ix_lead_offers_due", "due_at", postgresql_where=text("status = 'offered'")),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    lead_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("leads.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    offered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decline_reason: Mapped[str | None] = mapped_column(String(500))


class LeadExtensionRequest(UUIDv7AuditBase):
    """A registrant's request to extend its exclusivity, for the operator."""

    __tablename__ = "lead_extension_requests"
    __table_args__ = (Index("ix_lead_extension_requests_lead_id", "lead_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    lead_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("leads.id"))
    days: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(String(500))


CONSTRAINTS = (
    race("uq_leads_partner_id", "lead reference"),
    race("uq_lead_scoring_versions_program_id", "scoring version"),
    race("uq_lead_routing_versions_program_id", "routing version"),
    race("uq_lead_referral_terms_program_id", "referral terms"),
    race("uq_partner_lead_profiles_partner_id", "partner lead profile"),
    race("uq_lead_routing_decisions_lead_id", "routing decision"),
    race("uq_lead_offers_lead_id", "offer"),
    race("uq_lead_offers_open", "open offer"),
)
