"""Exchange agreements between two programs, as their operators make them:
one program proposes (the agreement with its first rate version, or a new
rate version), the other accepts; the accepted version with the latest
start not after a moment is the one in force then.

Both operators agree to every rate: a version takes effect only once the
program that did not propose it accepts it, and never before that
acceptance (conversions already made keep their rate). An operator acts for
the program of its path, looked up within its tenant; the agreement is
found only through a program that is one of its two parties, so a key of a
third program finds nothing (404, as for an agreement that does not exist).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import AccountCode, exchange_account_id
from core.errors import AlreadyExists, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from core.programs import lock_program
from ledger import Account, Ledger
from partners.exchange_errors import ExchangeProposalOwn, InvalidExchangeTerms
from partners.exchange_models import (
    AgreementStatus,
    ExchangeAgreement,
    ExchangeRateVersion,
    RateStatus,
)
from partners.exchange_schemas import (
    AgreementProposal,
    AgreementView,
    ExchangePosition,
    ExchangeTerms,
    PositionSide,
    RateProposal,
    RateVersionView,
)
from rewards.errors import LedgerRefused


def check_terms(terms: ExchangeTerms) -> None:
    """Terms two programs can agree: at least one direction open, bounds
    that admit an amount, and no round trip that creates points (the two
    rates' product at most 1: with rounding down, a member who converts
    there and back never ends with more than they started with)."""
    directions = [d for d in (terms.outbound, terms.inbound) if d is not None]
    if not directions:
        raise InvalidExchangeTerms("terms: open at least one direction (outbound or inbound)")
    for name, direction in (("outbound", terms.outbound), ("inbound", terms.inbound)):
        if direction is None:
            continue
        if direction.min_points > direction.max_points:
            raise InvalidExchangeTerms(f"terms.{name}: min_points is above max_points")
        if direction.min_points > direction.daily_cap:
            raise InvalidExchangeTerms(f"terms.{name}: min_points is above the daily_cap")
        if direction.min_points * direction.receive < direction.give:
            raise InvalidExchangeTerms(
                f"terms.{name}: min_points must buy at least one point"
                f" ({direction.give} for {direction.receive})"
            )
    if terms.outbound is not None and terms.inbound is not None:
        out, back = terms.outbound, terms.inbound
        if out.receive * back.receive > out.give * back.give:
            raise InvalidExchangeTerms(
                "terms: converting there and back would create points (the product of the"
                " two rates, receive/give, must be at most 1)"
            )


async def propose_agreement(
    session: AsyncSession,
    program: Program,
    proposal: AgreementProposal,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[AgreementView, bool]:
    """Propose an exchange agreement to another program, with version 1 of
    its rates; and whether it is new. The same proposal again answers it
    and writes nothing; any other while the pair has an agreement is 409
    ``already-exists`` (a new rate version is proposed on the agreement).

    The counterparty is named by slug, the one look-up across tenants here:
    it tells only whether a program of that slug exists."""
    _require_party(principal, program)
    check_terms(proposal.terms)
    counterparty = await session.scalar(
        select(Program).where(Program.slug == proposal.counterparty)
    )
    if counterparty is None:
        raise NotFound(f"no program {proposal.counterparty!r} to exchange points with")
    if counterparty.id == program.id:
        raise InvalidExchangeTerms("counterparty: a program exchanges points with another program")
    # Both programs' locks, in id order: two proposals of one pair at once
    # (from either side) meet here, and the second finds the first.
    for each in sorted((program, counterparty), key=lambda p: p.id):
        await lock_program(session, each)
    low, high = sorted((program.id, counterparty.id))
    stored = proposal.terms.stored(program.id, counterparty.id)
    existing = await session.scalar(
        select(ExchangeAgreement).where(
            ExchangeAgreement.program_a_id == low, ExchangeAgreement.program_b_id == high
        )
    )
    if existing is not None:
        first = await _version(session, existing, 1)
        if (
            existing.proposed_by_program_id == program.id
            and first.terms == stored
            and first.effective_from == proposal.effective_from
        ):
            return await _view(session, existing, program, now), False
        raise AlreadyExists(
            f"programs {program.slug!r} and {counterparty.slug!r} have an exchange agreement"
            f" ({existing.id}): propose a rate version on it",
            field="counterparty",
        )
    agreement = ExchangeAgreement(
        id=uuid.uuid4(),
        program_a_id=low,
        program_b_id=high,
        proposed_by_program_id=program.id,
        status=AgreementStatus.PROPOSED,
    )
    session.add(agreement)
    await session.flush()
    first = ExchangeRateVersion(
        agreement_id=agreement.id,
        version=1,
        status=RateStatus.PROPOSED,
        proposed_by_program_id=program.id,
        proposed_by=principal.actor,
        effective_from=proposal.effective_from,
        terms=stored,
    )
    session.add(first)
    await session.flush()
    await audit.record(
        session,
        principal,
        "exchange.propose",
        _subject(program, agreement),
        {"counterparty": counterparty.slug, "terms": proposal.terms, "version": 1},
    )
    return await _view(session, agreement, program, now), True


async def propose_rates(
    session: AsyncSession,
    program: Program,
    agreement_id: uuid.UUID,
    proposal: RateProposal,
    *,
    principal: Principal,
) -> tuple[RateVersionView, bool]:
    """Propose a new rate version, for the other program to accept; and
    whether it is new. The same proposal as the latest version, still
    awaiting acceptance, answers that version and writes nothing."""
    agreement = await _agreement(session, principal, program, agreement_id, lock=True)
    check_terms(proposal.terms)
    stored = proposal.terms.stored(program.id, agreement.other(program.id))
    latest = await session.scalar(
        select(ExchangeRateVersion)
        .where(ExchangeRateVersion.agreement_id == agreement.id)
        .order_by(ExchangeRateVersion.version.desc())
        .limit(1)
    )
    assert latest is not None  # an agreement is proposed with its version 1
    if (
        latest.status == RateStatus.PROPOSED
        and latest.proposed_by_program_id == program.id
        and latest.terms == stored
        and latest.effective_from == proposal.effective_from
    ):
        return await _version_view(session, latest, program, agreement), False
    version = ExchangeRateVersion(
        agreement_id=agreement.id,
        version=latest.version + 1,
        status=RateStatus.PROPOSED,
        proposed_by_program_id=program.id,
        proposed_by=principal.actor,
        effective_from=proposal.effective_from,
        terms=stored,
    )
    session.add(version)
    await session.flush()
    await audit.record(
        session,
        principal,
        "exchange.rates.propose",
        f"{_subject(program, agreement)}:rates:{version.version}",
        {"terms": proposal.terms, "effective_from": proposal.effective_from},
    )
    return await _version_view(session, version, program, agreement), True


async def accept_rates(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    agreement_id: uuid.UUID,
    number: int,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[RateVersionView, bool]:
    """Accept the other program's rate version: in force from the start it
    asked, or from now if that has passed; and whether it is new (an
    accepted version answers as it is). The first acceptance makes the
    agreement active and opens both exchange accounts."""
    agreement = await _agreement(session, principal, program, agreement_id, lock=True)
    version = await _version(session, agreement, number)
    if version.status == RateStatus.ACCEPTED:
        return await _version_view(session, version, program, agreement), False
    if version.proposed_by_program_id == program.id:
        raise ExchangeProposalOwn(
            f"version {number} was proposed by {program.slug!r}: the other program accepts it"
        )
    # Opened on their own (idempotent ids) before the rows commit: a retry
    # after a failure in between finds them open.
    await open_exchange_accounts(session, ledger, agreement)
    asked = version.effective_from
    version.status = RateStatus.ACCEPTED
    version.in_force_from = asked if asked is not None and asked > now else now
    version.accepted_by = principal.actor
    if agreement.status == AgreementStatus.PROPOSED:
        agreement.status = AgreementStatus.ACTIVE
        agreement.accepted_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "exchange.rates.accept",
        f"{_subject(program, agreement)}:rates:{number}",
        {"in_force_from": version.in_force_from},
    )
    return await _version_view(session, version, program, agreement), True


async def open_exchange_accounts(
    session: AsyncSession, ledger: Ledger, agreement: ExchangeAgreement
) -> None:
    """Each program's exchange account for the other, on its own ledger."""
    a = await session.get_one(Program, agreement.program_a_id)
    b = await session.get_one(Program, agreement.program_b_id)
    outcomes = await ledger.create_accounts(
        [
            Account(
                id=exchange_account_id(one.id, other.id),
                ledger=one.ledger_id,
                code=AccountCode.PARTNER_EXCHANGE,
            )
            for one, other in ((a, b), (b, a))
        ]
    )
    refused = [o for o in outcomes if o.result not in ("ok", "exists")]
    if refused:
        raise LedgerRefused(f"ledger refused account {refused[0].id}: {refused[0].result}")


async def list_agreements(
    session: AsyncSession,
    program: Program,
    now: datetime,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None = None,
) -> Page[AgreementView]:
    """The program's agreements (proposed by it or to it), newest first."""
    _require_party(principal, program)
    after = decode_cursor(cursor)
    query = (
        select(ExchangeAgreement)
        .where(_party(program.id))
        .order_by(ExchangeAgreement.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(ExchangeAgreement.id < after)
    agreements = list(await session.scalars(query))
    views = [await _view(session, a, program, now) for a in agreements]
    return page_of(views, [a.id for a in agreements], limit)


async def get_agreement(
    session: AsyncSession,
    program: Program,
    agreement_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> AgreementView:
    agreement = await _agreement(session, principal, program, agreement_id)
    return await _view(session, agreement, program, now)


async def exchange_position(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    agreement_id: uuid.UUID,
    *,
    principal: Principal,
) -> ExchangePosition:
    """What each program owes the other, from the balances of its exchange
    account for the other (in its own points)."""
    agreement = await _agreement(session, principal, program, agreement_id)
    other = await session.get_one(Program, agreement.other(program.id))
    ids = [exchange_account_id(program.id, other.id), exchange_account_id(other.id, program.id)]
    # Not opened until the first acceptance: nothing moved yet.
    states = {s.id: s for s in await ledger.lookup_accounts(ids)}

    def side(of: Program, account_id: uuid.UUID) -> PositionSide:
        state = states.get(account_id)
        sent = state.credits_posted if state is not None else 0
        received = state.debits_posted if state is not None else 0
        return PositionSide(
            program=of.slug,
            account_id=account_id,
            sent_points=sent,
            received_points=received,
            owed_points=sent - received,
        )

    return ExchangePosition(
        agreement=agreement.id, program=side(program, ids[0]), counterparty=side(other, ids[1])
    )


async def version_in_force(
    session: AsyncSession, agreement: ExchangeAgreement, at: datetime
) -> ExchangeRateVersion | None:
    """The accepted version with the latest start not after ``at``."""
    return await session.scalar(
        select(ExchangeRateVersion)
        .where(
            ExchangeRateVersion.agreement_id == agreement.id,
            ExchangeRateVersion.status == RateStatus.ACCEPTED,
            ExchangeRateVersion.in_force_from <= at,
        )
        .order_by(ExchangeRateVersion.in_force_from.desc(), ExchangeRateVersion.version.desc())
        .limit(1)
    )


def _party(program_id: uuid.UUID) -> ColumnElement[bool]:
    return or_(
        ExchangeAgreement.program_a_id == program_id,
        ExchangeAgreement.program_b_id == program_id,
    )


def _require_party(principal: Principal, program: Program) -> None:
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")


async def _agreement(
    session: AsyncSession,
    principal: Principal,
    program: Program,
    agreement_id: uuid.UUID,
    *,
    lock: bool = False,
) -> ExchangeAgreement:
    """The agreement, if ``program`` is one of its parties (and the
    principal's tenant): any other is not found."""
    _require_party(principal, program)
    query = select(ExchangeAgreement).where(
        ExchangeAgreement.id == agreement_id, _party(program.id)
    )
    if lock:
        # Versions are numbered and accepted one at a time per agreement.
        query = query.with_for_update().execution_options(populate_existing=True)
    agreement = await session.scalar(query)
    if agreement is None:
        raise NotFound(f"no exchange agreement {agreement_id} of program {program.slug!r}")
    return agreement


async def _version(
    session: AsyncSession, agreement: ExchangeAgreement, number: int
) -> ExchangeRateVersion:
    version = await session.scalar(
        select(ExchangeRateVersion).where(
            ExchangeRateVersion.agreement_id == agreement.id,
            ExchangeRateVersion.version == number,
        )
    )
    if version is None:
        raise NotFound(f"no rate version {number} of exchange agreement {agreement.id}")
    return version


def _subject(program: Program, agreement: ExchangeAgreement) -> str:
    return f"program:{program.slug}:exchange-agreement:{agreement.id}"


async def _slug(session: AsyncSession, program_id: uuid.UUID) -> str:
    return (await session.get_one(Program, program_id)).slug


async def _version_view(
    session: AsyncSession,
    version: ExchangeRateVersion,
    program: Program,
    agreement: ExchangeAgreement,
) -> RateVersionView:
    return RateVersionView(
        version=version.version,
        status=version.status,
        proposed_by=await _slug(session, version.proposed_by_program_id),
        effective_from=version.effective_from,
        in_force_from=version.in_force_from,
        terms=ExchangeTerms.of(version.terms, program.id, agreement.other(program.id)),
    )


async def _view(
    session: AsyncSession, agreement: ExchangeAgreement, program: Program, now: datetime
) -> AgreementView:
    versions = list(
        await session.scalars(
            select(ExchangeRateVersion)
            .where(ExchangeRateVersion.agreement_id == agreement.id)
            .order_by(ExchangeRateVersion.version)
        )
    )
    in_force = await version_in_force(session, agreement, now)
    return AgreementView(
        id=agreement.id,
        program=program.slug,
        counterparty=await _slug(session, agreement.other(program.id)),
        status=agreement.status,
        proposed_by=await _slug(session, agreement.proposed_by_program_id),
        accepted_at=agreement.accepted_at,
        version_in_force=in_force.version if in_force is not None else None,
        versions=[await _version_view(session, v, program, agreement) for v in versions],
    )
