"""A routing decision among 1,000 partners (issue 11, "Speed": p99 under
20 ms).

    .venv/bin/python bench/lead_routing.py [--partners 1000] [--leads 300] [--warmup 20]

In a database of its own on ``DATABASE_URL``'s server (dropped at the end):
a program with ``--partners`` active firms, each with a lead profile
(territories, capabilities, capacity, answers so far) and a tier, a tenth
of them suspended or at capacity; a routing configuration. Then
``--leads`` shared leads registered one after the other, each decided and
offered in its own transaction. Printed: the decision alone (score every
profile, rank and store the decision in one statement, offer the first
candidate: what ``partners.leads.registration`` does for a shared lead),
with its two steps apart, and the whole registration with its commit,
p50/p99/max in ms; the size of a stored decision; the load average.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from common import argument_parser, bench_database
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.database import migrate, sqlalchemy_url
from core.principal import Principal, PrincipalKind, system
from ledger import Ledger
from ledger.connection import create_pool
from partners.leads.models import Lead, PartnerLeadProfile
from partners.leads.offers import offer_next
from partners.leads.registration import register_lead
from partners.leads.routing import (
    configuration_of,
    latest_routing_version,
    save_routing_version,
)
from partners.leads.routing_decisions import record_decision
from partners.leads.schemas import LeadRegistration, RoutingConfiguration
from partners.models import Partner, PartnerStatus
from rewards.programs import ProgramSpec, open_program

OPERATOR = system("bench")
TERRITORIES = [f"ZA-{n}" for n in range(9)]
PRODUCTS = [f"product-{n}" for n in range(6)]


def routing() -> RoutingConfiguration:
    return msgspec.convert(
        {
            "weights": {
                "territory": 5,
                "capability": 1,
                "tier": 3,
                "capacity": 2,
                "acceptance_rate": 2,
                "response_time": 1,
            },
            "tier_grades": {"gold": 1000, "silver": 700, "bronze": 400},
            "untiered_grade": 300,
            "offer_sla_seconds": 3600,
            "exclusivity_days": 90,
        },
        RoutingConfiguration,
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def figures(name: str, values: list[float]) -> str:
    return (
        f"{name:<36} p50 {statistics.median(values):6.2f} ms   p99"
        f" {percentile(values, 0.99):6.2f} ms   max {max(values):6.2f} ms   (n={len(values)})"
    )


async def run(url: str, partner_count: int, leads: int, warmup: int) -> None:
    pool = await create_pool(url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(url))
    rng = random.Random(11)
    now = datetime.now(UTC)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        program, _ = await open_program(
            session,
            ledger,
            ProgramSpec(slug="leads", name="Leads", currency="ZAR", point_value_minor=Decimal(1)),
            principal=OPERATOR,
        )
        await session.commit()
        partners = []
        for n in range(partner_count):
            status = PartnerStatus.SUSPENDED if n % 20 == 7 else PartnerStatus.ACTIVE
            partner = Partner(
                id=uuid.uuid4(),
                program_id=program.id,
                slug=f"partner-{n}",
                name=f"Partner {n}",
                legal_name=f"Partner {n} Ltd",
                country="ZA",
                currency="ZAR",
                contacts=[],
                tier=rng.choice(["gold", "silver", "bronze", None]),
                status=status,
                status_changed_at=now,
                created_at=now - timedelta(seconds=n),
            )
            partners.append(partner)
        session.add_all(partners)
        await session.flush()
        for n, partner in enumerate(partners):
            capacity = rng.randint(50, 500)
            session.add(
                PartnerLeadProfile(
                    program_id=program.id,
                    partner_id=partner.id,
                    territories=rng.sample(TERRITORIES, 3),
                    capabilities=rng.sample(PRODUCTS, 4),
                    capacity=capacity,
                    open_leads=capacity if n % 20 == 13 else rng.randint(0, 20),
                    offers_accepted=rng.randint(0, 30),
                    offers_declined=rng.randint(0, 10),
                    offers_withdrawn=rng.randint(0, 5),
                    response_seconds=rng.randint(0, 40 * 3600),
                )
            )
        await session.commit()
        await save_routing_version(session, program, routing(), principal=OPERATOR)
        await session.commit()
        await session.execute(text("ANALYZE"))
        await session.commit()
        registrant = partners[0]
        principal = Principal(
            kind=PrincipalKind.PARTNER,
            actor="partner:bench",
            scopes=frozenset({"leads:share"}),
            program_id=program.id,
            partner_id=registrant.id,
            partner_ids=frozenset({registrant.id}),
        )
        version = await latest_routing_version(session, program.id)
        assert version is not None
        config = configuration_of(version)
        # A request's session holds none of the set-up's objects.
        session.expunge_all()
        decisions: list[float] = []
        registrations: list[float] = []
        candidates = []
        stores: list[float] = []
        offers: list[float] = []
        load_before = os.getloadavg()
        for n in range(warmup + leads):
            request = msgspec.convert(
                {
                    "reference": f"lead-{n}",
                    "company": {"name": f"Company {n}", "domain": f"company-{n}.example"},
                    "contact": {"name": "Contact"},
                    "estimated_value_minor": 100_000,
                    "currency": "ZAR",
                    "territory": rng.choice(TERRITORIES),
                    "products": rng.sample(PRODUCTS, 2),
                    "lawful_basis": "contract",
                    "shared": True,
                },
                LeadRegistration,
            )
            # The decision alone, as registration makes it, on a kept lead.
            lead = Lead(
                id=uuid.uuid4(),
                program_id=program.id,
                partner_id=registrant.id,
                reference=f"decision-{n}",
                shared=True,
                company_name=request.company.name,
                company_domain=request.company.domain,
                domain_key=f"decision-{n}",
                name_key=f"decision-{n}",
                contact={"name": "Contact"},
                estimated_value_minor=1,
                currency="ZAR",
                territory=request.territory,
                products=list(request.products),
                lawful_basis="contract",
                status="registered",
                exclusive_until=now + timedelta(days=90),
                score=0,
                score_details=[],
                status_changed_at=now,
            )
            started = time.perf_counter()
            session.add(lead)
            await session.flush()
            deciding = time.perf_counter()
            ranked = await record_decision(session, lead, version.version, config, now)
            offering = time.perf_counter()
            await offer_next(session, lead, config.offer_sla_seconds, now)
            offered = time.perf_counter()
            await session.commit()
            elapsed = (time.perf_counter() - started) * 1000
            if n >= warmup:
                decisions.append(elapsed)
                stores.append((offering - deciding) * 1000)
                offers.append((offered - offering) * 1000)
                candidates.append(ranked)
            started = time.perf_counter()
            await register_lead(session, program, registrant, request, now, principal=principal)
            await session.commit()
            elapsed = (time.perf_counter() - started) * 1000
            if n >= warmup:
                registrations.append(elapsed)
    print(
        f"{partner_count} partners ({statistics.median(candidates):.0f} candidates per lead,"
        " median, the rest left out: suspended, at capacity, without the products)"
    )
    print(figures("routing decision (+ offer, commit)", decisions))
    print(figures("  of which: score, rank, store", stores))
    print(figures("  of which: the offer", offers))
    print(figures("shared lead registration (+ commit)", registrations))
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY pg_column_size(d.*))"
                " FROM lead_routing_decisions d"
            )
        )
    print(f"stored decision: {stored / 1000:.1f} kB a lead (median, as stored: compressed)")
    print(
        "load average (1, 5, 15 min): at the start {:.2f} {:.2f} {:.2f},"
        " at the end {:.2f} {:.2f} {:.2f}".format(*load_before, *os.getloadavg())
    )
    await engine.dispose()
    await ledger.close()
    await pool.close()


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--partners", type=int, default=1000)
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    with bench_database() as url:
        migrate(url)
        asyncio.run(run(url, args.partners, args.leads, args.warmup))


if __name__ == "__main__":
    main()
