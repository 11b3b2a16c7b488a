"""Helpers of the leads tests: partner principals, routing settings and
registrations, written through the use cases."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import Principal, system
from partners.leads.registration import register_lead
from partners.leads.routing import save_profile, save_routing_version
from partners.leads.schemas import (
    LeadRegistration,
    LeadView,
    PartnerProfile,
    RoutingConfiguration,
)
from partners.models import Partner
from tests.partners.coalition_helpers import partner_principal

OPERATOR = system("test")
_references = itertools.count(1)
_companies = itertools.count(1)


def acting(partner: Partner) -> Principal:
    return partner_principal(partner, scopes=("leads:share", "leads:receive"))


def routing(**fields: Any) -> RoutingConfiguration:
    values: dict[str, Any] = {
        "weights": {
            "territory": 5,
            "capability": 1,
            "tier": 3,
            "capacity": 2,
            "acceptance_rate": 2,
            "response_time": 1,
        },
        "tier_grades": {"gold": 1000, "silver": 600},
        "untiered_grade": 300,
        "offer_sla_seconds": 3600,
        "exclusivity_days": 90,
        **fields,
    }
    return msgspec.convert(values, RoutingConfiguration)


async def configure_routing(session: AsyncSession, program: Program, **fields: Any) -> None:
    await save_routing_version(session, program, routing(**fields), principal=OPERATOR)
    await session.commit()


async def profile(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    territories: list[str] | None = None,
    capabilities: list[str] | None = None,
    capacity: int = 10,
) -> None:
    await save_profile(
        session,
        program,
        partner,
        PartnerProfile(
            territories=territories if territories is not None else ["ZA-WC"],
            capabilities=capabilities if capabilities is not None else ["fleet-cards"],
            capacity=capacity,
        ),
        principal=OPERATOR,
    )
    await session.commit()


def registration(**fields: Any) -> LeadRegistration:
    number = next(_companies)
    values: dict[str, Any] = {
        "reference": f"lead-{next(_references)}",
        "company": {"name": f"Acme Fleet {number}", "domain": f"acme-{number}.example"},
        "contact": {"name": "Thandi M", "email": "thandi@acme.example"},
        "estimated_value_minor": 1_000_000,
        "currency": "ZAR",
        "territory": "ZA-WC",
        "products": ["fleet-cards"],
        "lawful_basis": "legitimate_interest",
        **fields,
    }
    return msgspec.convert(values, LeadRegistration)


async def register(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    now: datetime,
    **fields: Any,
) -> LeadView:
    view = await register_lead(
        session, program, partner, registration(**fields), now, principal=acting(partner)
    )
    await session.commit()
    return view
