"""Points accepted at a partner's checkout: reserve, then capture (in full
or in part) or release; a hold left alone times out; refunds never give
back more than was captured."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.models import Member, Program
from ledger import Ledger, Transfer, TransferFlags
from ledger.repository import expiry_transfer_id
from partners import events
from partners.acceptance import capture_hold, get_hold, refund_hold, release_hold, reserve_points
from partners.coalition_errors import ContractRoleMissing, RefundExceedsCapture
from partners.coalition_schemas import CaptureRequest, CheckoutHold, IssuanceRequest, RefundRequest
from partners.issuance import issue_points
from partners.models import Partner
from rewards.errors import CaptureExceedsHold, HoldClosed, InsufficientPoints
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import (
    accepted,
    contract,
    enrolled,
    fund,
    partner_principal,
    rollback,
    wallet,
)
from tests.partners.conftest import NewPartner


class Checkout:
    def __init__(
        self, program: Program, partner: Partner, member: Member, session: AsyncSession
    ) -> None:
        self.program, self.partner, self.member, self.session = program, partner, member, session
        self.principal = partner_principal(partner)


@pytest.fixture
async def checkout(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> Checkout:
    """An acceptor whose member ``ann`` holds 1,000 points."""
    program = await new_program()
    partner = await new_partner(program)
    member = await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1000)
    await issue_points(
        pool,
        ledger,
        IssuanceRequest(transaction_id="welcome", member="ann", points=1000),
        datetime.now(UTC),
        principal=partner_principal(partner),
    )
    return Checkout(program, partner, member, session)


def hold(checkout_id: str = "C-1", points: int = 300, **fields: object) -> CheckoutHold:
    return CheckoutHold(checkout_id=checkout_id, member="ann", points=points, **fields)  # type: ignore[arg-type]


async def events_of(pool: asyncpg.Pool, topic: str, hold_id: str) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox_events WHERE topic = $1 AND payload->>'hold_id' = $2",
        topic,
        hold_id,
    )
    return [row["payload"] for row in rows]


async def test_a_capture_takes_part_and_gives_back_the_rest(
    checkout: Checkout, ledger: Ledger, pool: asyncpg.Pool
) -> None:
    s, now = checkout.session, datetime.now(UTC)
    view = await reserve_points(s, ledger, hold(), now, principal=checkout.principal)
    await s.commit()
    assert (view.status, view.points) == ("held", 300)
    assert await wallet(ledger, checkout.member) == (700, 300)
    again = await reserve_points(s, ledger, hold(), now, principal=checkout.principal)
    assert again.replayed and again.id == view.id
    with pytest.raises(Conflict):
        await reserve_points(s, ledger, hold(points=301), now, principal=checkout.principal)
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    captured = await capture_hold(
        s, ledger, uuid.UUID(view.id), CaptureRequest(points=200), now, principal=checkout.principal
    )
    await s.commit()
    assert (captured.status, captured.captured_points) == ("captured", 200)
    assert await wallet(ledger, checkout.member) == (800, 0)
    assert await accepted(ledger, checkout.program, checkout.partner) == (0, 200)
    [event] = await events_of(pool, events.POINTS_ACCEPTED, view.id)
    assert event["points"] == 200 and event["checkout_id"] == "C-1"
    replay = await capture_hold(
        s, ledger, uuid.UUID(view.id), CaptureRequest(), now, principal=checkout.principal
    )
    assert replay.replayed and replay.captured_points == 200


async def test_a_capture_beyond_the_hold_is_refused(checkout: Checkout, ledger: Ledger) -> None:
    s, now = checkout.session, datetime.now(UTC)
    view = await reserve_points(s, ledger, hold(), now, principal=checkout.principal)
    await s.commit()
    with pytest.raises(CaptureExceedsHold):
        await capture_hold(
            s,
            ledger,
            uuid.UUID(view.id),
            CaptureRequest(points=301),
            now,
            principal=checkout.principal,
        )
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    assert (await get_hold(s, uuid.UUID(view.id), now, principal=checkout.principal)).status == (
        "held"
    )


async def test_a_release_gives_the_points_back(checkout: Checkout, ledger: Ledger) -> None:
    s, now = checkout.session, datetime.now(UTC)
    view = await reserve_points(s, ledger, hold(), now, principal=checkout.principal)
    await s.commit()
    released = await release_hold(s, ledger, uuid.UUID(view.id), now, principal=checkout.principal)
    await s.commit()
    assert released.status == "released"
    assert await wallet(ledger, checkout.member) == (1000, 0)
    with pytest.raises(HoldClosed):
        await capture_hold(
            s, ledger, uuid.UUID(view.id), CaptureRequest(), now, principal=checkout.principal
        )
    await rollback(s, checkout.program, checkout.partner, checkout.member)


async def test_an_unresolved_hold_times_out(
    checkout: Checkout, ledger: Ledger, pool: asyncpg.Pool
) -> None:
    s, now = checkout.session, datetime.now(UTC)
    view = await reserve_points(
        s, ledger, hold(timeout_seconds=60), now, principal=checkout.principal
    )
    await s.commit()
    later = now + timedelta(seconds=61)
    read = await get_hold(s, uuid.UUID(view.id), later, principal=checkout.principal)
    assert read.status == "expired"
    # What the expire-pending-transfers job does once the minute is over,
    # for this hold alone (the job sweeps the whole shared database).
    pending = await pool.fetchval(
        "SELECT transfer_id FROM partner_holds WHERE id = $1", uuid.UUID(view.id)
    )
    [voided] = await ledger.create_transfers(
        [
            Transfer(
                id=expiry_transfer_id(pending),
                pending_id=pending,
                flags=TransferFlags.VOID_PENDING,
                metadata={"reason": "expired"},
            )
        ]
    )
    assert voided.ok
    assert await wallet(ledger, checkout.member) == (1000, 0)
    with pytest.raises(HoldClosed):
        await capture_hold(
            s, ledger, uuid.UUID(view.id), CaptureRequest(), later, principal=checkout.principal
        )
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    assert (await get_hold(s, uuid.UUID(view.id), later, principal=checkout.principal)).status == (
        "expired"
    )
    assert await accepted(ledger, checkout.program, checkout.partner) == (0, 0)


async def test_refunds_never_exceed_the_capture(
    checkout: Checkout, ledger: Ledger, pool: asyncpg.Pool
) -> None:
    s, now = checkout.session, datetime.now(UTC)
    view = await reserve_points(s, ledger, hold(points=100), now, principal=checkout.principal)
    await s.commit()
    hold_id = uuid.UUID(view.id)
    with pytest.raises(RefundExceedsCapture):
        await refund_hold(
            s,
            ledger,
            hold_id,
            RefundRequest(refund_id="R-0", points=1),
            now,
            principal=checkout.principal,
        )
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    await capture_hold(s, ledger, hold_id, CaptureRequest(), now, principal=checkout.principal)
    await s.commit()
    first = await refund_hold(
        s,
        ledger,
        hold_id,
        RefundRequest(refund_id="R-1", points=60),
        now,
        principal=checkout.principal,
    )
    await s.commit()
    assert (first.points, first.hold.refunded_points) == (60, 60)
    with pytest.raises(RefundExceedsCapture):
        await refund_hold(
            s,
            ledger,
            hold_id,
            RefundRequest(refund_id="R-2", points=41),
            now,
            principal=checkout.principal,
        )
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    again = await refund_hold(
        s,
        ledger,
        hold_id,
        RefundRequest(refund_id="R-1", points=60),
        now,
        principal=checkout.principal,
    )
    assert again.replayed and again.id == first.id
    last = await refund_hold(
        s,
        ledger,
        hold_id,
        RefundRequest(refund_id="R-3", points=40),
        now,
        principal=checkout.principal,
    )
    await s.commit()
    assert last.hold.refunded_points == 100
    assert await wallet(ledger, checkout.member) == (1000, 0)
    assert await accepted(ledger, checkout.program, checkout.partner) == (0, 0)
    assert len(await events_of(pool, events.POINTS_REFUNDED, view.id)) == 2


async def test_a_hold_beyond_the_wallet_writes_nothing(
    checkout: Checkout, ledger: Ledger, pool: asyncpg.Pool
) -> None:
    s, now = checkout.session, datetime.now(UTC)
    with pytest.raises(InsufficientPoints):
        await reserve_points(s, ledger, hold(points=1001), now, principal=checkout.principal)
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    assert not await pool.fetchval(
        "SELECT count(*) FROM partner_holds WHERE program_id = $1", checkout.program.id
    )
    assert await wallet(ledger, checkout.member) == (1000, 0)


async def test_another_partners_hold_is_not_found(
    checkout: Checkout, ledger: Ledger, new_partner: NewPartner
) -> None:
    s, now = checkout.session, datetime.now(UTC)
    view = await reserve_points(s, ledger, hold(), now, principal=checkout.principal)
    await s.commit()
    stranger = partner_principal(await new_partner(checkout.program))
    for attempt in (
        get_hold(s, uuid.UUID(view.id), now, principal=stranger),
        capture_hold(s, ledger, uuid.UUID(view.id), CaptureRequest(), now, principal=stranger),
        release_hold(s, ledger, uuid.UUID(view.id), now, principal=stranger),
    ):
        with pytest.raises(NotFound):
            await attempt
    await rollback(s, checkout.program, checkout.partner, checkout.member)
    assert (await get_hold(s, uuid.UUID(view.id), now, principal=checkout.principal)).status == (
        "held"
    )


async def test_an_issuer_only_contract_accepts_nothing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner, roles="issuer")
    with pytest.raises(ContractRoleMissing):
        await reserve_points(
            session, ledger, hold(), datetime.now(UTC), principal=partner_principal(partner)
        )
    await session.rollback()
