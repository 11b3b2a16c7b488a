"""Exchange of points between programs against PostgreSQL: agreements both
operators make, conversions as two linked transfers on two ledgers (all or
nothing), rates in force by time, rounding, the daily cap under
concurrency, and the refusals that write nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import AccountCode, TransferCode, exchange_account_id
from core.errors import IdempotencyKeyReused, NotFound
from core.members import get_member
from core.models import Member, Program
from core.principal import ALL_SCOPES, Principal, PrincipalKind, member, system
from core.programs import get_program
from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags, check_invariants
from partners.exchange_agreements import (
    accept_rates,
    exchange_position,
    get_agreement,
    propose_agreement,
    propose_rates,
)
from partners.exchange_errors import (
    ExchangeAgreementNotActive,
    ExchangeCapExceeded,
    ExchangeClosed,
    ExchangeMemberNotEnrolled,
    ExchangeOutOfBounds,
    ExchangeProposalOwn,
    InvalidExchangeTerms,
)
from partners.exchange_models import Exchange
from partners.exchange_schemas import (
    AgreementProposal,
    AgreementView,
    DirectionTerms,
    ExchangeOutcome,
    ExchangeQuote,
    ExchangeRequest,
    ExchangeTerms,
    RateProposal,
)
from partners.exchanges import convert_points, list_exchanges, quote_exchange
from rewards.errors import InsufficientPoints
from rewards.programs import Enrolment, enrol_member
from tests.api.conftest import count_writes
from tests.conftest import NewProgram


def operator_of(program: Program) -> Principal:
    return Principal(
        kind=PrincipalKind.OPERATOR,
        actor=f"key:{program.slug}",
        scopes=frozenset({ALL_SCOPES}),
        program_id=program.id,
    )


def as_member(program: Program, external_id: str) -> Principal:
    return member(program.id, external_id)


async def enrolled(
    session: AsyncSession, ledger: Ledger, program: Program, name: str, points: int = 0
) -> Member:
    found, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=name), principal=system("test")
    )
    await session.commit()
    if points:
        [outcome] = await ledger.create_transfers(
            [
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=found.wallet_account_id,
                    amount=points,
                    ledger=program.ledger_id,
                    code=TransferCode.ADJUSTMENT,
                )
            ]
        )
        assert outcome.result == "ok"
    return found


def terms(
    give: int = 2,
    receive: int = 3,
    *,
    cap: int = 10_000,
    inbound: DirectionTerms | None = None,
    **bounds: int,
) -> ExchangeTerms:
    return ExchangeTerms(
        outbound=DirectionTerms(give=give, receive=receive, daily_cap=cap, **bounds),
        inbound=inbound,
    )


async def agreed(
    session: AsyncSession,
    ledger: Ledger,
    a: Program,
    b: Program,
    offer: ExchangeTerms,
    now: datetime,
) -> AgreementView:
    """A's proposal, accepted by B: in force from ``now``."""
    view, created = await propose_agreement(
        session,
        a,
        AgreementProposal(counterparty=b.slug, terms=offer),
        now,
        principal=operator_of(a),
    )
    assert created
    await accept_rates(session, ledger, b, view.id, 1, now, principal=operator_of(b))
    await session.commit()
    return view


async def wallet(ledger: Ledger, of: Member) -> int:
    [state] = await ledger.lookup_accounts([of.wallet_account_id])
    return state.credits_posted - state.debits_posted - state.debits_pending


Pair = tuple[Program, Program]

#: Converts in a session of its own, committed, as the member API does.
Convert = Callable[..., Awaitable[ExchangeOutcome]]


@pytest.fixture
def convert(engine: AsyncEngine, ledger: Ledger) -> Convert:
    async def run(
        program: Program,
        who: str,
        to: str,
        points: int,
        *,
        key: str | None = None,
        at: datetime | None = None,
        principal: Principal | None = None,
    ) -> ExchangeOutcome:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            found = await get_program(own, system("test"), program.slug)
            member = await get_member(own, found, who)
            outcome = await convert_points(
                own,
                ledger,
                found,
                member,
                key or uuid.uuid4().hex,
                ExchangeRequest(to_program=to, points=points),
                at or datetime.now(UTC),
                principal=principal or as_member(found, who),
            )
            await own.commit()
            return outcome

    return run


@pytest.fixture
def pair(new_program: NewProgram) -> Callable[..., Awaitable[Pair]]:
    async def make(**fields: Any) -> Pair:
        return await new_program(**fields), await new_program()

    return make


async def test_a_linked_chain_spanning_two_ledgers_posts_whole_or_not_at_all(
    ledger: Ledger, new_ledger: Callable[[], Awaitable[int]]
) -> None:
    one, two = await new_ledger(), await new_ledger()
    source, bridge_one = uuid.uuid4(), uuid.uuid4()
    bridge_two, bounded, target = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    issuance = uuid.uuid4()
    wallet_flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    opened = await ledger.create_accounts(
        [
            Account(id=issuance, ledger=one, code=1),
            Account(id=source, ledger=one, code=10, flags=wallet_flags),
            Account(id=bridge_one, ledger=one, code=AccountCode.PARTNER_EXCHANGE),
            Account(id=bridge_two, ledger=two, code=AccountCode.PARTNER_EXCHANGE),
            Account(id=bounded, ledger=two, code=10, flags=wallet_flags),
            Account(id=target, ledger=two, code=10, flags=wallet_flags),
        ]
    )
    assert all(o.result == "ok" for o in opened)
    [funded] = await ledger.create_transfers(
        [Transfer(id=uuid.uuid4(), debit_account_id=issuance, credit_account_id=source,
                  amount=100, ledger=one, code=1)]
    )  # fmt: skip
    assert funded.ok

    def chain(second_debit: uuid.UUID) -> list[Transfer]:
        return [
            Transfer(id=uuid.uuid4(), debit_account_id=source, credit_account_id=bridge_one,
                     amount=40, ledger=one, code=180, flags=TransferFlags.LINKED),
            Transfer(id=uuid.uuid4(), debit_account_id=second_debit, credit_account_id=target,
                     amount=60, ledger=two, code=180),
        ]  # fmt: skip

    # The second leg overdraws a bounded account of the other ledger: the
    # first, already applied in the batch, is rolled back with it.
    refused = await ledger.create_transfers(chain(bounded))
    assert [o.result for o in refused] == ["linked_event_failed", "exceeds_credits"]
    # A second leg naming an account that does not exist: the same.
    missing = await ledger.create_transfers(chain(uuid.uuid4()))
    assert [o.result for o in missing] == ["linked_event_failed", "debit_account_not_found"]
    states = {s.id: s for s in await ledger.lookup_accounts([source, bridge_one, target])}
    assert states[source].debits_posted == 0 and states[bridge_one].credits_posted == 0
    assert states[target].credits_posted == 0
    assert await ledger.lookup_transfers([t.id for t in chain(bounded)]) == []

    posted = await ledger.create_transfers(chain(bridge_two))
    assert [o.result for o in posted] == ["ok", "ok"]
    states = {s.id: s for s in await ledger.lookup_accounts([source, bridge_two, target])}
    assert (states[source].debits_posted, states[target].credits_posted) == (40, 60)
    assert states[bridge_two].debits_posted == 60
    assert await check_invariants(ledger.pool, one) == []
    assert await check_invariants(ledger.pool, two) == []


async def test_a_conversion_moves_both_ledgers_at_the_rate_rounded_down(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair()
    now = datetime.now(UTC)
    view = await agreed(session, ledger, a, b, terms(2, 3), now)
    ann_a = await enrolled(session, ledger, a, "ann", 100)
    ann_b = await enrolled(session, ledger, b, "ann")

    outcome = await convert(a, "ann", b.slug, 5, key="k1")

    # 5 points at 3 for 2 are 7.5: the member receives 7, the half is never made.
    assert (outcome.points, outcome.received_points, outcome.replayed) == (5, 7, False)
    assert (await wallet(ledger, ann_a), await wallet(ledger, ann_b)) == (95, 7)
    row = await session.get_one(Exchange, outcome.id)
    out_leg, in_leg = await ledger.lookup_transfers([row.out_transfer_id, row.in_transfer_id])
    assert (out_leg.ledger, out_leg.amount, out_leg.code) == (a.ledger_id, 5, 180)
    assert (out_leg.debit_account_id, out_leg.credit_account_id) == (
        ann_a.wallet_account_id,
        exchange_account_id(a.id, b.id),
    )
    assert (in_leg.ledger, in_leg.amount) == (b.ledger_id, 7)
    assert (in_leg.debit_account_id, in_leg.credit_account_id) == (
        exchange_account_id(b.id, a.id),
        ann_b.wallet_account_id,
    )
    position = await exchange_position(session, ledger, a, view.id, principal=operator_of(a))
    assert (position.program.sent_points, position.program.owed_points) == (5, 5)
    assert (position.counterparty.received_points, position.counterparty.owed_points) == (7, -7)
    seen_by_b = await exchange_position(session, ledger, b, view.id, principal=operator_of(b))
    assert (seen_by_b.program, seen_by_b.counterparty) == (position.counterparty, position.program)
    assert await check_invariants(ledger.pool, a.ledger_id) == []
    assert await check_invariants(ledger.pool, b.ledger_id) == []
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'exchange.convert' AND subject LIKE $1",
        f"program:{a.slug}:member:ann:exchange:%",
    )
    assert audited == 1

    # The same key again: the first answer, nothing moved twice.
    again = await convert(a, "ann", b.slug, 5, key="k1")
    assert again.replayed and again.id == outcome.id
    with pytest.raises(IdempotencyKeyReused):
        await convert(a, "ann", b.slug, 6, key="k1")
    assert (await wallet(ledger, ann_a), await wallet(ledger, ann_b)) == (95, 7)
    page = await list_exchanges(session, a, ann_a, principal=as_member(a, "ann"), limit=10)
    assert [e.id for e in page.items] == [outcome.id]


async def test_a_refused_conversion_writes_nothing_on_either_ledger(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair()
    now = datetime.now(UTC)
    await agreed(session, ledger, a, b, terms(1, 1), now)
    bo_a = await enrolled(session, ledger, a, "bo", 10)
    await enrolled(session, ledger, b, "bo")
    before = (await count_writes(pool, a.ledger_id), await count_writes(pool, b.ledger_id))

    with pytest.raises(InsufficientPoints):
        await convert(a, "bo", b.slug, 11, key="too-much")

    # Not even the refused ids are reserved: the same key works once the
    # wallet holds enough.
    assert (await count_writes(pool, a.ledger_id), await count_writes(pool, b.ledger_id)) == before
    rows = select(func.count()).select_from(Exchange).where(Exchange.member_id == bo_a.id)
    assert await session.scalar(rows) == 0
    await enrolled(session, ledger, a, "bo", 5)
    assert (await convert(a, "bo", b.slug, 11, key="too-much")).received_points == 11


async def test_the_rate_version_in_force_is_the_one_accepted_for_the_time(
    session: AsyncSession,
    ledger: Ledger,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair()
    now = datetime.now(UTC)
    view = await agreed(session, ledger, a, b, terms(1, 2), now)
    cy = await enrolled(session, ledger, a, "cy", 1000)
    await enrolled(session, ledger, b, "cy")
    later = now + timedelta(hours=1)
    # Proposed by B: A's members get 3 of B's for every 4, from an hour on
    # (from 2 points: 1 would buy nothing).
    back_terms = DirectionTerms(give=4, receive=3, daily_cap=10_000, min_points=2)
    v2, _ = await propose_rates(
        session,
        b,
        view.id,
        RateProposal(
            terms=ExchangeTerms(inbound=back_terms),
            effective_from=later,
        ),
        principal=operator_of(b),
    )
    assert v2.version == 2
    with pytest.raises(ExchangeProposalOwn):
        await accept_rates(session, ledger, b, view.id, 2, now, principal=operator_of(b))
    await accept_rates(session, ledger, a, view.id, 2, now, principal=operator_of(a))
    # A third version, never accepted, never applies.
    await propose_rates(
        session, a, view.id, RateProposal(terms=terms(1, 100)), principal=operator_of(a)
    )
    await session.commit()

    def quote_at(at: datetime) -> Awaitable[ExchangeQuote]:
        return quote_exchange(session, a, cy, b.slug, 10, at, principal=as_member(a, "cy"))

    before, after = await quote_at(now + timedelta(minutes=59)), await quote_at(later)
    assert (before.rate_version, before.received_points) == (1, 20)
    # 10 points at 3 for 4 are 7.5: 7.
    assert (after.rate_version, after.received_points, after.give, after.receive) == (2, 7, 4, 3)
    shown = await get_agreement(session, a, view.id, later, principal=operator_of(a))
    assert shown.version_in_force == 2
    assert [v.status for v in shown.versions] == ["accepted", "accepted", "proposed"]
    assert shown.versions[1].in_force_from == later
    # B reads the same version with the directions from its side.
    seen_by_b = await get_agreement(session, b, view.id, later, principal=operator_of(b))
    assert seen_by_b.versions[1].terms.outbound is None
    assert seen_by_b.versions[1].terms.inbound == back_terms
    converted = await convert(a, "cy", b.slug, 10, at=later)
    assert (converted.rate_version, converted.received_points) == (2, 7)


async def test_the_daily_cap_admits_exactly_what_fits_under_concurrency(
    session: AsyncSession,
    ledger: Ledger,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair()
    now = datetime.now(UTC)
    await agreed(session, ledger, a, b, terms(1, 1, cap=300), now)
    dee_a = await enrolled(session, ledger, a, "dee", 1000)
    dee_b = await enrolled(session, ledger, b, "dee")

    async def attempt(n: int) -> str:
        try:
            await convert(a, "dee", b.slug, 100, key=f"key-{n}", at=now)
        except ExchangeCapExceeded:
            return "capped"
        return "ok"

    results = await asyncio.gather(*(attempt(n) for n in range(10)))

    assert sorted(results) == ["capped"] * 7 + ["ok"] * 3
    assert (await wallet(ledger, dee_a), await wallet(ledger, dee_b)) == (700, 300)
    assert await check_invariants(ledger.pool, a.ledger_id) == []
    assert await check_invariants(ledger.pool, b.ledger_id) == []
    quote = await quote_exchange(session, a, dee_a, b.slug, 100, now, principal=as_member(a, "dee"))
    assert quote.converted_today == 300


async def test_the_cap_counts_the_source_programs_day(
    session: AsyncSession,
    ledger: Ledger,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair(time_zone="Africa/Johannesburg")  # UTC+2
    start = datetime(2030, 1, 1, 21, 30, tzinfo=UTC)  # 23:30 there
    await agreed(session, ledger, a, b, terms(1, 1, cap=100), datetime.now(UTC))
    await enrolled(session, ledger, a, "eli", 1000)
    await enrolled(session, ledger, b, "eli")

    await convert(a, "eli", b.slug, 100, at=start)
    with pytest.raises(ExchangeCapExceeded):
        await convert(a, "eli", b.slug, 100, at=start + timedelta(minutes=29))  # 23:59 there
    # 00:30 there on 2 January, still 1 January in UTC: a new day.
    assert (await convert(a, "eli", b.slug, 100, at=start + timedelta(hours=1))).points == 100


async def test_refusals_of_conversions(
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair()
    c = await new_program()
    now = datetime.now(UTC)
    await enrolled(session, ledger, a, "fay", 1000)
    await enrolled(session, ledger, b, "fay", 1000)
    await enrolled(session, ledger, c, "fay")
    await enrolled(session, ledger, a, "gus", 100)
    offer = terms(1, 1, min_points=10, max_points=50)
    proposed, _ = await propose_agreement(
        session,
        a,
        AgreementProposal(counterparty=b.slug, terms=offer),
        now,
        principal=operator_of(a),
    )
    await session.commit()

    with pytest.raises(ExchangeAgreementNotActive):
        await convert(a, "fay", b.slug, 20)
    await accept_rates(session, ledger, b, proposed.id, 1, now, principal=operator_of(b))
    await session.commit()
    # No agreement with C: not found, exactly as a program that does not exist.
    for nowhere in (c.slug, "no-such-program"):
        with pytest.raises(NotFound, match="has no exchange agreement"):
            await convert(a, "fay", nowhere, 20)
    # Only the outbound direction is open: B's members cannot convert into A.
    with pytest.raises(ExchangeClosed):
        await convert(b, "fay", a.slug, 20)
    for points in (9, 51):
        with pytest.raises(ExchangeOutOfBounds):
            await convert(a, "fay", b.slug, points)
    with pytest.raises(ExchangeMemberNotEnrolled):
        await convert(a, "gus", b.slug, 20)
    # A member principal of C acts in C only.
    with pytest.raises(NotFound):
        await convert(a, "fay", b.slug, 20, principal=as_member(c, "fay"))
    # A key of C finds nothing of the agreement of A and B.
    with pytest.raises(NotFound):
        await get_agreement(session, c, proposed.id, now, principal=operator_of(c))
    made = select(func.count()).select_from(Exchange).where(Exchange.program_id.in_([a.id, b.id]))
    assert await session.scalar(made) == 0
    assert (await convert(a, "fay", b.slug, 20)).received_points == 20


async def test_terms_that_cannot_be_agreed(
    session: AsyncSession, pair: Callable[..., Awaitable[Pair]]
) -> None:
    a, b = await pair()
    now = datetime.now(UTC)

    async def propose(offer: ExchangeTerms, to: str | None = None) -> tuple[AgreementView, bool]:
        # Refused before anything is written: the session goes on.
        return await propose_agreement(
            session,
            a,
            AgreementProposal(counterparty=to or b.slug, terms=offer),
            now,
            principal=operator_of(a),
        )

    back = DirectionTerms(give=1, receive=1, daily_cap=100)
    for offer in (
        ExchangeTerms(),  # no direction open
        terms(1, 1, min_points=20, max_points=10),
        terms(10, 1, min_points=5),  # 5 points buy nothing
        terms(1, 2, inbound=back),  # there and back doubles the points
    ):
        with pytest.raises(InvalidExchangeTerms):
            await propose(offer)
    with pytest.raises(InvalidExchangeTerms):
        await propose(terms(), to=a.slug)
    with pytest.raises(NotFound):
        await propose(terms(), to="no-such-program")
    # Fair both ways (2 for 1, then 1 for 2) is agreed; the same again answers it.
    fair = terms(2, 1, min_points=2, inbound=DirectionTerms(give=1, receive=2, daily_cap=100))
    first, created = await propose(fair)
    again, created_again = await propose(fair)
    assert (created, created_again, again.id) == (True, False, first.id)
    await session.commit()
