"""Recording purchases: each earns pending points (held until its return
window ends, see ``rewards.settlement``), counts towards tiers and threshold
rewards, is audited (``purchase.record``, by whoever reported it), and is
idempotent by its order id. The hot path of the intake (``api.intake``): a
fixed number of statements per batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode, derived_id
from core.errors import Conflict, DomainError, NotFound
from core.members import get_member, require_active
from core.models import Program
from core.principal import Principal
from ledger import Ledger, Transfer, TransferFlags, new_id
from rewards.connections import Connection, session_connection
from rewards.end_of_earning import EndOfEarning, end_of_earning
from rewards.errors import InvalidPurchase
from rewards.programs import record_transfers
from rewards.purchase_pricing import PricedPurchase, Threshold, parse_terms, price_and_count
from rewards.purchase_repository import (
    AuditRow,
    BatchMember,
    NewGrant,
    NewPurchase,
    RecordedPurchase,
    TierMove,
    read_batch,
    write_batch,
)
from rewards.purchases import PurchaseEvent, PurchaseOutcome

_JSON = msgspec.json.Encoder()


async def record_purchase(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    event: PurchaseEvent,
    now: datetime,
    *,
    principal: Principal,
    atomic: bool = False,
) -> PurchaseOutcome:
    """``record_purchases`` for one event reported by ``principal``, inside
    the session's transaction (``atomic``: the ledger transfers too, when
    nothing after this in the transaction waits on the ledger's writer)."""
    member = await get_member(session, program, event.member)
    [outcome] = await record_purchases(
        await session_connection(session),
        ledger,
        program,
        [event],
        now,
        principals=[principal],
        atomic=atomic,
    )
    if isinstance(outcome, Exception):
        raise outcome
    if not outcome.replayed:
        # The batch moved the tier with SQL: the session's copy must follow.
        await session.refresh(member, ["tier_code", "tier_since"])
    return outcome


async def record_purchases(
    connection: Connection,
    ledger: Ledger,
    program: Program,
    events: Sequence[PurchaseEvent],
    now: datetime,
    *,
    principals: Sequence[Principal],
    atomic: bool = False,
) -> list[PurchaseOutcome | DomainError]:
    """Price purchases with the rules in force at their time and hold their
    points as pending ledger transfers; count them towards tiers and
    threshold rewards. One answer per event, in order: an outcome, or the
    error of that event alone. The order id makes each idempotent.

    A fixed number of statements serves the whole batch, inside the caller's
    transaction; the caller commits. The members' rows are locked first, in
    the order of their external ids: purchases of one member are counted one
    transaction after another (a threshold crossed by concurrent purchases is
    seen by the last of them) and two batches cannot deadlock.

    The ledger is called last. With ``atomic``, on ``connection`` inside
    the caller's transaction: the batch commits whole or not at all, and the
    caller must then end its transaction without waiting on the ledger's
    writer (``Ledger.create_transfers_within``). Without, through the
    writer, which commits first: a crash before the caller's commit leaves a
    pending earning whose purchase is missing until the event is sent again,
    and the derived transfer id makes that retry converge.

    ``principals`` are the events' own, in order (the batch gathers
    requests of several callers): each new purchase's ``purchase.record``
    line names its event's principal. The lines go in with the batch's write
    statement (no round trip of their own), so a purchase is recorded with
    its line or not at all; a replay writes none.
    """
    if len(principals) != len(events):
        raise ValueError(f"{len(events)} events but {len(principals)} principals")
    read = await read_batch(
        connection,
        program.id,
        sorted({e.member for e in events}),
        sorted({e.order_id for e in events}),
    )
    members = {m.external_id: m for m in read.members}
    recorded = {r.order_id: r for r in read.recorded}
    # A sunset's end of earning refuses new purchases; replays still answer.
    ending = await end_of_earning(connection, program.id)
    answers: list[PurchaseOutcome | DomainError | None] = []
    fresh: list[tuple[int, PurchaseEvent, BatchMember]] = []
    claimed: dict[str, int] = {}
    for event in events:
        member = members.get(event.member)
        try:
            if member is None:
                raise NotFound(f"no member {event.member!r} in program {program.slug!r}")
            if event.order_id in recorded:
                answers.append(_replay(recorded[event.order_id], member, event))
                continue
            if event.order_id in claimed:
                answers.append(None)  # answered as a replay of the first, below
                continue
            _check(program, member, event, now, ending)
        except DomainError as error:
            answers.append(error)
            continue
        claimed[event.order_id] = len(answers)
        fresh.append((len(answers), event, member))
        answers.append(None)
    if fresh:
        rows = await price_and_count(connection, program, parse_terms(read.terms), fresh)
        lines = [_audit_row(program, row, principals[row.position]) for row in rows]
        await _write(connection, ledger, program, rows, lines, atomic=atomic)
        for row in rows:
            answers[row.position] = row.outcome()
            recorded[row.event.order_id] = row.as_recorded()
    for position, event in enumerate(events):
        if answers[position] is None:  # the same order twice in one batch
            try:
                answers[position] = _replay(recorded[event.order_id], members[event.member], event)
            except DomainError as error:
                answers[position] = error
    return [a for a in answers if a is not None]


def _check(
    program: Program,
    member: BatchMember,
    event: PurchaseEvent,
    now: datetime,
    ending: EndOfEarning | None,
) -> None:
    require_active(member)
    if event.currency != program.currency:
        raise InvalidPurchase(f"currency {event.currency} is not the program's {program.currency}")
    if event.occurred_at > now + timedelta(minutes=5):
        raise InvalidPurchase("occurred_at is in the future")
    if event.items and sum(i.amount_minor for i in event.items) != event.amount_minor:
        raise InvalidPurchase("the items do not add up to amount_minor")
    refusal = ending.refusal(program.slug, event.occurred_at, now) if ending is not None else None
    if refusal is not None:
        raise refusal


async def _write(
    connection: Connection,
    ledger: Ledger,
    program: Program,
    rows: list[PricedPurchase],
    lines: list[AuditRow],
    *,
    atomic: bool,
) -> None:
    moved = {r.member.id: r.member for r in rows if r.member.moved}
    grants = _grants(program, rows)
    written = await write_batch(
        connection,
        program.id,
        program.currency,
        [
            NewPurchase(
                id=r.id,
                member_id=r.member.id,
                order_id=r.event.order_id,
                occurred_at=r.event.occurred_at,
                amount_minor=r.event.amount_minor,
                items=r.items,
                rule_version=r.rule_version,
                points=r.points,
                earn_transfer_id=r.earn_id,
                matures_at=r.matures_at,
            )
            for r in rows
        ],
        [
            TierMove(member_id=m.id, tier_code=m.tier_code, tier_since=m.tier_since)
            for m in moved.values()
        ],
        [grant for grant, _, _ in grants],
        lines,
    )
    if len(written.inserted) != len(rows):
        # Another request's purchase took the order id since this batch
        # looked: the whole batch is undone, and the answer must come from
        # what was recorded.
        late = next(r.event.order_id for r in rows if r.event.order_id not in written.inserted)
        raise Conflict(f"order {late!r} was being recorded by another request; send it again")
    transfers = [
        Transfer(
            id=row.earn_id,
            debit_account_id=program.issuance_account_id,
            credit_account_id=row.member.wallet_account_id,
            amount=row.points,
            ledger=program.ledger_id,
            code=TransferCode.PURCHASE_EARN,
            flags=TransferFlags.PENDING,
            metadata={"order_id": row.event.order_id},
        )
        for row in rows
        if row.earn_id is not None
    ]
    transfers += [
        Transfer(
            id=grant.id,
            debit_account_id=program.issuance_account_id,
            credit_account_id=row.member.wallet_account_id,
            amount=threshold.bonus_points,
            ledger=program.ledger_id,
            code=TransferCode.THRESHOLD_BONUS,
            flags=TransferFlags.PENDING,
            metadata={"threshold": threshold.code, "order_id": row.event.order_id},
        )
        for grant, threshold, row in grants
        if grant.id in written.granted
    ]
    if transfers:
        await record_transfers(ledger, transfers, within=connection if atomic else None)


def _audit_row(program: Program, row: PricedPurchase, principal: Principal) -> AuditRow:
    """The ``purchase.record`` line of a new purchase (``core.audit``'s
    shape, for the batch's own statement)."""
    return AuditRow(
        id=new_id(),
        actor=principal.actor,
        action="purchase.record",
        subject=f"program:{program.slug}:order:{row.event.order_id}",
        details=_JSON.encode(
            {"points": row.outcome().points, "amount_minor": row.event.amount_minor}
        ).decode(),
    )


def _grants(
    program: Program, rows: list[PricedPurchase]
) -> list[tuple[NewGrant, Threshold, PricedPurchase]]:
    """The threshold rewards the batch's purchases reached. The first
    purchase of the batch to reach a threshold is the one that crossed it:
    the reward is held until that purchase's return window ends."""
    crossing: dict[tuple[uuid.UUID, uuid.UUID, datetime], tuple[Threshold, PricedPurchase]] = {}
    for row in rows:
        for threshold in row.reached:
            assert row.window_start is not None
            crossing.setdefault((threshold.id, row.member.id, row.window_start), (threshold, row))
    grants = []
    for (_, _, start), (threshold, row) in crossing.items():
        assert row.window_end is not None
        grant = NewGrant(
            id=derived_id(
                program.id,
                "threshold",
                threshold.code,
                row.member.external_id,
                start.isoformat(),
                row.event.order_id,
            ),
            threshold_id=threshold.id,
            member_id=row.member.id,
            window_start=start,
            window_end=row.window_end,
            matures_at=row.matures_at,
        )
        grants.append((grant, threshold, row))
    return grants


def _replay(
    recorded: RecordedPurchase, member: BatchMember, event: PurchaseEvent
) -> PurchaseOutcome:
    same = (
        recorded.member_id == member.id
        and recorded.amount_minor == event.amount_minor
        and recorded.occurred_at == event.occurred_at
        and msgspec.json.decode(recorded.items) == msgspec.to_builtins(list(event.items))
    )
    if not same:
        raise Conflict(f"order {event.order_id!r} was recorded with other fields")
    return PurchaseOutcome(
        order_id=recorded.order_id,
        points=recorded.points,
        rule_version=recorded.rule_version,
        matures_at=recorded.matures_at,
        replayed=True,
    )
