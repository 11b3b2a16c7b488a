"""Points a partner issues: one transfer from the contract holder's bounded
account, idempotent by the partner's transaction id, refused by the ledger
itself beyond the funding, under the contract of the nearest firm that
has one."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, MemberNotActive, NotFound
from core.models import Member
from core.principal import system
from ledger import Ledger
from partners import events
from partners.coalition_errors import (
    ContractRoleMissing,
    FundingExhausted,
    InvalidIssuance,
    NoContractInForce,
    PartnerNotActive,
)
from partners.coalition_schemas import IssuanceRequest, IssuanceView
from partners.issuance import get_issuance, issue_points, list_issuances, prepare_issuance
from partners.issuance_recording import record_issuances
from partners.member_links import LinkRequest, link_member
from partners.models import PartnerStatus
from rewards.errors import ProgramSunsetting
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from rewards.sunset import SunsetRequest, schedule_sunset
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import (
    OPERATOR,
    contract,
    enrolled,
    fund,
    issuable,
    partner_principal,
)
from tests.partners.conftest import NewPartner


def issuance(transaction_id: str = "T-1", **fields: Any) -> IssuanceRequest:
    values: dict[str, Any] = {"member": "ann", "points": 100, **fields}
    if "identifier" in fields:
        values.pop("member")
    if "purchase_amount_minor" in fields:
        values.pop("points")
    return IssuanceRequest(transaction_id=transaction_id, **values)


async def written(pool: asyncpg.Pool, program_id: uuid.UUID) -> tuple[int, int, int]:
    """Issuances, their audit lines and their events in the program."""
    rows = await pool.fetchval(
        "SELECT count(*) FROM partner_issuances WHERE program_id = $1", program_id
    )
    slug = await pool.fetchval("SELECT slug FROM programs WHERE id = $1", program_id)
    lines = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'partner.issue' AND subject LIKE $1",
        f"program:{slug}:%",
    )
    sent = await pool.fetchval(
        "SELECT count(*) FROM outbox_events o JOIN partner_issuances i"
        " ON i.id::text = o.payload->>'issuance_id' WHERE i.program_id = $1 AND o.topic = $2",
        program_id,
        events.POINTS_ISSUED,
    )
    return rows, lines, sent


async def test_an_issuance_moves_points_from_the_partner_to_the_member(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program, name="Fuel & Go")
    member = await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    principal = partner_principal(partner)
    view = await issue_points(pool, ledger, issuance(), datetime.now(UTC), principal=principal)
    assert (view.points, view.member, view.company, view.partner) == (
        100,
        "ann",
        partner.slug,
        partner.slug,
    )
    assert not view.replayed
    assert await issuable(ledger, program, partner) == 900
    page = await ledger.history(member.wallet_account_id)
    [transfer] = page.transfers
    assert (transfer.amount, transfer.code) == (100, 100)
    assert transfer.metadata and transfer.metadata["partner_name"] == "Fuel & Go"
    assert await written(pool, program.id) == (1, 1, 1)
    event = await pool.fetchrow(
        "SELECT subject, payload FROM outbox_events WHERE payload->>'issuance_id' = $1", view.id
    )
    assert event is not None
    assert event["subject"] == events.subject(partner.id)
    assert event["payload"]["points"] == 100 and event["payload"]["transaction_id"] == "T-1"
    assert await get_issuance(pool, uuid.UUID(view.id), principal=principal) == view


async def test_a_replay_answers_the_first_issuance_and_another_request_conflicts(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    principal = partner_principal(partner)
    now = datetime.now(UTC)
    first = await issue_points(pool, ledger, issuance(), now, principal=principal)
    again = await issue_points(pool, ledger, issuance(), now, principal=principal)
    assert again.replayed and again.id == first.id and again.points == 100
    with pytest.raises(Conflict):
        await issue_points(pool, ledger, issuance(points=101), now, principal=principal)
    assert await issuable(ledger, program, partner) == 900
    assert await written(pool, program.id) == (1, 1, 1)
    # Suspended since: the replay still answers the first issuance.
    await pool.execute("UPDATE partners SET status = 'suspended' WHERE id = $1", partner.id)
    late = await issue_points(pool, ledger, issuance(), now, principal=principal)
    assert late.replayed and late.id == first.id


async def test_concurrent_duplicates_issue_once(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    principal = partner_principal(partner)
    now = datetime.now(UTC)
    views = await asyncio.gather(
        *(issue_points(pool, ledger, issuance(), now, principal=principal) for _ in range(8))
    )
    assert len({v.id for v in views}) == 1
    assert sum(not v.replayed for v in views) == 1
    assert await issuable(ledger, program, partner) == 900
    assert await written(pool, program.id) == (1, 1, 1)


async def test_a_prepaid_partner_cannot_over_issue_under_concurrency(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 10)
    principal = partner_principal(partner)
    now = datetime.now(UTC)
    outcomes = await asyncio.gather(
        *(
            issue_points(pool, ledger, issuance(f"T-{n}", points=1), now, principal=principal)
            for n in range(20)
        ),
        return_exceptions=True,
    )
    issued = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(issued) == 10
    assert len(refused) == 10 and all(isinstance(r, FundingExhausted) for r in refused)
    assert await issuable(ledger, program, partner) == 0
    # Nothing of a refused issuance is kept: no row, no line, no event.
    assert await written(pool, program.id) == (10, 10, 10)


async def test_a_purchase_is_priced_by_the_rules_in_force(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    principal = partner_principal(partner)
    now = datetime.now(UTC)
    nothing = await issue_points(
        pool,
        ledger,
        issuance("T-0", purchase_amount_minor=2500, currency=program.currency),
        now,
        principal=principal,
    )
    assert (nothing.points, nothing.rule_version) == (0, None)
    version = await draft_rules(
        session,
        program,
        EarnRules(points_per_unit=Decimal("2")),
        principal=OPERATOR,
    )
    await publish_rules(session, program, version.version, now, now, principal=OPERATOR)
    await session.commit()
    priced = await issue_points(
        pool,
        ledger,
        issuance("T-1", purchase_amount_minor=2550, currency=program.currency),
        now,
        principal=principal,
    )
    # 25.50 at 2 points per unit: 51 points.
    assert (priced.points, priced.rule_version) == (51, version.version)
    assert await issuable(ledger, program, partner) == 949
    with pytest.raises(InvalidIssuance):
        await issue_points(
            pool,
            ledger,
            issuance("T-2", purchase_amount_minor=100, currency="EUR"),
            now,
            principal=principal,
        )
    assert await written(pool, program.id) == (2, 2, 2)


async def test_a_store_issues_under_its_groups_contract(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    group = await new_partner(program)
    store = await new_partner(program, parent=group, name="Fuel & Go Sandton")
    other = await new_partner(program, parent=group)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, group)
    await fund(session, ledger, program, group, 1000)
    now = datetime.now(UTC)
    by_group = partner_principal(group, store, other)
    view = await issue_points(pool, ledger, issuance(company=store.slug), now, principal=by_group)
    assert (view.company, view.partner) == (store.slug, group.slug)
    by_store = partner_principal(store)
    own = await issue_points(pool, ledger, issuance("T-2"), now, principal=by_store)
    assert (own.company, own.partner) == (store.slug, group.slug)
    assert await issuable(ledger, program, group) == 800
    # The store's credential reaches neither the group nor its sibling.
    for outside in (group.slug, other.slug):
        with pytest.raises(NotFound):
            await issue_points(
                pool, ledger, issuance("T-3", company=outside), now, principal=by_store
            )
    with pytest.raises(NotFound):
        await get_issuance(pool, uuid.UUID(view.id), principal=partner_principal(other))
    store_page = await list_issuances(pool, principal=by_store, limit=10, cursor=None)
    assert {v.id for v in store_page.items} == {view.id, own.id}
    assert not (
        await list_issuances(pool, principal=partner_principal(other), limit=10, cursor=None)
    ).items
    first = await list_issuances(pool, principal=by_group, limit=1, cursor=None)
    rest = await list_issuances(pool, principal=by_group, limit=1, cursor=first.next_cursor)
    assert [v.id for v in first.items + rest.items] == [own.id, view.id]


async def test_a_member_is_found_by_the_identifier_they_linked(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    group = await new_partner(program)
    store = await new_partner(program, parent=group)
    member = await enrolled(session, ledger, program)
    await contract(session, ledger, program, group)
    await fund(session, ledger, program, group, 1000)
    # Linked at the store: the link is the group's, whose card it is.
    link, _ = await link_member(
        session, program, member, store.slug, LinkRequest(identifier="CARD-9"), principal=OPERATOR
    )
    await session.commit()
    assert link.partner == group.slug
    now = datetime.now(UTC)
    view = await issue_points(
        pool, ledger, issuance(identifier="CARD-9"), now, principal=partner_principal(store)
    )
    assert (view.member, view.identifier, view.points) == (None, "CARD-9", 100)
    with pytest.raises(NotFound):
        await issue_points(
            pool,
            ledger,
            issuance("T-2", identifier="CARD-0"),
            now,
            principal=partner_principal(store),
        )


async def test_an_issuance_is_refused_without_the_parties_it_needs(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    acceptor = await new_partner(program)
    member = await enrolled(session, ledger, program)
    now = datetime.now(UTC)
    principal = partner_principal(partner)
    with pytest.raises(NoContractInForce):
        await issue_points(pool, ledger, issuance(), now, principal=principal)
    await contract(session, ledger, program, acceptor, roles="acceptor")
    now = datetime.now(UTC)
    with pytest.raises(ContractRoleMissing):
        await issue_points(pool, ledger, issuance(), now, principal=partner_principal(acceptor))
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    now = datetime.now(UTC)
    with pytest.raises(NotFound):
        await issue_points(pool, ledger, issuance(member="nobody"), now, principal=principal)
    await session.execute(update(Member).where(Member.id == member.id).values(status="frozen"))
    await session.commit()
    with pytest.raises(MemberNotActive):
        await issue_points(pool, ledger, issuance(), now, principal=principal)
    await pool.execute(
        "UPDATE partners SET status = $2 WHERE id = $1", partner.id, PartnerStatus.SUSPENDED
    )
    with pytest.raises(PartnerNotActive):
        await issue_points(pool, ledger, issuance(), now, principal=principal)
    with pytest.raises(Exception, match="points:issue"):
        await issue_points(
            pool, ledger, issuance(), now, principal=partner_principal(partner, scopes=())
        )
    assert await written(pool, program.id) == (0, 0, 0)
    assert await issuable(ledger, program, partner) == 1000


async def test_an_issuance_prepared_before_a_sunset_and_written_after_it_is_refused(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    # prepare_issuance reads the end of earning outside the writing
    # transaction: the write checks it again, under the end-of-earning lock.
    program = await new_program()
    partner = await new_partner(program)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    principal = partner_principal(partner)
    now = datetime.now(UTC)
    prepared = await prepare_issuance(pool, issuance(), now, principal=principal)
    assert not isinstance(prepared, IssuanceView)
    await schedule_sunset(
        session,
        program,
        SunsetRequest(sunset_at=now + timedelta(days=40), notice_days=30, reason="closing"),
        now - timedelta(minutes=1),
        principal=system("board"),
    )
    await session.commit()
    [answer] = await record_issuances(pool, ledger, [prepared])
    assert isinstance(answer, ProgramSunsetting)
    assert await written(pool, program.id) == (0, 0, 0)
    assert await issuable(ledger, program, partner) == 1000
