"""Registration of leads and deals, with conflicts and exclusivity.

A registration holds its company for its exclusivity period: another
registration in the program whose normalised domain, or normalised name,
matches an active one is refused as a conflict, with one answer whoever
holds it (``RegistrationConflict``). Concurrent registrations of one
company are serialised by advisory locks on the normalised domain and name
(always in that order), taken before the look-up.

A registration is scored on the spot (``scoring``); a shared one is routed
and offered to its first candidate in the same transaction (``routing``,
``offers``). Exclusivity ends unless extended: the registrant asks, the
operator approves (the period grows) or refuses.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, NotFound
from core.models import Program
from core.modules import JobContext
from core.principal import Principal
from ledger import new_id
from ledger.bounds import check_moment
from partners.coalition_errors import PartnerNotActive
from partners.data_sharing.identifiers import normalise_domain
from partners.leads.errors import (
    ExtensionClosed,
    InvalidLead,
    NoRoutingConfiguration,
    RegistrationConflict,
)
from partners.leads.models import (
    ACTIVE_STATUSES,
    ExtensionStatus,
    Lead,
    LeadExtensionRequest,
    LeadRoutingVersion,
    LeadScoringVersion,
    LeadStatus,
    PartnerLeadProfile,
)
from partners.leads.offers import offer_next, tell_registrant
from partners.leads.routing_decisions import record_decision
from partners.leads.schemas import (
    Company,
    Contribution,
    ExtensionList,
    ExtensionRequest,
    ExtensionView,
    LeadContact,
    LeadList,
    LeadRegistration,
    LeadView,
    RoutingConfiguration,
)
from partners.leads.scoring import criteria_of, score
from partners.leads.versions import latest_column
from partners.models import Partner, PartnerStatus

#: Exclusivity of a registration before the program configures routing.
DEFAULT_EXCLUSIVITY_DAYS = 90
#: Advisory lock keys (first key): a normalised domain, a normalised name.
_DOMAIN_LOCK = 1279608132
_NAME_LOCK = 1279608133


def company_locks(program_id: uuid.UUID, domain: str, name: str) -> list[tuple[int, str]]:
    """The advisory locks (class, key; the key hashed with ``hashtext``)
    that serialise registrations of one company in a program: its domain's,
    then its name's."""
    return [(_DOMAIN_LOCK, f"{program_id}:{domain}"), (_NAME_LOCK, f"{program_id}:{name}")]


#: Words of a company's name that say nothing of which company it is.
_LEGAL_FORMS = frozenset(
    {
        "inc",
        "ltd",
        "llc",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "bv",
        "nv",
        "pty",
        "co",
        "corp",
        "corporation",
        "company",
        "limited",
        "the",
        "and",
        "srl",
        "spa",
        "oy",
        "ab",
        "as",
    }
)


def domain_key(domain: str) -> str:
    """``https://www.Acme.example/`` -> ``acme.example``: the company domain
    as overlap matching normalises it (``identifiers.normalise_domain``), or
    lower-cased where that finds no domain in it."""
    return normalise_domain(domain) or domain.strip().lower()


def name_key(name: str) -> str:
    """``The ACME Corp. (Pty) Ltd`` -> ``acme``: lower case, letters and
    digits only, legal forms left out."""
    words = re.findall(r"[0-9a-z]+", name.lower().replace("&", " and "))
    kept = [w for w in words if w not in _LEGAL_FORMS]
    return " ".join(kept or words)


def check_registration(request: LeadRegistration) -> None:
    """Refuse (422) what the schema cannot: moments out of range, consent without its record."""
    if request.last_activity_at is not None:
        check_moment("last_activity_at", request.last_activity_at)
    if request.expected_close is not None and not 1900 <= request.expected_close.year <= 9998:
        raise InvalidLead("expected_close: a year from 1900 to 9998")
    if request.lawful_basis == "consent" and request.consent_reference is None:
        raise InvalidLead("consent_reference: consent as the lawful basis needs its record")


def _same(lead: Lead, request: LeadRegistration) -> bool:
    return (
        lead.shared == request.shared
        and lead.domain_key == domain_key(request.company.domain)
        and lead.company_name == request.company.name
        and lead.estimated_value_minor == request.estimated_value_minor
        and lead.currency == request.currency
        and lead.territory == request.territory
        and list(lead.products) == list(request.products)
    )


def new_lead(
    program_id: uuid.UUID,
    partner_id: uuid.UUID,
    request: LeadRegistration,
    now: datetime,
    *,
    scoring_version: int | None,
    scoring: Any,
    config: RoutingConfiguration | None,
    keys: tuple[str, str],
) -> Lead:
    """The registration's row, scored by the program's latest scoring
    version (``scoring``: its criteria, or None) and held for the routing
    configuration's exclusivity period. Writes nothing."""
    domain, name = keys
    points, details = 0, list[Contribution]()
    if scoring is not None:
        points, details = score(
            criteria_of(scoring),
            size=request.company.size,
            industry=request.company.industry,
            territory=request.territory,
            last_activity_at=request.last_activity_at,
            now=now,
        )
    days = config.exclusivity_days if config is not None else DEFAULT_EXCLUSIVITY_DAYS
    return Lead(
        id=new_id(),
        program_id=program_id,
        partner_id=partner_id,
        reference=request.reference,
        shared=request.shared,
        company_name=request.company.name,
        company_domain=request.company.domain,
        domain_key=domain,
        name_key=name,
        company_size=request.company.size,
        industry=request.company.industry,
        contact=msgspec.to_builtins(request.contact),
        estimated_value_minor=request.estimated_value_minor,
        currency=request.currency,
        expected_close=request.expected_close,
        notes=request.notes,
        territory=request.territory,
        products=list(request.products),
        lawful_basis=request.lawful_basis,
        consent_reference=request.consent_reference,
        last_activity_at=request.last_activity_at,
        status=LeadStatus.REGISTERED,
        exclusive_until=now + timedelta(days=days),
        score=points,
        scoring_version=scoring_version,
        score_details=msgspec.to_builtins(details),
        status_changed_at=now,
    )


async def register_lead(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    request: LeadRegistration,
    now: datetime,
    *,
    principal: Principal,
) -> LeadView:
    """Register the lead or deal for the principal's partner, scored; a
    shared one is routed and offered in the same transaction. The same
    ``reference`` again answers the first registration (``replayed``).
    Refused, writing nothing: a conflict with an active registration, a
    registrant not active, a shared lead with no routing configuration."""
    principal.require("leads:share")
    check_registration(request)
    if principal.partner_id != partner.id:
        raise NotFound(f"no partner {partner.slug!r}")
    domain, name = domain_key(request.company.domain), name_key(request.company.name)
    (d, dk), (n, nk) = company_locks(program.id, domain, name)
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:d, hashtext(:dk)),"
            " pg_advisory_xact_lock(:n, hashtext(:nk))"
        ),
        {"d": d, "dk": dk, "n": n, "nk": nk},
    )
    # One statement for what the registration depends on: an earlier one of
    # the reference, an active holder of the company, the latest versions.
    facts = (
        await session.execute(
            select(
                select(Lead.id)
                .where(Lead.partner_id == partner.id, Lead.reference == request.reference)
                .scalar_subquery(),
                exists().where(
                    Lead.program_id == program.id,
                    or_(Lead.domain_key == domain, Lead.name_key == name),
                    Lead.status.in_(ACTIVE_STATUSES),
                    Lead.exclusive_until > now,
                ),
                latest_column(LeadRoutingVersion, LeadRoutingVersion.version, program),
                latest_column(LeadRoutingVersion, LeadRoutingVersion.config, program),
                latest_column(LeadScoringVersion, LeadScoringVersion.version, program),
                latest_column(LeadScoringVersion, LeadScoringVersion.criteria, program),
            )
        )
    ).one()
    earlier_id, held, routing_version, routing, scoring_version, scoring = facts
    if earlier_id is not None:
        earlier = await session.get_one(Lead, earlier_id)
        if not _same(earlier, request):
            raise Conflict(f"registration {request.reference!r} was made with other fields")
        return view_of(earlier, replayed=True)
    if partner.status != PartnerStatus.ACTIVE:
        raise PartnerNotActive(f"partner {partner.slug!r} is {partner.status}")
    if held:
        raise RegistrationConflict()
    if request.shared and routing is None:
        raise NoRoutingConfiguration(
            "the program routes no shared leads yet: it has no routing configuration"
        )
    config = msgspec.convert(routing, RoutingConfiguration) if routing is not None else None
    lead = new_lead(
        program.id,
        partner.id,
        request,
        now,
        scoring_version=scoring_version,
        scoring=scoring,
        config=config,
        keys=(domain, name),
    )
    session.add(lead)
    await audit.record(
        session,
        principal,
        "leads.registered",
        f"program:{program.slug}:partner:{partner.slug}:lead:{request.reference}",
        {"lead": str(lead.id), "shared": request.shared, "score": lead.score},
    )
    if request.shared and routing_version is not None and config is not None:
        await session.flush()
        await record_decision(session, lead, routing_version, config, now)
        await offer_next(session, lead, config.offer_sla_seconds, now)
    else:
        await session.flush()
    return view_of(lead)


async def own_lead(
    session: AsyncSession, lead_id: uuid.UUID, *, principal: Principal, lock: bool = False
) -> Lead:
    """A lead the principal's partner registered (another's is not found)."""
    query = select(Lead).where(
        Lead.id == lead_id,
        Lead.partner_id == principal.partner_id,
        Lead.program_id == principal.program_id,
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    lead = await session.scalar(query)
    if lead is None:
        raise NotFound(f"no lead {lead_id}")
    return lead


async def get_own_lead(
    session: AsyncSession, lead_id: uuid.UUID, *, principal: Principal
) -> LeadView:
    principal.require("leads:share")
    return view_of(await own_lead(session, lead_id, principal=principal))


async def list_own_leads(session: AsyncSession, *, principal: Principal, limit: int) -> LeadList:
    principal.require("leads:share")
    found = await session.scalars(
        select(Lead)
        .where(Lead.partner_id == principal.partner_id, Lead.program_id == principal.program_id)
        .order_by(Lead.id.desc())
        .limit(limit)
    )
    return LeadList(items=[view_of(lead) for lead in found])


async def program_lead(
    session: AsyncSession, program: Program, lead_id: uuid.UUID, *, principal: Principal
) -> LeadView:
    """The operator's view of a lead of its program."""
    principal.require("leads:read")
    lead = await session.scalar(
        select(Lead).where(Lead.id == lead_id, Lead.program_id == program.id)
    )
    if lead is None:
        raise NotFound(f"no lead {lead_id}")
    return view_of(lead)


async def request_extension(
    session: AsyncSession,
    lead_id: uuid.UUID,
    request: ExtensionRequest,
    now: datetime,
    *,
    principal: Principal,
) -> ExtensionView:
    """The registrant asks to extend its exclusivity; the operator decides.
    Refused: a lead no longer active, one with a request pending."""
    principal.require("leads:share")
    lead = await own_lead(session, lead_id, principal=principal, lock=True)
    if lead.status not in ACTIVE_STATUSES or lead.exclusive_until <= now:
        raise ExtensionClosed(f"lead {lead_id} is {lead.status}: its exclusivity has ended")
    pending = await session.scalar(
        select(
            exists().where(
                LeadExtensionRequest.lead_id == lead.id,
                LeadExtensionRequest.status == ExtensionStatus.PENDING,
            )
        )
    )
    if pending:
        raise ExtensionClosed(f"lead {lead_id} has an extension request pending already")
    found = LeadExtensionRequest(
        program_id=lead.program_id,
        lead_id=lead.id,
        days=request.days,
        reason=request.reason,
        status=ExtensionStatus.PENDING,
    )
    session.add(found)
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.extension_requested",
        f"lead:{lead.id}:extension:{found.id}",
        {"days": request.days, "reason": request.reason},
    )
    return extension_view(found, lead)


async def decide_extension(
    session: AsyncSession,
    program: Program,
    extension_id: uuid.UUID,
    approve: bool,
    note: str | None,
    now: datetime,
    *,
    principal: Principal,
) -> ExtensionView:
    """Approve (the exclusivity grows by the days asked, from its end) or
    refuse a pending request. The same decision again answers it."""
    principal.require("leads:write")
    found = await session.scalar(
        select(LeadExtensionRequest)
        .where(
            LeadExtensionRequest.id == extension_id,
            LeadExtensionRequest.program_id == program.id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise NotFound(f"no extension request {extension_id}")
    lead = await session.scalar(
        select(Lead)
        .where(Lead.id == found.lead_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert lead is not None
    wanted = ExtensionStatus.APPROVED if approve else ExtensionStatus.REFUSED
    if found.status == wanted:
        return extension_view(found, lead)
    if found.status != ExtensionStatus.PENDING:
        raise ExtensionClosed(f"extension request {extension_id} was {found.status}")
    if approve and (lead.status not in ACTIVE_STATUSES or lead.exclusive_until <= now):
        raise ExtensionClosed(f"lead {lead.id} is {lead.status}: its exclusivity has ended")
    found.status = wanted
    found.decided_at = now
    found.decision_note = note
    if approve:
        lead.exclusive_until = lead.exclusive_until + timedelta(days=found.days)
    await session.flush()
    await audit.record(
        session,
        principal,
        f"leads.extension_{wanted}",
        f"lead:{lead.id}:extension:{found.id}",
        {"note": note, "exclusive_until": lead.exclusive_until.isoformat()},
    )
    return extension_view(found, lead)


async def list_extensions(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    status: str | None,
    limit: int,
) -> ExtensionList:
    principal.require("leads:read")
    query = (
        select(LeadExtensionRequest, Lead)
        .join(Lead, Lead.id == LeadExtensionRequest.lead_id)
        .where(LeadExtensionRequest.program_id == program.id)
        .order_by(LeadExtensionRequest.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(LeadExtensionRequest.status == status)
    rows = (await session.execute(query)).all()
    return ExtensionList(items=[extension_view(e, lead) for e, lead in rows])


async def expire_exclusivity(context: JobContext) -> int:
    """Leads whose exclusivity ended unextended, never worked to a close:
    ``expired`` (their open offers withdrawn, the registrant told)."""
    async with context.sessions() as session, session.begin():
        expired = list(
            await session.scalars(
                update(Lead)
                .where(
                    Lead.status.in_(
                        [
                            LeadStatus.REGISTERED,
                            LeadStatus.UNROUTED,
                            LeadStatus.ACCEPTED,
                            LeadStatus.CONTACTED,
                            LeadStatus.QUALIFIED,
                        ]
                    ),
                    Lead.exclusive_until <= context.now,
                )
                .values(status=LeadStatus.EXPIRED, status_changed_at=context.now)
                .returning(Lead)
                .execution_options(synchronize_session=False)
            )
        )
        for lead in expired:
            if lead.assignee_id is not None:
                # The lead it was working is off its hands: room for another.
                await session.execute(
                    update(PartnerLeadProfile)
                    .where(PartnerLeadProfile.partner_id == lead.assignee_id)
                    .values(open_leads=PartnerLeadProfile.open_leads - 1)
                    .execution_options(synchronize_session=False)
                )
            await tell_registrant(session, lead, context.now)
        return len(expired)


def view_of(lead: Lead, *, replayed: bool = False) -> LeadView:
    return LeadView(
        id=str(lead.id),
        reference=lead.reference,
        shared=lead.shared,
        company=Company(
            name=lead.company_name,
            domain=lead.company_domain,
            size=lead.company_size,
            industry=lead.industry,
        ),
        contact=msgspec.convert(lead.contact, LeadContact),
        estimated_value_minor=lead.estimated_value_minor,
        currency=lead.currency,
        expected_close=lead.expected_close,
        notes=lead.notes,
        territory=lead.territory,
        products=list(lead.products),
        lawful_basis=lead.lawful_basis,
        consent_reference=lead.consent_reference,
        status=lead.status,
        exclusive_until=lead.exclusive_until.astimezone(UTC),
        score=lead.score,
        scoring_version=lead.scoring_version,
        score_details=msgspec.convert(lead.score_details, list[Contribution]),
        won_amount_minor=lead.won_amount_minor,
        lost_reason=lead.lost_reason,
        reward=lead.reward,
        replayed=replayed,
    )


def extension_view(found: LeadExtensionRequest, lead: Lead) -> ExtensionView:
    return ExtensionView(
        id=str(found.id),
        lead_id=str(lead.id),
        days=found.days,
        reason=found.reason,
        status=found.status,
        decided_at=found.decided_at,
        decision_note=found.decision_note,
        exclusive_until=lead.exclusive_until.astimezone(UTC),
    )
