"""Points accepted as payment at a partner's checkout: a two-phase hold.

Reserve is a pending ledger transfer from the member's wallet to the
contract holder's acceptance account; capture posts it (in full or in
part), release voids it, and a hold left unresolved times out (the
ledger's ``expire_pending`` job voids it; the row reads ``expired``). A
refund after capture gives points back from the acceptance account, never
more than the hold captured less its refunds: checked under the hold's row
lock, and bounded by the ledger too (the acceptance account cannot go
below zero). A leaving holder's holds are captured and refunded up to its
valuation instant, when its final statement's period ends; releasing
(which moves no posted point) is always allowed.

Each use case writes its row, audit line and outbox event in the session's
transaction and calls the ledger last, inside it
(``create_transfers_within``): all commit together or not at all.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import audit, outbox
from core.codes import TransferCode, derived_id
from core.errors import Conflict, NotFound
from core.members import lock_member
from core.models import Member, Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from ledger import Ledger, Transfer, TransferFlags
from partners import events
from partners.acting import partner_of, resolve
from partners.coalition_errors import RefundExceedsCapture
from partners.coalition_models import ContractRoles, HoldStatus, PartnerHold, PartnerRefund
from partners.coalition_schemas import (
    CaptureRequest,
    CheckoutHold,
    PartnerHoldView,
    RefundRequest,
    RefundView,
)
from partners.contracts import acceptance_account
from partners.departure_errors import PartnerDeparted
from partners.departure_models import PartnerDeparture
from partners.models import Partner
from rewards.connections import session_connection
from rewards.errors import CaptureExceedsHold, HoldClosed, InsufficientPoints, LedgerRefused

_JSON = msgspec.json.Encoder()


class _Found(msgspec.Struct, kw_only=True):
    """A hold with what its view and its movements need."""

    hold: PartnerHold
    program: Program
    company: str
    holder: str
    external_id: str
    wallet_account_id: uuid.UUID
    #: The holder's valuation instant, if it is leaving.
    valuation_at: datetime | None = None


def _digest(request: CheckoutHold, company: str) -> bytes:
    fields = msgspec.to_builtins(request)
    fields["company"] = company
    return hashlib.sha256(_JSON.encode(fields)).digest()


async def reserve_points(
    session: AsyncSession,
    ledger: Ledger,
    request: CheckoutHold,
    now: datetime,
    *,
    principal: Principal,
) -> PartnerHoldView:
    """Hold the member's points for a checkout, for a partner principal with
    ``points:redeem`` whose contract in force accepts points. Idempotent by
    ``checkout_id`` (per contract holder)."""
    principal.require("points:redeem")
    acting = await resolve(
        await session_connection(session),
        principal,
        company=request.company,
        member=request.member,
        identifier=request.identifier,
        at=now,
        role=ContractRoles.ACCEPTOR,
    )
    # Every movement out of a wallet is under the member's lock; a
    # duplicate sent at the same moment waits here, then finds the first.
    await lock_member(session, acting.member_id)
    digest = _digest(request, acting.company_slug)
    earlier = await session.scalar(
        select(PartnerHold.id).where(
            PartnerHold.partner_id == acting.holder_id,
            PartnerHold.checkout_id == request.checkout_id,
        )
    )
    if earlier is not None:
        found = await _find(session, principal, earlier)
        if found.hold.request_digest != digest:
            raise Conflict(f"checkout {request.checkout_id!r} was held with other fields")
        return _view(found, now, replayed=True)
    program = await session.get_one(Program, acting.program_id)
    transfer_id = derived_id(
        acting.program_id, "partner-hold", str(acting.holder_id), request.checkout_id
    )
    hold = PartnerHold(
        program_id=acting.program_id,
        partner_id=acting.holder_id,
        company_id=acting.company_id,
        checkout_id=request.checkout_id,
        member_id=acting.member_id,
        identifier=request.identifier,
        points=request.points,
        status=HoldStatus.HELD,
        captured_points=0,
        refunded_points=0,
        expires_at=now + timedelta(seconds=request.timeout_seconds),
        contract_version=acting.contract_version,
        transfer_id=transfer_id,
        request_digest=digest,
    )
    session.add(hold)
    await session.flush()
    found = _Found(
        hold=hold,
        program=program,
        company=acting.company_slug,
        holder=acting.holder_slug,
        external_id=acting.external_id,
        wallet_account_id=acting.wallet_account_id,
    )
    await _audit(session, principal, found, "partner.hold", {"points": request.points})
    await _move(
        session,
        ledger,
        Transfer(
            id=transfer_id,
            debit_account_id=acting.wallet_account_id,
            credit_account_id=acceptance_account(program, acting.holder_id),
            amount=request.points,
            ledger=acting.ledger_id,
            code=TransferCode.PARTNER_ACCEPTANCE,
            flags=TransferFlags.PENDING,
            timeout=request.timeout_seconds,
            metadata={
                "partner": acting.holder_slug,
                "company": acting.company_slug,
                "partner_name": acting.company_name,
                "checkout_id": request.checkout_id,
            },
        ),
        insufficient=f"the member does not hold {request.points} points",
    )
    return _view(found, now)


async def capture_hold(
    session: AsyncSession,
    ledger: Ledger,
    hold_id: uuid.UUID,
    request: CaptureRequest,
    now: datetime,
    *,
    principal: Principal,
) -> PartnerHoldView:
    """Take the held points (all, or ``points`` of them; the rest go back),
    audited, with a ``partner.points_accepted`` event. A capture of a hold
    captured already answers it (``replayed``)."""
    principal.require("points:redeem")
    found = await _find(session, principal, hold_id, lock=True)
    hold = found.hold
    if hold.status == HoldStatus.CAPTURED:
        return _view(found, now, replayed=True)
    if hold.status == HoldStatus.RELEASED:
        raise HoldClosed("the hold was released")
    _refuse_after_valuation(found, now)
    points = request.points or hold.points
    if points > hold.points:
        raise CaptureExceedsHold(f"only {hold.points} points are held")
    hold.status, hold.captured_points = HoldStatus.CAPTURED, points
    await session.flush()
    await _audit(session, principal, found, "partner.hold.capture", {"points": points})
    await outbox.emit(
        session,
        events.POINTS_ACCEPTED,
        events.subject(hold.company_id),
        _event(found, points=points),
    )
    await _resolve(session, ledger, found, TransferFlags.POST_PENDING, points)
    return _view(found, now)


async def release_hold(
    session: AsyncSession,
    ledger: Ledger,
    hold_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> PartnerHoldView:
    """Give the held points back, audited; a released hold answers itself."""
    principal.require("points:redeem")
    found = await _find(session, principal, hold_id, lock=True)
    hold = found.hold
    if hold.status == HoldStatus.RELEASED:
        return _view(found, now, replayed=True)
    if hold.status == HoldStatus.CAPTURED:
        raise HoldClosed("the hold was captured: refund it instead")
    hold.status = HoldStatus.RELEASED
    await session.flush()
    await _audit(session, principal, found, "partner.hold.release", None)
    await _resolve(session, ledger, found, TransferFlags.VOID_PENDING, 0)
    return _view(found, now)


async def refund_hold(
    session: AsyncSession,
    ledger: Ledger,
    hold_id: uuid.UUID,
    request: RefundRequest,
    now: datetime,
    *,
    principal: Principal,
) -> RefundView:
    """Give captured points back to the member, audited, with a
    ``partner.points_refunded`` event. Idempotent by ``refund_id`` (per
    hold); never beyond what the hold captured less its refunds."""
    principal.require("points:redeem")
    found = await _find(session, principal, hold_id, lock=True)
    hold = found.hold
    earlier = await session.scalar(
        select(PartnerRefund).where(
            PartnerRefund.hold_id == hold.id, PartnerRefund.refund_id == request.refund_id
        )
    )
    if earlier is not None:
        if earlier.points != request.points:
            raise Conflict(f"refund {request.refund_id!r} was made with other points")
        return _refund_view(earlier, found, now, replayed=True)
    _refuse_after_valuation(found, now)
    left = hold.captured_points - hold.refunded_points
    if request.points > left:
        raise RefundExceedsCapture(
            f"the hold captured {hold.captured_points} points, {hold.refunded_points} of them"
            f" refunded: at most {left} can be refunded"
        )
    transfer_id = derived_id(hold.program_id, "partner-refund", str(hold.id), request.refund_id)
    refund = PartnerRefund(
        program_id=hold.program_id,
        partner_id=hold.partner_id,
        hold_id=hold.id,
        refund_id=request.refund_id,
        points=request.points,
        transfer_id=transfer_id,
    )
    session.add(refund)
    hold.refunded_points += request.points
    await session.flush()
    await _audit(
        session,
        principal,
        found,
        "partner.hold.refund",
        {"refund_id": request.refund_id, "points": request.points},
    )
    await outbox.emit(
        session,
        events.POINTS_REFUNDED,
        events.subject(hold.company_id),
        _event(found, points=request.points, refund_id=request.refund_id),
    )
    program = found.program
    await _move(
        session,
        ledger,
        Transfer(
            id=transfer_id,
            debit_account_id=acceptance_account(program, hold.partner_id),
            credit_account_id=found.wallet_account_id,
            amount=request.points,
            ledger=program.ledger_id,
            code=TransferCode.PARTNER_ACCEPTANCE_REFUND,
            metadata={
                "partner": found.holder,
                "company": found.company,
                "checkout_id": hold.checkout_id,
                "refund_id": request.refund_id,
                # Back to the lots the capture consumed, with their expiry.
                "restores": str(derived_id(hold.program_id, "partner-capture", str(hold.id))),
            },
        ),
        exceeds=RefundExceedsCapture("the partner's acceptance account holds fewer points"),
    )
    return _refund_view(refund, found, now)


async def get_hold(
    session: AsyncSession, hold_id: uuid.UUID, now: datetime, *, principal: Principal
) -> PartnerHoldView:
    return _view(await _find(session, principal, hold_id), now)


#: A hold's row with what its view and its movements need (``_Found``).
_HoldColumns = tuple[PartnerHold, Program, str, str, str, uuid.UUID, datetime]


async def list_holds(
    session: AsyncSession,
    now: datetime,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[PartnerHoldView]:
    """The holds of the companies within the principal's reach, newest first."""
    query = _holds_within_reach(principal)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(PartnerHold.id < after)
    rows = (await session.execute(query.order_by(PartnerHold.id.desc()).limit(limit + 1))).all()
    found = [_found_of(row) for row in rows]
    return page_of([_view(f, now) for f in found], [f.hold.id for f in found], limit)


async def _find(
    session: AsyncSession, principal: Principal, hold_id: uuid.UUID, *, lock: bool = False
) -> _Found:
    """The hold of a company within the principal's reach (others are not
    found), locked for a change when ``lock``."""
    query = _holds_within_reach(principal).where(PartnerHold.id == hold_id)
    if lock:
        query = query.with_for_update(of=PartnerHold).execution_options(populate_existing=True)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise NotFound(f"no hold {hold_id}")
    return _found_of(row)


def _holds_within_reach(principal: Principal) -> Select[*_HoldColumns]:
    """Holds of the principal's program at the companies within its reach,
    with what a view and a movement need."""
    program_id, _ = partner_of(principal)
    company, holder = aliased(Partner), aliased(Partner)
    return (
        select(
            PartnerHold,
            Program,
            company.slug,
            holder.slug,
            Member.external_id,
            Member.wallet_account_id,
            PartnerDeparture.valuation_at,
        )
        .join(Program, Program.id == PartnerHold.program_id)
        .join(company, company.id == PartnerHold.company_id)
        .join(holder, holder.id == PartnerHold.partner_id)
        .join(Member, Member.id == PartnerHold.member_id)
        .outerjoin(PartnerDeparture, PartnerDeparture.partner_id == PartnerHold.partner_id)
        .where(
            PartnerHold.program_id == program_id,
            PartnerHold.company_id.in_(principal.partner_ids),
        )
    )


def _found_of(row: Row[*_HoldColumns]) -> _Found:
    hold, program, company_slug, holder_slug, external_id, wallet, valuation_at = row
    return _Found(
        hold=hold,
        program=program,
        company=company_slug,
        holder=holder_slug,
        external_id=external_id,
        wallet_account_id=wallet,
        valuation_at=valuation_at,
    )


def _refuse_after_valuation(found: _Found, now: datetime) -> None:
    """Points move at a leaving holder's tills up to its valuation instant:
    its final statement counts them all."""
    if found.valuation_at is not None and now >= found.valuation_at:
        raise PartnerDeparted(
            f"partner {found.holder!r} left the coalition at {found.valuation_at.isoformat()}:"
            " its holds can be released, no longer captured or refunded"
        )


async def _audit(
    session: AsyncSession, principal: Principal, found: _Found, action: str, details: Any
) -> None:
    subject = f"program:{found.program.slug}:partner:{found.holder}:hold:{found.hold.checkout_id}"
    await audit.record(session, principal, action, subject, details)


def _event(found: _Found, **fields: Any) -> dict[str, Any]:
    hold = found.hold
    return {
        "hold_id": str(hold.id),
        "checkout_id": hold.checkout_id,
        # As the partner named the member.
        "member": None if hold.identifier else found.external_id,
        "identifier": hold.identifier,
        "company": found.company,
        "partner": found.holder,
        **fields,
    }


async def _resolve(
    session: AsyncSession, ledger: Ledger, found: _Found, flags: TransferFlags, points: int
) -> None:
    kind = "capture" if flags == TransferFlags.POST_PENDING else "release"
    [outcome] = await ledger.create_transfers_within(
        await session_connection(session),
        [
            Transfer(
                id=derived_id(found.hold.program_id, f"partner-{kind}", str(found.hold.id)),
                pending_id=found.hold.transfer_id,
                flags=flags,
                amount=points,
            )
        ],
    )
    if outcome.result in ("ok", "exists"):
        return
    if kind == "release" and outcome.result == "pending_already_voided":
        return  # the sweeper released it first: the same end
    if outcome.result in ("pending_expired", "pending_already_voided", "pending_already_posted"):
        raise HoldClosed(f"the hold is closed ({outcome.result})")
    raise LedgerRefused(f"ledger refused: {outcome.result}")


async def _move(
    session: AsyncSession,
    ledger: Ledger,
    transfer: Transfer,
    *,
    insufficient: str | None = None,
    exceeds: Exception | None = None,
) -> None:
    # Last in each use case: from the ledger call to the commit the
    # transaction holds the program ledger's lock.
    [outcome] = await ledger.create_transfers_within(await session_connection(session), [transfer])
    if outcome.result in ("ok", "exists"):
        return
    if outcome.result == "exceeds_credits":
        if insufficient is not None:
            raise InsufficientPoints(insufficient)
        if exceeds is not None:
            raise exceeds
    raise LedgerRefused(f"ledger refused: {outcome.result}")


def _view(found: _Found, now: datetime, *, replayed: bool = False) -> PartnerHoldView:
    hold = found.hold
    status = hold.status
    if status == HoldStatus.HELD and hold.expires_at <= now:
        status = "expired"
    return PartnerHoldView(
        id=str(hold.id),
        checkout_id=hold.checkout_id,
        member=None if hold.identifier else found.external_id,
        identifier=hold.identifier,
        points=hold.points,
        status=status,
        captured_points=hold.captured_points,
        refunded_points=hold.refunded_points,
        expires_at=hold.expires_at,
        company=found.company,
        partner=found.holder,
        contract_version=hold.contract_version,
        replayed=replayed,
    )


def _refund_view(
    refund: PartnerRefund, found: _Found, now: datetime, *, replayed: bool = False
) -> RefundView:
    return RefundView(
        id=str(refund.id),
        refund_id=refund.refund_id,
        points=refund.points,
        hold=_view(found, now),
        replayed=replayed,
    )
