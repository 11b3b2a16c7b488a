"""Market development funds: a fund's life from allocation to paid claims,
its state machines, and a fund never overdrawn under concurrent approvals
and submissions (real connections, real commits)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.codes import AccountCode, TransferCode, derived_id, money_account_id
from core.errors import Conflict, DomainError, Forbidden, NotFound
from core.models import Program
from core.principal import Principal
from ledger import Ledger
from partners.contracts import issuance_account
from partners.mdf.activities import approve_activity, refuse_activity, request_activity
from partners.mdf.claims import (
    approve_claim,
    change_claim,
    draft_claim,
    get_claim,
    refuse_claim,
    submit_claim,
)
from partners.mdf.errors import (
    ActivityOverclaimed,
    FundClosed,
    FunderCannotPay,
    FundExhausted,
    InvalidMdfRequest,
    WrongMdfState,
)
from partners.mdf.funds import allocate_fund, get_fund, reconcile_fund
from partners.mdf.models import MdfActivity, MdfClaim, MdfFund
from partners.mdf.schemas import (
    ActivityApproval,
    ActivityRequest,
    ActivityView,
    ClaimChange,
    ClaimDraft,
    ClaimView,
    FundRequest,
    FundView,
    Proof,
    Refusal,
)
from partners.models import Partner
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, partner_principal
from tests.partners.conftest import NewPartner

MDF_SCOPES = ("mdf:read", "mdf:request", "mdf:fund")
_refs = itertools.count(1)
PROOF = [Proof(url="https://files.example.com/invoice-1.pdf", description="The invoice")]


def today() -> date:
    return datetime.now(UTC).date()


def client_of(partner: Partner) -> Principal:
    return partner_principal(partner, scopes=MDF_SCOPES)


def fund_request(partner: Partner, amount: int, **fields: Any) -> FundRequest:
    values: dict[str, Any] = {
        "reference": f"mdf-{next(_refs)}-{uuid.uuid4().hex[:6]}",
        "partner": partner.slug,
        "name": "Q1 co-marketing",
        "period_start": (today() - timedelta(days=10)).isoformat(),
        "period_end": (today() + timedelta(days=80)).isoformat(),
        "unit": "points",
        "amount": amount,
        **fields,
    }
    return msgspec.convert(values, FundRequest)


def activity_request(amount: int, **fields: Any) -> ActivityRequest:
    values: dict[str, Any] = {
        "title": "Forecourt promotion",
        "plan": "Posters and a weekend tasting at 12 sites.",
        "starts_on": today().isoformat(),
        "ends_on": (today() + timedelta(days=7)).isoformat(),
        "amount": amount,
        **fields,
    }
    return msgspec.convert(values, ActivityRequest)


def draft(amount: int, *, proof: list[Proof] | None = None, submit: bool = False) -> ClaimDraft:
    return ClaimDraft(
        amount=amount, description="Posters printed", proof=proof or [], submit=submit
    )


async def allocated(
    session: AsyncSession, ledger: Ledger, program: Program, request: FundRequest, **kw: Any
) -> FundView:
    view = await allocate_fund(
        session, ledger, program, request, datetime.now(UTC), principal=kw.get("by", OPERATOR)
    )
    await session.commit()
    return view


async def requested(
    session: AsyncSession, partner: Partner, fund: FundView, amount: int
) -> ActivityView:
    view = await request_activity(
        session,
        uuid.UUID(fund.id),
        activity_request(amount),
        datetime.now(UTC),
        principal=client_of(partner),
    )
    await session.commit()
    return view


async def approved(
    session: AsyncSession, program: Program, partner: Partner, fund: FundView, amount: int
) -> ActivityView:
    activity = await requested(session, partner, fund, amount)
    view = await approve_activity(
        session,
        program,
        uuid.UUID(activity.id),
        ActivityApproval(),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    return view


async def submitted(
    session: AsyncSession, program: Program, partner: Partner, activity: ActivityView, amount: int
) -> ClaimView:
    view = await draft_claim(
        session,
        uuid.UUID(activity.id),
        draft(amount, proof=PROOF, submit=True),
        datetime.now(UTC),
        principal=client_of(partner),
        program=program,
    )
    await session.commit()
    return view


async def issuable(ledger: Ledger, program: Program, partner: Partner) -> int:
    [account] = await ledger.lookup_accounts([issuance_account(program, partner.id)])
    return account.credits_posted - account.debits_posted


async def refused_with(
    error: type[DomainError], session: AsyncSession, call: Awaitable[Any]
) -> DomainError:
    with pytest.raises(error) as raised:
        await call
    # A rollback expires every object: load the test's program and firms again.
    kept = [o for o in session.identity_map.values() if isinstance(o, Program | Partner)]
    await session.rollback()
    for each in kept:
        await session.refresh(each)
    return raised.value


async def test_a_points_fund_pays_partial_claims_once_and_reconciles(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    fund = await allocated(session, ledger, program, fund_request(partner, 1000))
    activity = await approved(session, program, partner, fund, 600)
    assert (activity.status, activity.approved_amount) == ("approved", 600)

    # A draft without proof, completed by an edit, then submitted.
    first = await draft_claim(
        session, uuid.UUID(activity.id), draft(150), datetime.now(UTC), principal=client_of(partner)
    )
    await session.commit()
    assert first.status == "draft"
    changed = await change_claim(
        session,
        program,
        uuid.UUID(first.id),
        ClaimChange(amount=200, proof=PROOF),
        principal=client_of(partner),
    )
    await session.commit()
    assert (changed.amount, len(changed.proof)) == (200, 1)
    sent = await submit_claim(
        session, program, uuid.UUID(first.id), datetime.now(UTC), principal=client_of(partner)
    )
    await session.commit()
    assert sent.status == "submitted"
    before = await issuable(ledger, program, partner)

    paid = await approve_claim(
        session, ledger, program, uuid.UUID(first.id), datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()
    again = await approve_claim(
        session, ledger, program, uuid.UUID(first.id), datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()

    assert paid.status == again.status == "paid"
    assert (
        paid.transfer_id == again.transfer_id == str(derived_id(program.id, "mdf-claim", first.id))
    )
    assert await issuable(ledger, program, partner) == before + 200
    [transfer] = await ledger.lookup_transfers([uuid.UUID(paid.transfer_id or "")])
    assert (transfer.code, transfer.amount) == (TransferCode.MDF_PAYMENT, 200)
    assert transfer.debit_account_id == program.issuance_account_id

    second = await submitted(session, program, partner, activity, 400)
    await approve_claim(
        session, ledger, program, uuid.UUID(second.id), datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()
    await refused_with(
        ActivityOverclaimed,
        session,
        draft_claim(
            session,
            uuid.UUID(activity.id),
            draft(1),
            datetime.now(UTC),
            principal=client_of(partner),
        ),
    )

    figures = await reconcile_fund(session, ledger, program, uuid.UUID(fund.id), principal=OPERATOR)
    assert (figures.allocated, figures.committed, figures.claimed, figures.paid) == (
        1000,
        600,
        600,
        600,
    )
    assert (figures.paid_in_ledger, figures.remaining, figures.ties) == (600, 400, True)
    assert await issuable(ledger, program, partner) == before + 600


async def test_reconciliation_says_when_figures_do_not_tie(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    fund = await allocated(session, ledger, program, fund_request(partner, 500))
    activity = await approved(session, program, partner, fund, 300)
    claim = await submitted(session, program, partner, activity, 100)
    # A paid claim whose transfer the ledger does not hold.
    row = await session.get_one(MdfClaim, uuid.UUID(claim.id))
    row.status, row.transfer_id = "paid", uuid.uuid4()
    (await session.get_one(MdfActivity, uuid.UUID(activity.id))).paid = 100
    (await session.get_one(MdfFund, uuid.UUID(fund.id))).paid = 100
    await session.commit()

    figures = await reconcile_fund(session, ledger, program, uuid.UUID(fund.id), principal=OPERATOR)

    assert (figures.paid, figures.paid_in_ledger, figures.ties) == (100, 0, False)


async def test_concurrent_approvals_never_overdraw_the_fund(
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    fund = await allocated(session, ledger, program, fund_request(partner, 1000))
    activities = [await requested(session, partner, fund, 300) for _ in range(6)]
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def approve(activity: ActivityView) -> str:
        async with sessions() as own, own.begin():
            try:
                await approve_activity(
                    own,
                    program,
                    uuid.UUID(activity.id),
                    ActivityApproval(),
                    datetime.now(UTC),
                    principal=OPERATOR,
                )
            except FundExhausted:
                return "exhausted"
        return "approved"

    outcomes = await asyncio.gather(*(approve(a) for a in activities))

    assert sorted(outcomes) == ["approved"] * 3 + ["exhausted"] * 3
    view = await get_fund(session, program, uuid.UUID(fund.id), principal=OPERATOR)
    assert (view.committed, view.remaining) == (900, 100)
    committed = await session.scalar(
        select(func.sum(MdfActivity.approved_amount)).where(
            MdfActivity.fund_id == uuid.UUID(fund.id)
        )
    )
    assert committed == 900


async def test_concurrent_submissions_never_overclaim_an_activity(
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    fund = await allocated(session, ledger, program, fund_request(partner, 1000))
    activity = await approved(session, program, partner, fund, 500)
    drafts = []
    for _ in range(5):
        drafts.append(
            await draft_claim(
                session,
                uuid.UUID(activity.id),
                draft(200, proof=PROOF),
                datetime.now(UTC),
                principal=client_of(partner),
            )
        )
        await session.commit()
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def submit(claim: ClaimView) -> str:
        async with sessions() as own, own.begin():
            try:
                await submit_claim(
                    own,
                    program,
                    uuid.UUID(claim.id),
                    datetime.now(UTC),
                    principal=client_of(partner),
                )
            except ActivityOverclaimed:
                return "overclaimed"
        return "submitted"

    outcomes = await asyncio.gather(*(submit(c) for c in drafts))

    assert sorted(outcomes) == ["overclaimed"] * 3 + ["submitted"] * 2
    figures = await reconcile_fund(session, ledger, program, uuid.UUID(fund.id), principal=OPERATOR)
    assert (figures.claimed, figures.ties) == (400, True)


async def test_a_brand_partners_money_fund_is_billed_to_it_and_decided_by_it_only(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    brand = await new_partner(program)
    partner = await new_partner(program)
    other = await new_partner(program)
    fund = await allocated(
        session,
        ledger,
        program,
        fund_request(partner, 50_000, unit="money", currency="ZAR"),
        by=client_of(brand),
    )
    assert (fund.funder, fund.partner, fund.unit) == (brand.slug, partner.slug, "money")
    activity = await requested(session, partner, fund, 20_000)

    # The fund's partner decides nothing; a third partner sees nothing.
    await refused_with(
        Forbidden,
        session,
        approve_activity(
            session,
            program,
            uuid.UUID(activity.id),
            ActivityApproval(),
            datetime.now(UTC),
            principal=client_of(partner),
        ),
    )
    await refused_with(
        NotFound,
        session,
        approve_activity(
            session,
            program,
            uuid.UUID(activity.id),
            ActivityApproval(),
            datetime.now(UTC),
            principal=client_of(other),
        ),
    )
    approval = await approve_activity(
        session,
        program,
        uuid.UUID(activity.id),
        ActivityApproval(amount=15_000),
        datetime.now(UTC),
        principal=client_of(brand),
    )
    await session.commit()
    assert approval.approved_amount == 15_000
    claim = await submitted(
        session,
        program,
        partner,
        ActivityView.of(await session.get_one(MdfActivity, uuid.UUID(activity.id))),
        12_345,
    )
    await refused_with(
        NotFound,
        session,
        get_claim(session, program, uuid.UUID(claim.id), principal=client_of(other)),
    )
    await approve_claim(
        session, ledger, program, uuid.UUID(claim.id), datetime.now(UTC), principal=client_of(brand)
    )
    await session.commit()

    receivable = money_account_id(program.id, "ZAR", AccountCode.PARTNER_RECEIVABLE, brand.id)
    payable = money_account_id(program.id, "ZAR", AccountCode.PARTNER_PAYABLE, partner.id)
    found = {a.id: a for a in await ledger.lookup_accounts([receivable, payable])}
    assert found[receivable].debits_posted - found[receivable].credits_posted == 12_345
    assert found[payable].credits_posted - found[payable].debits_posted == 12_345
    figures = await reconcile_fund(
        session, ledger, program, uuid.UUID(fund.id), principal=client_of(brand)
    )
    assert (figures.committed, figures.paid, figures.paid_in_ledger, figures.ties) == (
        15_000,
        12_345,
        12_345,
        True,
    )


async def test_a_brand_partner_without_the_points_pays_nothing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    brand = await new_partner(program)
    partner = await new_partner(program)
    fund = await allocated(
        session, ledger, program, fund_request(partner, 1000), by=client_of(brand)
    )
    activity = await requested(session, partner, fund, 500)
    await approve_activity(
        session,
        program,
        uuid.UUID(activity.id),
        ActivityApproval(),
        datetime.now(UTC),
        principal=client_of(brand),
    )
    await session.commit()
    claim = await submitted(
        session,
        program,
        partner,
        ActivityView.of(await session.get_one(MdfActivity, uuid.UUID(activity.id))),
        100,
    )

    await refused_with(
        FunderCannotPay,
        session,
        approve_claim(
            session,
            ledger,
            program,
            uuid.UUID(claim.id),
            datetime.now(UTC),
            principal=client_of(brand),
        ),
    )

    row = await session.get_one(MdfClaim, uuid.UUID(claim.id), populate_existing=True)
    assert (row.status, row.transfer_id) == ("submitted", None)
    assert await issuable(ledger, program, partner) == 0


async def test_wrong_transitions_are_refused_and_write_nothing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    fund = await allocated(session, ledger, program, fund_request(partner, 1000))
    now = datetime.now(UTC)
    refused = await requested(session, partner, fund, 100)
    await refuse_activity(
        session,
        program,
        uuid.UUID(refused.id),
        Refusal(reason="off-brand"),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    count = await session.scalar(select(func.count()).select_from(MdfClaim))

    await refused_with(
        WrongMdfState,
        session,
        approve_activity(
            session, program, uuid.UUID(refused.id), ActivityApproval(), now, principal=OPERATOR
        ),
    )
    await refused_with(
        WrongMdfState,
        session,
        draft_claim(session, uuid.UUID(refused.id), draft(10), now, principal=client_of(partner)),
    )
    # More than the fund has left, and dates outside its period.
    await refused_with(
        InvalidMdfRequest,
        session,
        request_activity(
            session, uuid.UUID(fund.id), activity_request(1001), now, principal=client_of(partner)
        ),
    )
    await refused_with(
        InvalidMdfRequest,
        session,
        request_activity(
            session,
            uuid.UUID(fund.id),
            activity_request(10, ends_on=(today() + timedelta(days=400)).isoformat()),
            now,
            principal=client_of(partner),
        ),
    )
    # After the period: closed.
    later = now + timedelta(days=200)
    await refused_with(
        FundClosed,
        session,
        request_activity(
            session, uuid.UUID(fund.id), activity_request(10), later, principal=client_of(partner)
        ),
    )
    activity = await approved(session, program, partner, fund, 300)
    no_proof = await draft_claim(
        session, uuid.UUID(activity.id), draft(50), now, principal=client_of(partner)
    )
    await session.commit()
    await refused_with(
        InvalidMdfRequest,
        session,
        submit_claim(session, program, uuid.UUID(no_proof.id), now, principal=client_of(partner)),
    )
    # A draft is not approved; a submitted one is not edited.
    await refused_with(
        WrongMdfState,
        session,
        approve_claim(session, ledger, program, uuid.UUID(no_proof.id), now, principal=OPERATOR),
    )
    sent = await submitted(session, program, partner, activity, 100)
    await refused_with(
        WrongMdfState,
        session,
        change_claim(
            session,
            program,
            uuid.UUID(sent.id),
            ClaimChange(amount=5),
            principal=client_of(partner),
        ),
    )
    # The partner does not approve its own claim.
    await refused_with(
        Forbidden,
        session,
        approve_claim(
            session, ledger, program, uuid.UUID(sent.id), now, principal=client_of(partner)
        ),
    )
    assert await session.scalar(select(func.count()).select_from(MdfClaim)) == count + 2

    # A refused claim frees its amount; refused again, the same answer.
    refusal = await refuse_claim(
        session, program, uuid.UUID(sent.id), Refusal(reason="blurry"), now, principal=OPERATOR
    )
    await session.commit()
    again = await refuse_claim(
        session, program, uuid.UUID(sent.id), Refusal(reason="blurry"), now, principal=OPERATOR
    )
    assert refusal.status == again.status == "refused"
    await refused_with(
        WrongMdfState,
        session,
        approve_claim(session, ledger, program, uuid.UUID(sent.id), now, principal=OPERATOR),
    )
    figures = await reconcile_fund(session, ledger, program, uuid.UUID(fund.id), principal=OPERATOR)
    assert (figures.committed, figures.claimed, figures.drafts, figures.ties) == (300, 0, 50, True)


async def test_allocation_is_idempotent_by_reference_and_refuses_bad_parties(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    request = fund_request(partner, 700)
    first = await allocated(session, ledger, program, request)
    again = await allocated(session, ledger, program, request)
    assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
    await refused_with(
        Conflict,
        session,
        allocate_fund(
            session,
            ledger,
            program,
            msgspec.structs.replace(request, amount=701),
            datetime.now(UTC),
            principal=OPERATOR,
        ),
    )
    await refused_with(
        InvalidMdfRequest,
        session,
        allocate_fund(
            session,
            ledger,
            program,
            fund_request(partner, 10),
            datetime.now(UTC),
            principal=client_of(partner),
        ),
    )
    await refused_with(
        InvalidMdfRequest,
        session,
        allocate_fund(
            session,
            ledger,
            program,
            msgspec.structs.replace(fund_request(partner, 10), partner="nobody-here"),
            datetime.now(UTC),
            principal=OPERATOR,
        ),
    )
    assert (
        await session.scalar(
            select(func.count()).select_from(MdfFund).where(MdfFund.program_id == program.id)
        )
        == 1
    )


async def test_concurrent_approvals_of_one_claim_pay_it_once(
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    fund = await allocated(session, ledger, program, fund_request(partner, 1000))
    activity = await approved(session, program, partner, fund, 500)
    claim = await submitted(session, program, partner, activity, 321)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def approve() -> ClaimView:
        async with sessions() as own, own.begin():
            return await approve_claim(
                own, ledger, program, uuid.UUID(claim.id), datetime.now(UTC), principal=OPERATOR
            )

    answers = await asyncio.gather(*(approve() for _ in range(4)))

    assert {a.status for a in answers} == {"paid"}
    assert len({a.transfer_id for a in answers}) == 1
    assert await issuable(ledger, program, partner) == 321
    figures = await reconcile_fund(session, ledger, program, uuid.UUID(fund.id), principal=OPERATOR)
    assert (figures.paid, figures.paid_in_ledger, figures.ties) == (321, 321, True)
