"""Partner contracts: versions in force by time, exact prices, the credit
line a postpaid contract grants, and blocks of points a prepaid one buys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit_events
from core.errors import Conflict
from core.models import Program
from ledger import Ledger
from partners.coalition_errors import CreditLineInUse, InvalidContract, NotPrepaid
from partners.coalition_models import PartnerContract, PartnerFunding
from partners.coalition_schemas import IssuanceRequest
from partners.contract_schemas import ContractTerms, FundingRequest
from partners.contracts import (
    contract_holder,
    contract_in_force,
    draft_contract,
    get_contract,
    list_contracts,
    publish_contract,
)
from partners.funding import partner_balance, record_funding
from partners.issuance import issue_points
from partners.models import Partner
from rewards.errors import PublishInPast, VersionAlreadyPublished
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import (
    OPERATOR,
    contract,
    enrolled,
    fund,
    issuable,
    partner_principal,
    rollback,
    terms,
)
from tests.partners.conftest import NewPartner


async def postpaid(
    session: AsyncSession, ledger: Ledger, program: Program, partner: Partner, limit: int
) -> None:
    await contract(
        session, ledger, program, partner, funding_model="postpaid", credit_limit_points=limit
    )


async def test_a_price_per_point_is_exact_to_the_minor_unit(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    view, created = await draft_contract(
        session, program, partner, terms(issue_price_per_point="1.5"), principal=OPERATOR
    )
    await session.commit()
    stored = await get_contract(session, partner, view.version, principal=OPERATOR)
    assert created and stored.issue_price_per_point == Decimal("1.5")
    # 10,000 points at 1.5 cents: exactly 150.00, no float on the way.
    assert 10_000 * stored.issue_price_per_point == Decimal(15_000)
    assert view.issue_price_per_point == "1.5" and view.currency == partner.currency
    tiny = await draft_contract(
        session, program, partner, terms(issue_price_per_point="0.000001"), principal=OPERATOR
    )
    assert tiny[0].issue_price_per_point == "0.000001"


@pytest.mark.parametrize(
    "price", ["1.1234567", "1e3", "-1", "", "1,5", "0x10", "1234567890123"], ids=repr
)
def test_a_price_that_is_not_an_exact_decimal_is_refused(price: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        terms(issue_price_per_point=price)


def test_a_price_sent_as_a_number_is_refused() -> None:
    document = b'{"roles": "both", "issue_price_per_point": 1.5,'
    document += b' "redemption_rate_per_point": "1", "funding_model": "prepaid"}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(document, type=ContractTerms, strict=True)


async def test_funding_terms_must_hold_together(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    for wrong in (
        terms(funding_model="prepaid", credit_limit_points=100),
        terms(funding_model="postpaid"),
    ):
        with pytest.raises(InvalidContract):
            await draft_contract(session, program, partner, wrong, principal=OPERATOR)
    await rollback(session, program, partner)
    assert not await session.scalar(
        select(func.count()).where(PartnerContract.partner_id == partner.id)
    )


async def test_a_draft_sent_again_is_the_same_version(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    first, new = await draft_contract(session, program, partner, terms(), principal=OPERATOR)
    again, again_new = await draft_contract(session, program, partner, terms(), principal=OPERATOR)
    other, _ = await draft_contract(
        session, program, partner, terms(redemption_rate_per_point="2"), principal=OPERATOR
    )
    await session.commit()
    assert (first.version, new, again.version, again_new, other.version) == (1, True, 1, False, 2)
    page = await list_contracts(session, partner, principal=OPERATOR, limit=1, cursor=None)
    assert [v.version for v in page.items] == [2] and page.next_cursor
    rest = await list_contracts(
        session, partner, principal=OPERATOR, limit=1, cursor=page.next_cursor
    )
    assert [v.version for v in rest.items] == [1] and rest.next_cursor is None


async def test_the_version_in_force_follows_the_starts(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    now = datetime.now(UTC)
    await contract(session, ledger, program, partner)
    later_terms = {"redemption_rate_per_point": "2"}
    await contract(session, ledger, program, partner, at=now + timedelta(hours=1), **later_terms)
    at_now = await contract_in_force(session, partner.id, now + timedelta(minutes=1))
    later = await contract_in_force(session, partner.id, now + timedelta(hours=2))
    before = await contract_in_force(session, partner.id, now - timedelta(days=1))
    assert at_now is not None and at_now.version == 1
    assert later is not None and later.version == 2
    assert before is None


async def test_only_the_first_version_may_start_in_the_past(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    now = datetime.now(UTC)
    await draft_contract(session, program, partner, terms(), principal=OPERATOR)
    await session.commit()
    with pytest.raises(PublishInPast):
        await publish_contract(
            session,
            ledger,
            program,
            partner,
            1,
            partner.created_at - timedelta(days=1),
            now,
            principal=OPERATOR,
        )
    await rollback(session, program, partner)
    first = await publish_contract(
        session, ledger, program, partner, 1, partner.created_at, now, principal=OPERATOR
    )
    await session.commit()
    assert first.effective_from == partner.created_at
    again = await publish_contract(
        session, ledger, program, partner, 1, partner.created_at, now, principal=OPERATOR
    )
    assert again == first
    with pytest.raises(VersionAlreadyPublished):
        await publish_contract(session, ledger, program, partner, 1, now, now, principal=OPERATOR)
    await rollback(session, program, partner)
    await draft_contract(session, program, partner, terms(note="v2"), principal=OPERATOR)
    await session.commit()
    with pytest.raises(PublishInPast):
        await publish_contract(
            session, ledger, program, partner, 2, now - timedelta(1), now, principal=OPERATOR
        )
    await rollback(session, program, partner)


async def test_a_credit_line_moves_with_each_publication(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    member = await enrolled(session, ledger, program)
    await postpaid(session, ledger, program, partner, 1000)
    assert await issuable(ledger, program, partner) == 1000
    await postpaid(session, ledger, program, partner, 1500)
    assert await issuable(ledger, program, partner) == 1500
    await issue_points(
        ledger.pool,
        ledger,
        IssuanceRequest(transaction_id="T-1", member=member.external_id, points=1200),
        datetime.now(UTC),
        principal=partner_principal(partner),
    )
    assert await issuable(ledger, program, partner) == 300
    # 1,000 would leave -200: the ledger refuses, the version stays a draft.
    view, _ = await draft_contract(
        session,
        program,
        partner,
        terms(funding_model="postpaid", credit_limit_points=1000),
        principal=OPERATOR,
    )
    await session.commit()
    now = datetime.now(UTC)
    with pytest.raises(CreditLineInUse):
        await publish_contract(
            session, ledger, program, partner, view.version, now, now, principal=OPERATOR
        )
    await rollback(session, program, partner)
    assert (
        await get_contract(session, partner, view.version, principal=OPERATOR)
    ).status == "draft"
    assert await issuable(ledger, program, partner) == 300
    await postpaid(session, ledger, program, partner, 1300)
    balance = await partner_balance(session, ledger, program, partner, datetime.now(UTC))
    assert (balance.issuable_points, balance.credit_limit_points) == (100, 1300)


async def test_a_prepaid_block_is_recorded_once(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await contract(session, ledger, program, partner)
    block = FundingRequest(reference="INV-1", points=500, amount_minor=750)
    now = datetime.now(UTC)
    first = await record_funding(session, ledger, program, partner, block, now, principal=OPERATOR)
    await session.commit()
    again = await record_funding(session, ledger, program, partner, block, now, principal=OPERATOR)
    assert not first.replayed and again.replayed and again.id == first.id
    assert first.currency == program.currency
    with pytest.raises(Conflict):
        await record_funding(
            session,
            ledger,
            program,
            partner,
            FundingRequest(reference="INV-1", points=501, amount_minor=750),
            now,
            principal=OPERATOR,
        )
    await rollback(session, program, partner)
    assert await issuable(ledger, program, partner) == 500
    rows = await session.scalar(select(func.count()).where(PartnerFunding.partner_id == partner.id))
    lines = await session.scalar(
        select(func.count())
        .select_from(audit_events)
        .where(
            audit_events.c.subject.like(f"program:{program.slug}:partner:{partner.slug}:funding:%")
        )
    )
    assert (rows, lines) == (1, 1)


async def test_a_postpaid_partner_buys_no_blocks(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await postpaid(session, ledger, program, partner, 10)
    with pytest.raises(NotPrepaid):
        await fund(session, ledger, program, partner, 100)
    await rollback(session, program, partner)
    assert await issuable(ledger, program, partner) == 10


async def test_a_company_acts_under_its_nearest_contract(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    group = await new_partner(program)
    region = await new_partner(program, parent=group)
    store = await new_partner(program, parent=region)
    assert await contract_holder(session, program, store.id) is None
    await contract(session, ledger, program, group)
    assert await contract_holder(session, program, store.id) == group.id
    await contract(session, ledger, program, region)
    assert await contract_holder(session, program, store.id) == region.id
    assert await contract_holder(session, program, group.id) == group.id
