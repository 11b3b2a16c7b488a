"""Registration of leads and deals: conflicts that name no one,
exclusivity and its extensions, versioned weighted scoring."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.audit import audit_events
from core.errors import Conflict
from partners.leads.errors import (
    ExtensionClosed,
    InvalidLead,
    InvalidScoringCriteria,
    RegistrationConflict,
)
from partners.leads.models import Lead
from partners.leads.registration import (
    decide_extension,
    domain_key,
    name_key,
    register_lead,
    request_extension,
)
from partners.leads.registration_batch import NeedsSession, prepare_lead, record_leads
from partners.leads.schemas import ExtensionRequest, LeadView, ScoringCriteria
from partners.leads.scoring import save_scoring_version
from partners.models import Partner
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.lead_helpers import OPERATOR, acting, register, registration

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_domains_and_names_normalise() -> None:
    assert domain_key("https://www.Acme.Example/") == "acme.example"
    assert domain_key("acme.example") == "acme.example"
    assert name_key("The ACME Corp. (Pty) Ltd") == "acme"
    assert name_key("Acme") == "acme"
    assert name_key("Smith & Sons") == name_key("Smith and Sons")


async def _conflict_answer(
    session: AsyncSession, program: object, partner: object, **company: str
) -> tuple[type[Exception], str, str, str]:
    with pytest.raises(RegistrationConflict) as refused:
        async with session.begin_nested():
            await register_lead(
                session,
                program,  # type: ignore[arg-type]
                partner,  # type: ignore[arg-type]
                registration(company=company),
                NOW,
                principal=acting(partner),  # type: ignore[arg-type]
            )
    error = refused.value
    return type(error), error.type_slug, str(error), error.kind.value


async def test_a_conflict_answers_the_same_whoever_holds_it(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    first, second, third = [await new_partner(program) for _ in range(3)]
    await register(session, program, first, NOW, company={"name": "Acme", "domain": "acme.example"})
    await register(
        session, program, second, NOW, company={"name": "Bolt", "domain": "bolt.example"}
    )
    # third asks about the company first holds, then about the one second holds;
    # first asks about its own: one answer, naming no one.
    answers = [
        await _conflict_answer(
            session, program, third, name="Other", domain="https://www.ACME.example/"
        ),
        await _conflict_answer(
            session, program, third, name="BOLT (Pty) Ltd", domain="new.example"
        ),
        await _conflict_answer(session, program, first, name="Acme", domain="acme.example"),
    ]
    assert len(set(answers)) == 1
    for holder in (first, second):
        assert holder.slug not in answers[0][2] and str(holder.id) not in answers[0][2]
    assert (
        await session.scalar(
            select(func.count()).select_from(Lead).where(Lead.program_id == program.id)
        )
        == 2
    )


async def test_a_registration_of_another_program_or_an_expired_one_is_no_conflict(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, other = await new_program(), await new_program()
    here, there = await new_partner(program), await new_partner(other)
    company = {"name": "Cobalt", "domain": "cobalt.example"}
    await register(session, other, there, NOW, company=company)
    await register(session, program, here, NOW, company=company)
    later = NOW + timedelta(days=91)  # the default exclusivity is 90 days
    again = await register(session, program, await new_partner(program), later, company=company)
    assert again.status == "registered"


async def test_the_same_reference_again_answers_the_first_registration(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    request = registration()
    first = await register_lead(session, program, partner, request, NOW, principal=acting(partner))
    await session.commit()
    again = await register_lead(session, program, partner, request, NOW, principal=acting(partner))
    assert again.replayed and again.id == first.id
    changed = msgspec.structs.replace(request, estimated_value_minor=5)
    with pytest.raises(Conflict):
        await register_lead(session, program, partner, changed, NOW, principal=acting(partner))


async def test_consent_as_the_basis_needs_its_record(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    before = await session.scalar(select(func.count()).select_from(audit_events))
    with pytest.raises(InvalidLead, match="consent_reference"):
        async with session.begin_nested():
            await register(session, program, partner, NOW, lawful_basis="consent")
    assert await session.scalar(select(func.count()).select_from(audit_events)) == before


async def test_a_lead_shows_its_score_and_how_it_was_reached(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    criteria = msgspec.convert(
        {
            "criteria": [
                {
                    "name": "company_size",
                    "weight": 2,
                    "bands": [
                        {"min_employees": 10, "value": 400},
                        {"min_employees": 500, "value": 900},
                    ],
                },
                {"name": "industry", "weight": 1, "values": {"logistics": 1000}},
                {"name": "territory", "weight": 1, "values": {"ZA-WC": 500}},
                {"name": "recent_activity", "weight": 4, "within_days": 10},
            ]
        },
        ScoringCriteria,
    )
    await save_scoring_version(session, program, criteria, principal=OPERATOR)
    await session.commit()
    lead = await register(
        session,
        program,
        partner,
        NOW,
        company={"name": "Dune", "domain": "dune.example", "size": 600, "industry": "logistics"},
        last_activity_at=(NOW - timedelta(days=5)).isoformat(),
    )
    by_name = {c.criterion: c for c in lead.score_details}
    assert by_name["company_size"].value == 900 and by_name["company_size"].contribution == 1800
    assert by_name["industry"].contribution == 1000
    assert by_name["territory"].contribution == 500
    assert by_name["recent_activity"].value == 500
    total = sum(c.contribution for c in lead.score_details)
    assert lead.score == total // 8 == (1800 + 1000 + 500 + 2000) // 8
    assert lead.scoring_version == 1
    # A new version scores new leads; the earlier lead keeps version 1's score.
    await save_scoring_version(
        session,
        program,
        msgspec.convert(
            {"criteria": [{"name": "industry", "weight": 1, "values": {"retail": 100}}]},
            ScoringCriteria,
        ),
        principal=OPERATOR,
    )
    await session.commit()
    later = await register(session, program, partner, NOW)
    assert later.scoring_version == 2 and later.score == 0
    kept = await session.get_one(Lead, uuid.UUID(lead.id))
    assert kept.scoring_version == 1 and kept.score == lead.score


async def test_criteria_missing_their_parameters_are_refused(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    with pytest.raises(InvalidScoringCriteria, match="bands"):
        await save_scoring_version(
            session,
            program,
            msgspec.convert({"criteria": [{"name": "company_size", "weight": 1}]}, ScoringCriteria),
            principal=OPERATOR,
        )


async def test_exclusivity_extended_on_approval_and_not_on_refusal(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    lead = await register(session, program, partner, NOW)
    asked = await request_extension(
        session,
        uuid.UUID(lead.id),
        ExtensionRequest(days=30, reason="long procurement"),
        NOW,
        principal=acting(partner),
    )
    await session.commit()
    with pytest.raises(ExtensionClosed, match="pending"):
        async with session.begin_nested():
            await request_extension(
                session,
                uuid.UUID(lead.id),
                ExtensionRequest(days=5, reason="again"),
                NOW,
                principal=acting(partner),
            )
    approved = await decide_extension(
        session, program, uuid.UUID(asked.id), True, "ok", NOW, principal=OPERATOR
    )
    await session.commit()
    assert approved.status == "approved"
    assert approved.exclusive_until == lead.exclusive_until + timedelta(days=30)
    # Another partner's registration of the company is still a conflict on day 100.
    latecomer = await new_partner(program)
    with pytest.raises(RegistrationConflict):
        async with session.begin_nested():
            await register(
                session,
                program,
                latecomer,
                NOW + timedelta(days=100),
                company={"name": lead.company.name, "domain": lead.company.domain},
            )
    second = await request_extension(
        session,
        uuid.UUID(lead.id),
        ExtensionRequest(days=30, reason="more"),
        NOW,
        principal=acting(partner),
    )
    await session.commit()
    refused = await decide_extension(
        session, program, uuid.UUID(second.id), False, "no", NOW, principal=OPERATOR
    )
    await session.commit()
    assert refused.status == "refused" and refused.exclusive_until == approved.exclusive_until
    with pytest.raises(ExtensionClosed):
        await decide_extension(
            session, program, uuid.UUID(second.id), True, None, NOW, principal=OPERATOR
        )


async def test_another_partner_never_sees_a_registration(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    from core.errors import NotFound
    from partners.leads.registration import get_own_lead

    program = await new_program()
    owner, other = await new_partner(program), await new_partner(program)
    lead = await register(session, program, owner, NOW)
    with pytest.raises(NotFound):
        await get_own_lead(session, uuid.UUID(lead.id), principal=acting(other))
    assert (await get_own_lead(session, uuid.UUID(lead.id), principal=acting(owner))).id == lead.id


async def test_two_registrations_of_one_company_at_once_make_one(
    session: AsyncSession,
    engine: AsyncEngine,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partners = [await new_partner(program) for _ in range(4)]
    company = {"name": "Gamma Freight", "domain": f"gamma-{uuid.uuid4().hex[:8]}.example"}

    async def attempt(partner: Partner) -> str:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            try:
                await register_lead(
                    own,
                    program,
                    partner,
                    registration(company=company),
                    NOW,
                    principal=acting(partner),
                )
            except RegistrationConflict:
                return "conflict"
            await own.commit()
            return "registered"

    outcomes = await asyncio.gather(*(attempt(p) for p in partners))
    assert sorted(outcomes) == ["conflict"] * 3 + ["registered"]
    assert (
        await session.scalar(
            select(func.count()).select_from(Lead).where(Lead.program_id == program.id)
        )
        == 1
    )


async def test_a_batch_registers_one_company_once_and_leaves_replays_to_the_session(
    session: AsyncSession,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    """``record_leads`` (the partner API's batched path): two registrations
    of one company in one batch are one registration and the conflict, the
    same reference twice is left to ``register_lead`` (a replay), and the
    rows written are the one-at-a-time path's, audited."""
    program = await new_program()
    first, second = await new_partner(program), await new_partner(program)
    await session.commit()
    company = {"name": "Delta Haulage", "domain": f"delta-{uuid.uuid4().hex[:8]}.example"}
    same = registration(company=company)
    batch = [
        await prepare_lead(pool, same, NOW, principal=acting(first)),
        await prepare_lead(pool, registration(company=company), NOW, principal=acting(second)),
        await prepare_lead(pool, same, NOW, principal=acting(first)),
        await prepare_lead(pool, registration(), NOW, principal=acting(second)),
    ]
    async with pool.acquire() as connection, connection.transaction():
        answers = await record_leads(connection, batch)
    made, conflict, replay, other = answers
    assert isinstance(made, LeadView)
    assert isinstance(conflict, RegistrationConflict)
    assert isinstance(replay, NeedsSession)
    assert isinstance(other, LeadView)
    stored = await session.get_one(Lead, uuid.UUID(made.id))
    assert (stored.domain_key, stored.partner_id, stored.status) == (
        domain_key(company["domain"]),
        first.id,
        "registered",
    )
    lines = await session.scalar(
        select(func.count())
        .select_from(audit_events)
        .where(audit_events.c.details["lead"].astext.in_([made.id, other.id]))
    )
    assert lines == 2
