"""Routing of shared leads, its settings: the program's routing
configuration (versions, refused at save when they would leave a partner
unreachable by accident) and what routing knows of each partner (its lead
profile). The decisions are made in ``routing_decisions``, the offers in
``offers``.
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from partners.leads.errors import RoutingConfigurationRefused
from partners.leads.models import LeadRoutingVersion, PartnerLeadProfile
from partners.leads.routing_decisions import CRITERIA
from partners.leads.schemas import (
    PartnerProfile,
    ProfileView,
    RoutingConfiguration,
    RoutingVersionView,
)
from partners.leads.versions import next_version, recent_versions
from partners.models import Partner, PartnerStatus


def configuration_of(version: LeadRoutingVersion) -> RoutingConfiguration:
    return msgspec.convert(version.config, RoutingConfiguration)


async def latest_routing_version(
    session: AsyncSession, program_id: uuid.UUID
) -> LeadRoutingVersion | None:
    return await session.scalar(
        select(LeadRoutingVersion)
        .where(LeadRoutingVersion.program_id == program_id)
        .order_by(LeadRoutingVersion.version.desc())
        .limit(1)
    )


async def configuration_problems(
    session: AsyncSession, program: Program, config: RoutingConfiguration
) -> list[str]:
    """What in the configuration would leave a partner unreachable by
    accident: a weight of 0, a grade of 0, a tier of the program's partners
    with no grade."""
    problems = [
        f"weights.{name} is 0: give every criterion a weight of 1 to 1000"
        for name in CRITERIA
        if getattr(config.weights, name) == 0
    ]
    problems += [
        f"tier_grades.{tier} is 0: a partner of that tier would never rank"
        for tier, grade in sorted(config.tier_grades.items())
        if grade == 0
    ]
    if config.untiered_grade == 0:
        problems.append("untiered_grade is 0: untiered partners would never rank")
    tiers = await session.scalars(
        select(Partner.tier)
        .where(
            Partner.program_id == program.id,
            Partner.tier.is_not(None),
            Partner.status != PartnerStatus.OFFBOARDED,
        )
        .distinct()
    )
    problems += [
        f"tier_grades has no grade for tier {tier}, which partners of this program hold"
        for tier in sorted(t for t in tiers if t is not None)
        if tier not in config.tier_grades
    ]
    return problems


async def save_routing_version(
    session: AsyncSession, program: Program, config: RoutingConfiguration, *, principal: Principal
) -> RoutingVersionView:
    """A new version of the routing configuration, audited; refused with
    every problem listed, writing nothing, if it would leave a partner
    unreachable by accident."""
    principal.require("leads:write")
    problems = await configuration_problems(session, program, config)
    if problems:
        raise RoutingConfigurationRefused(problems)
    version = LeadRoutingVersion(
        program_id=program.id,
        version=await next_version(session, LeadRoutingVersion, program),
        config=msgspec.to_builtins(config),
    )
    session.add(version)
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.routing_version",
        f"program:{program.slug}:lead-routing:{version.version}",
        config,
    )
    return routing_view(version)


async def routing_versions(
    session: AsyncSession, program: Program, *, principal: Principal
) -> list[RoutingVersionView]:
    principal.require("leads:read")
    found = await recent_versions(session, LeadRoutingVersion, program)
    return [routing_view(v) for v in found]


def routing_view(version: LeadRoutingVersion) -> RoutingVersionView:
    return RoutingVersionView(
        version=version.version,
        configuration=configuration_of(version),
        created_at=version.created_at,
    )


async def save_profile(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    profile: PartnerProfile,
    *,
    principal: Principal,
) -> ProfileView:
    """Set what routing knows of the partner (its answers so far are kept)."""
    principal.require("leads:write")
    found = await session.scalar(
        select(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == partner.id)
        .with_for_update()
    )
    if found is None:
        found = PartnerLeadProfile(
            program_id=program.id,
            partner_id=partner.id,
            open_leads=0,
            offers_accepted=0,
            offers_declined=0,
            offers_withdrawn=0,
            response_seconds=0,
        )
        session.add(found)
    found.territories = sorted(set(profile.territories))
    found.capabilities = sorted(set(profile.capabilities))
    found.capacity = profile.capacity
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.partner_profile",
        f"program:{program.slug}:partner:{partner.slug}:lead-profile",
        profile,
    )
    return profile_view(partner, found)


async def get_profile(
    session: AsyncSession, partner: Partner, *, principal: Principal
) -> ProfileView:
    principal.require("leads:read")
    found = await session.scalar(
        select(PartnerLeadProfile).where(PartnerLeadProfile.partner_id == partner.id)
    )
    if found is None:
        raise NotFound(f"partner {partner.slug!r} has no lead profile")
    return profile_view(partner, found)


def profile_view(partner: Partner, found: PartnerLeadProfile) -> ProfileView:
    return ProfileView(
        partner=partner.slug,
        profile=PartnerProfile(
            territories=list(found.territories),
            capabilities=list(found.capabilities),
            capacity=found.capacity,
        ),
        open_leads=found.open_leads,
        offers_accepted=found.offers_accepted,
        offers_declined=found.offers_declined,
        offers_withdrawn=found.offers_withdrawn,
    )
