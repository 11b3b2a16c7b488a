"""Earning from purchases: pending until the return window ends, then posted;
returns reverse proportionally, before or after posting.

Policy when a return reverses more than the wallet holds (the points were
spent): the wallet gives what it has, and the rest is recorded as the
member's debt, a debit of the member's debt account in the ledger. A balance
never goes negative and nothing is forgiven silently; later earnings can
repay the debt (``repay_debt``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import Line
from core.codes import TransferCode, derived_id
from core.errors import Conflict, DomainError, NotFound
from core.members import get_member, lock_member, require_active
from core.models import Member, Program
from ledger import Ledger, Transfer, TransferFlags, new_id
from ledger.bounds import ExternalId, NonNegativeBigInt, PositiveBigInt, check_moment
from ledger.reads import spendable
from rewards.budgets import lock_budgets, take_from_budget
from rewards.connections import Connection, session_connection
from rewards.errors import InvalidPurchase, LedgerRefused, ReturnExceedsPurchase
from rewards.models import Purchase, PurchaseReturn
from rewards.programs import record_transfers, take_back_points
from rewards.rule_versions import parse_rules
from rewards.rules import Basket, EarnRules, Item, Moment, points_for_return, quote_purchase
from rewards.tiers import qualified_tier, window_at, window_total

_JSON = msgspec.json.Encoder()

OrderId = ExternalId
#: Most items one purchase lists (they are stored with it, as JSON).
ITEMS_MAX = 1000


class PurchaseEvent(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    member: ExternalId
    order_id: OrderId
    amount_minor: Annotated[
        NonNegativeBigInt,
        msgspec.Meta(
            description="What the member paid, in minor units of the currency (cents for USD)."
        ),
    ]
    currency: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Z]{3}$",
            description="ISO 4217 code of the purchase's currency: the program's own.",
        ),
    ]
    occurred_at: Moment
    items: Annotated[
        tuple[Item, ...],
        msgspec.Meta(
            max_length=ITEMS_MAX,
            description="The basket's lines, for rules by SKU or category (optional).",
        ),
    ] = ()

    def __post_init__(self) -> None:
        check_moment("occurred_at", self.occurred_at)


class ReturnEvent(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    return_id: OrderId
    amount_minor: Annotated[
        PositiveBigInt,
        msgspec.Meta(
            description="The amount returned, in minor units: its share of the points is reversed."
        ),
    ]


class PurchaseOutcome(msgspec.Struct, kw_only=True, frozen=True):
    order_id: Annotated[
        str, msgspec.Meta(description="The order id the purchase was recorded under.")
    ]
    points: Annotated[
        int, msgspec.Meta(description="Points earned, pending until the return window ends.")
    ]
    rule_version: (
        Annotated[
            int, msgspec.Meta(description="The published rule version that priced the purchase.")
        ]
        | None
    )
    matures_at: Annotated[
        datetime,
        msgspec.Meta(description="When the return window ends and the points become available."),
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this order id was recorded before (a replay).")
    ]


#: The audit line of a newly recorded purchase, from its event's position in
#: the batch and its outcome.
Audit = Callable[[int, PurchaseOutcome], Line]


class ReturnOutcome(msgspec.Struct, kw_only=True, frozen=True):
    return_id: Annotated[
        str, msgspec.Meta(description="The return id the return was recorded under.")
    ]
    points_reversed: Annotated[
        int, msgspec.Meta(description="Points taken back for the returned amount.")
    ]
    debt_points: Annotated[
        int,
        msgspec.Meta(
            description="Of those, points the wallet lacked, recorded as the member's debt."
        ),
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this return id was recorded before (a replay).")
    ]


async def record_purchase(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    event: PurchaseEvent,
    now: datetime,
    *,
    atomic: bool = False,
) -> PurchaseOutcome:
    """``record_purchases`` for one event, inside the session's transaction
    (``atomic``: the ledger transfers too, when nothing after this in the
    transaction waits on the ledger's writer)."""
    member = await get_member(session, program, event.member)
    [outcome] = await record_purchases(
        await session_connection(session), ledger, program, [event], now, atomic=atomic
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
    atomic: bool = False,
    audit: Audit | None = None,
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

    ``audit`` gives each new purchase's audit line, inserted by the batch's
    write statement (a round trip fewer than a statement of its own).
    """
    read = await connection.fetchrow(
        _READ_BATCH,
        program.id,
        sorted({e.member for e in events}),
        sorted({e.order_id for e in events}),
    )
    assert read is not None
    members = {m.external_id: m for m in _MEMBERS.decode(read["members"])}
    recorded = {r.order_id: r for r in _RECORDEDS.decode(read["recorded"])}
    answers: list[PurchaseOutcome | DomainError | None] = []
    fresh: list[tuple[int, PurchaseEvent, _Member]] = []
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
            _check(program, member, event, now)
        except DomainError as error:
            answers.append(error)
            continue
        claimed[event.order_id] = len(answers)
        fresh.append((len(answers), event, member))
        answers.append(None)
    if fresh:
        terms = _parse_terms(read["terms"])
        rows = await _price_and_count(connection, program, terms, fresh)
        lines = [audit(row.position, row.outcome()) for row in rows] if audit else []
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


class _Member(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    external_id: str
    status: str
    wallet_account_id: uuid.UUID
    tier_code: str | None
    tier_since: datetime | None
    created_at: datetime
    #: Set when a purchase of this batch moved the member's tier.
    moved: bool = False


class _Recorded(msgspec.Struct, kw_only=True, frozen=True):
    order_id: str
    member_id: uuid.UUID
    amount_minor: int
    occurred_at: datetime
    #: The items as JSON text, as stored.
    items: str
    points: int
    rule_version: int | None
    matures_at: datetime


class _Version(msgspec.Struct, kw_only=True, frozen=True):
    version: int
    effective_from: datetime
    rules: dict[str, Any]


class _Rung(msgspec.Struct, kw_only=True, frozen=True):
    code: str
    rank: int
    threshold: int


class _Threshold(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    code: str
    amount_minor: int
    bonus_points: int


class _TermsDocument(msgspec.Struct, kw_only=True, frozen=True):
    versions: list[_Version]
    tiers: list[_Rung]
    thresholds: list[_Threshold]


class _Terms(msgspec.Struct, kw_only=True, frozen=True):
    """What pricing and qualifying need of a program, read once per batch."""

    #: Published versions, latest effective first, with their parsed rules.
    versions: list[tuple[_Version, EarnRules]]
    tiers: list[_Rung]
    thresholds: list[_Threshold]

    def rules_at(self, at: datetime) -> tuple[_Version, EarnRules] | None:
        return next((v for v in self.versions if v[0].effective_from <= at), None)


class _Row(msgspec.Struct, kw_only=True):
    """A purchase of the batch, priced and counted, before it is written."""

    position: int
    event: PurchaseEvent
    member: _Member
    id: uuid.UUID
    items: str
    rule_version: int | None
    points: int
    earn_id: uuid.UUID | None
    matures_at: datetime
    #: Threshold rewards whose amount the member's window spend reached.
    reached: list[_Threshold] = []
    window_start: datetime | None = None
    window_end: datetime | None = None

    def outcome(self) -> PurchaseOutcome:
        return PurchaseOutcome(
            order_id=self.event.order_id,
            points=self.points,
            rule_version=self.rule_version,
            matures_at=self.matures_at,
            replayed=False,
        )

    def as_recorded(self) -> _Recorded:
        return _Recorded(
            order_id=self.event.order_id,
            member_id=self.member.id,
            amount_minor=self.event.amount_minor,
            occurred_at=self.event.occurred_at,
            items=self.items,
            points=self.points,
            rule_version=self.rule_version,
            matures_at=self.matures_at,
        )


_MEMBERS = msgspec.json.Decoder(list[_Member])
_RECORDEDS = msgspec.json.Decoder(list[_Recorded])

# Round trips cost more than these statements on a busy machine, so a batch
# reads in one statement and writes in one.
#
# The read: the batch's members, locked one after another in the order given
# (callers sort them, so two batches lock in the same order); the orders
# already recorded; and the program's terms as one document. (The recorded orders are
# read with the statement's snapshot, taken before a member lock may have had
# to wait: an order recorded by the batch that held the lock is then caught by
# the insert's unique key, and the batch is retried. They are looked up one
# key at a time, laterally, like the members: a plan made on stale statistics
# once scanned all of the program's purchases for them.)
_READ_BATCH = """WITH locked AS (
    SELECT m.id, m.external_id, m.status, m.wallet_account_id, m.tier_code, m.tier_since,
        m.created_at
    FROM unnest($2::text[]) WITH ORDINALITY AS e(external_id, n)
    CROSS JOIN LATERAL (SELECT * FROM members k
        WHERE k.program_id = $1 AND k.external_id = e.external_id LIMIT 1 FOR UPDATE) AS m
    ORDER BY e.n
)
SELECT (SELECT coalesce(json_agg(locked), '[]') FROM locked)::text AS members,
    (SELECT coalesce(json_agg(json_build_object('order_id', p.order_id,
        'member_id', p.member_id, 'amount_minor', p.amount_minor,
        'occurred_at', p.occurred_at, 'items', p.items::text, 'points', p.points,
        'rule_version', p.rule_version, 'matures_at', p.matures_at)), '[]')
     FROM unnest($3::text[]) AS o(order_id)
     CROSS JOIN LATERAL (SELECT * FROM purchases q
        WHERE q.program_id = $1 AND q.order_id = o.order_id LIMIT 1) AS p)::text AS recorded,
    json_build_object(
    'versions', coalesce((
        SELECT json_agg(json_build_object('version', v.version,
            'effective_from', v.effective_from, 'rules', v.rules)
            ORDER BY v.effective_from DESC, v.version DESC)
        FROM earn_rule_versions v WHERE v.program_id = $1 AND v.status = 'published'), '[]'),
    'tiers', coalesce((
        SELECT json_agg(json_build_object('code', t.code, 'rank', t.rank,
            'threshold', t.threshold) ORDER BY t.rank)
        FROM tiers t WHERE t.program_id = $1), '[]'),
    'thresholds', coalesce((
        SELECT json_agg(json_build_object('id', r.id, 'code', r.code,
            'amount_minor', r.amount_minor, 'bonus_points', r.bonus_points) ORDER BY r.code)
        FROM threshold_rewards r WHERE r.program_id = $1), '[]')
    )::text AS terms"""
# Spend net of returns and points net of reversals in each window, one row
# per window in the order given.
# (A lateral sum per window: one index range each, never a scan of all
# purchases.)
_WINDOW_TOTALS = """SELECT t.spend, t.points
FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[])
    WITH ORDINALITY AS w(member_id, starts, ends, n)
CROSS JOIN LATERAL (
    SELECT coalesce(sum(p.amount_minor - p.returned_minor), 0)::bigint AS spend,
        coalesce(sum(p.points - p.points_reversed), 0)::bigint AS points
    FROM purchases p
    WHERE p.member_id = w.member_id AND p.occurred_at >= w.starts AND p.occurred_at < w.ends
) AS t
ORDER BY w.n"""
# The write: purchases, tier moves and threshold grants in one statement
# (data-modifying CTEs always run to completion). The unique key of standing
# grants makes concurrent purchases agree on one grant: the loser waits for
# the winner's commit and then inserts nothing.
_WRITE_BATCH = """WITH inserted AS (
    INSERT INTO purchases (id, program_id, member_id, order_id, occurred_at, amount_minor,
        currency, items, rule_version, points, earn_transfer_id, matures_at)
    SELECT p.id, $1, p.member_id, p.order_id, p.occurred_at, p.amount_minor, $2,
        p.items::jsonb, p.rule_version, p.points, p.earn_id, p.matures_at
    FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::timestamptz[], $7::bigint[],
        $8::text[], $9::integer[], $10::bigint[], $11::uuid[], $12::timestamptz[])
        AS p(id, member_id, order_id, occurred_at, amount_minor, items, rule_version, points,
            earn_id, matures_at)
    ON CONFLICT (program_id, order_id) DO NOTHING
    RETURNING order_id
), moved AS (
    UPDATE members m SET tier_code = u.code, tier_since = u.since, updated_at = now()
    FROM unnest($13::uuid[], $14::text[], $15::timestamptz[]) AS u(id, code, since)
    WHERE m.id = u.id
    RETURNING m.id
), granted AS (
    INSERT INTO threshold_grants (id, threshold_id, member_id, window_start, window_end,
        matures_at, transfer_id)
    SELECT g.id, g.threshold_id, g.member_id, g.window_start, g.window_end, g.matures_at, g.id
    FROM unnest($16::uuid[], $17::uuid[], $18::uuid[], $19::timestamptz[],
        $20::timestamptz[], $21::timestamptz[])
        AS g(id, threshold_id, member_id, window_start, window_end, matures_at)
    ON CONFLICT (threshold_id, member_id, window_start) WHERE NOT voided DO NOTHING
    RETURNING id
), audited AS (
    -- The audit trail's lines of the new purchases. A purchase that was
    -- not inserted fails the batch, and its line with it.
    INSERT INTO audit_events (id, actor, action, subject, details)
    SELECT l.id, l.actor, l.action, l.subject, l.details::jsonb
    FROM unnest($22::uuid[], $23::text[], $24::text[], $25::text[], $26::text[])
        AS l(id, actor, action, subject, details)
)
SELECT ARRAY(SELECT order_id FROM inserted)::text[] AS inserted,
    ARRAY(SELECT id FROM granted)::uuid[] AS granted,
    (SELECT count(*) FROM moved) AS moved"""


@functools.lru_cache(maxsize=256)
def _parse_terms(document: str) -> _Terms:
    # Published versions never change, so the same text parses to the same
    # terms: a busy program pays for the parsing once.
    parsed = msgspec.json.decode(document, type=_TermsDocument)
    return _Terms(
        versions=[(v, parse_rules(v.rules)) for v in parsed.versions],
        tiers=parsed.tiers,
        thresholds=parsed.thresholds,
    )


def _check(program: Program, member: _Member, event: PurchaseEvent, now: datetime) -> None:
    require_active(member)
    if event.currency != program.currency:
        raise InvalidPurchase(f"currency {event.currency} is not the program's {program.currency}")
    if event.occurred_at > now + timedelta(minutes=5):
        raise InvalidPurchase("occurred_at is in the future")
    if event.items and sum(i.amount_minor for i in event.items) != event.amount_minor:
        raise InvalidPurchase("the items do not add up to amount_minor")


async def _price_and_count(
    connection: Connection,
    program: Program,
    terms: _Terms,
    fresh: list[tuple[int, PurchaseEvent, _Member]],
) -> list[_Row]:
    """Price each new purchase, in order, and move tiers as a sequence of
    single purchases would: a purchase that upgrades its member prices the
    member's next purchases at the new tier."""
    # The budgets this batch may draw on, locked up front in one order:
    # taken purchase by purchase, two batches could lock them crosswise.
    budgets = set()
    for _, event, _ in fresh:
        in_force = terms.rules_at(event.occurred_at)
        if in_force is None:
            continue
        for bonus in in_force[1].bonuses:
            if (
                bonus.budget_points is not None
                and bonus.starts_at <= event.occurred_at < bonus.ends_at
            ):
                budgets.add((in_force[0].version, f"bonus:{bonus.name}"))
    if budgets:
        await lock_budgets(connection, program.id, sorted(budgets))
    qualifying = bool(terms.tiers or terms.thresholds)
    windows = [window_at(program, m.created_at, e.occurred_at) for _, e, m in fresh]
    totals: list[tuple[int, int]] = []
    if qualifying:
        totals = [
            (row["spend"], row["points"])
            for row in await connection.fetch(
                _WINDOW_TOTALS,
                [m.id for _, _, m in fresh],
                [w[0] for w in windows],
                [w[1] for w in windows],
            )
        ]
    rows: list[_Row] = []
    for (position, event, member), (start, end), index in zip(
        fresh, windows, range(len(fresh)), strict=True
    ):
        in_force = terms.rules_at(event.occurred_at)
        points = 0
        if in_force is not None:
            points = await _price(connection, program, in_force, event, member.tier_code)
        row = _Row(
            position=position,
            event=event,
            member=member,
            id=new_id(),
            items=_JSON.encode(event.items).decode(),
            rule_version=in_force[0].version if in_force else None,
            points=points,
            earn_id=derived_id(program.id, "earn", event.order_id) if points > 0 else None,
            matures_at=event.occurred_at + timedelta(days=program.return_window_days),
        )
        rows.append(row)
        if not qualifying:
            continue
        # This batch's earlier purchases of the member in the same window
        # count too: the database has not seen them yet.
        spend, earned = totals[index]
        for other in rows:
            if other.member is member and start <= other.event.occurred_at < end:
                spend += other.event.amount_minor
                earned += other.points
        amount = spend if program.tier_basis == "spend" else earned
        reached = qualified_tier(terms.tiers, amount)
        current = next((t for t in terms.tiers if t.code == member.tier_code), None)
        if reached is not None and (current is None or reached.rank > current.rank):
            member.tier_code, member.tier_since, member.moved = (
                reached.code,
                event.occurred_at,
                True,
            )
        row.reached = [t for t in terms.thresholds if spend >= t.amount_minor]
        row.window_start, row.window_end = start, end
    return rows


async def _price(
    connection: Connection,
    program: Program,
    in_force: tuple[_Version, EarnRules],
    event: PurchaseEvent,
    tier: str | None,
) -> int:
    version, rules = in_force
    basket = Basket(
        amount_minor=event.amount_minor,
        occurred_at=event.occurred_at,
        items=event.items,
        minor_per_major=program.minor_per_major,
    )
    quote = quote_purchase(rules, basket, tier)
    points = quote.base_points
    budgets = {b.name: b.budget_points for b in rules.bonuses}
    for grant in quote.bonuses:
        budget = budgets.get(grant.name)
        if budget is None:
            points += grant.points
        else:
            # A bonus never grants more than its budget, whatever the race.
            points += await take_from_budget(
                connection, program.id, version.version, f"bonus:{grant.name}", budget, grant.points
            )
    return points


async def _write(
    connection: Connection,
    ledger: Ledger,
    program: Program,
    rows: list[_Row],
    lines: list[Line],
    *,
    atomic: bool,
) -> None:
    moved = {r.member.id: r.member for r in rows if r.member.moved}
    # The first purchase of the batch to reach a threshold is the one that
    # crossed it: the reward is held until that purchase's return window ends.
    grants: dict[tuple[uuid.UUID, uuid.UUID, datetime], tuple[_Threshold, _Row]] = {}
    for row in rows:
        for threshold in row.reached:
            assert row.window_start is not None
            grants.setdefault((threshold.id, row.member.id, row.window_start), (threshold, row))
    pending_grants: list[tuple[uuid.UUID, _Threshold, _Row]] = []
    for (_, _, start), (threshold, row) in grants.items():
        grant_id = derived_id(
            program.id,
            "threshold",
            threshold.code,
            row.member.external_id,
            start.isoformat(),
            row.event.order_id,
        )
        pending_grants.append((grant_id, threshold, row))
    written = await connection.fetchrow(
        _WRITE_BATCH,
        program.id,
        program.currency,
        [r.id for r in rows],
        [r.member.id for r in rows],
        [r.event.order_id for r in rows],
        [r.event.occurred_at for r in rows],
        [r.event.amount_minor for r in rows],
        [r.items for r in rows],
        [r.rule_version for r in rows],
        [r.points for r in rows],
        [r.earn_id for r in rows],
        [r.matures_at for r in rows],
        list(moved),
        [m.tier_code for m in moved.values()],
        [m.tier_since for m in moved.values()],
        [g for g, _, _ in pending_grants],
        [t.id for _, t, _ in pending_grants],
        [r.member.id for _, _, r in pending_grants],
        [r.window_start for _, _, r in pending_grants],
        [r.window_end for _, _, r in pending_grants],
        [r.matures_at for _, _, r in pending_grants],
        [new_id() for _ in lines],
        [line.actor for line in lines],
        [line.action for line in lines],
        [line.subject for line in lines],
        [_JSON.encode(line.details or {}).decode() for line in lines],
    )
    assert written is not None
    if len(written["inserted"]) != len(rows):
        # Another request's purchase took the order id since this batch
        # looked: the whole batch is undone, and the answer must come from
        # what was recorded.
        done = set(written["inserted"])
        late = next(r.event.order_id for r in rows if r.event.order_id not in done)
        raise Conflict(f"order {late!r} was being recorded by another request; send it again")
    granted = set(written["granted"])
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
            id=grant_id,
            debit_account_id=program.issuance_account_id,
            credit_account_id=row.member.wallet_account_id,
            amount=threshold.bonus_points,
            ledger=program.ledger_id,
            code=TransferCode.THRESHOLD_BONUS,
            flags=TransferFlags.PENDING,
            metadata={"threshold": threshold.code, "order_id": row.event.order_id},
        )
        for grant_id, threshold, row in pending_grants
        if grant_id in granted
    ]
    if transfers:
        await record_transfers(ledger, transfers, within=connection if atomic else None)


async def settle_matured_earnings(
    session: AsyncSession,
    ledger: Ledger,
    now: datetime,
    limit: int = 1000,
    program: Program | None = None,
) -> int:
    """Post the pending earnings whose return window has ended: what returns
    left of them is posted, a fully returned one is voided; then the
    threshold rewards due. Returns how many of both were settled. Safe to run
    twice and from several workers at once (rows are claimed with SKIP
    LOCKED)."""
    settled = await _settle_purchases(session, ledger, now, limit, program)
    return settled + await _settle_threshold_rewards(session, ledger, now, limit, program)


async def _settle_purchases(
    session: AsyncSession, ledger: Ledger, now: datetime, limit: int, program: Program | None
) -> int:
    query = select(Purchase).where(
        Purchase.posted_at.is_(None),
        Purchase.earn_transfer_id.is_not(None),
        Purchase.matures_at <= now,
    )
    if program is not None:
        query = query.where(Purchase.program_id == program.id)
    due = list(
        await session.scalars(
            query.order_by(Purchase.matures_at).limit(limit).with_for_update(skip_locked=True)
        )
    )
    if not due:
        return 0
    transfers = []
    for purchase in due:
        assert purchase.earn_transfer_id is not None
        remaining = purchase.points - purchase.points_reversed
        transfers.append(
            Transfer(
                id=derived_id(purchase.program_id, "settle", purchase.order_id),
                pending_id=purchase.earn_transfer_id,
                amount=remaining,
                flags=TransferFlags.POST_PENDING if remaining else TransferFlags.VOID_PENDING,
            )
        )
    # A settlement already in the ledger (its batch committed there, but not
    # here) is taken as done, whatever returns changed since: re-posting it
    # with another amount would be refused forever and block the batch.
    recorded = {t.id for t in await ledger.lookup_transfers([t.id for t in transfers])}
    await record_transfers(ledger, [t for t in transfers if t.id not in recorded])
    for purchase in due:
        purchase.posted_at = now
    await _repay_debts(session, ledger, due)
    await session.flush()
    return len(due)


_DUE_GRANTS = text("""SELECT g.id, g.member_id, g.window_start, g.window_end,
    r.amount_minor, r.program_id
FROM threshold_grants g JOIN threshold_rewards r ON r.id = g.threshold_id
WHERE g.settled_at IS NULL AND g.matures_at <= :now
    AND (CAST(:program AS uuid) IS NULL OR r.program_id = CAST(:program AS uuid))
ORDER BY g.matures_at LIMIT :limit
FOR UPDATE OF g SKIP LOCKED""")


async def _settle_threshold_rewards(
    session: AsyncSession, ledger: Ledger, now: datetime, limit: int, program: Program | None
) -> int:
    """Post a held threshold reward if the member's net spend in its window
    still reaches the threshold once the crossing purchase's return window
    has ended; void it if returns took the spend back under it (a later
    purchase crossing again earns it anew)."""
    due = (
        await session.execute(
            _DUE_GRANTS, {"now": now, "program": program.id if program else None, "limit": limit}
        )
    ).all()
    if not due:
        return 0
    settle_ids = {g.id: derived_id(g.program_id, "settle-threshold", str(g.id)) for g in due}
    # A settlement already in the ledger (its batch committed there, not
    # here) stands as recorded, whatever returns changed since: re-sending
    # its id with the other decision would be refused for ever.
    recorded = {t.pending_id: t for t in await ledger.lookup_transfers(list(settle_ids.values()))}
    transfers, voided = [], []
    for grant in due:
        if grant.id in recorded:
            keep = not recorded[grant.id].flags & TransferFlags.VOID_PENDING
        else:
            spend = await window_total(
                session, grant.member_id, grant.window_start, grant.window_end, "spend"
            )
            keep = spend >= grant.amount_minor
            transfers.append(
                Transfer(
                    id=settle_ids[grant.id],
                    pending_id=grant.id,
                    flags=TransferFlags.POST_PENDING if keep else TransferFlags.VOID_PENDING,
                )
            )
        if not keep:
            voided.append(grant.id)
    if transfers:
        await record_transfers(ledger, transfers)
    await session.execute(
        text(
            "UPDATE threshold_grants SET settled_at = :now, voided = (id = ANY(:voided))"
            " WHERE id = ANY(:ids)"
        ),
        {"now": now, "voided": voided, "ids": [g.id for g in due]},
    )
    return len(due)


async def _repay_debts(session: AsyncSession, ledger: Ledger, settled: list[Purchase]) -> None:
    """Newly posted earnings first repay what their member owes (from returns
    the wallet could not cover): wallet to debt account, up to the debt.
    The debt account refuses any credit beyond its debt."""
    member_ids = {p.member_id for p in settled if p.points > p.points_reversed}
    if not member_ids:
        return
    indebted = list(
        await session.scalars(
            select(Member).where(Member.id.in_(member_ids), Member.debt_account_id.is_not(None))
        )
    )
    for member in indebted:
        assert member.debt_account_id is not None
        await lock_member(session, member.id)
        program = await session.get_one(Program, member.program_id)
        [debt, wallet] = await ledger.lookup_accounts(
            [member.debt_account_id, member.wallet_account_id]
        )
        owed = debt.debits_posted - debt.credits_posted
        available = spendable(wallet)
        earned = sum(p.points - p.points_reversed for p in settled if p.member_id == member.id)
        repay = min(owed, available, earned)
        if repay <= 0:
            continue
        last = max((p for p in settled if p.member_id == member.id), key=lambda p: p.order_id)
        [outcome] = await ledger.create_transfers(
            [
                Transfer(
                    id=derived_id(program.id, "repay", last.order_id),
                    debit_account_id=member.wallet_account_id,
                    credit_account_id=member.debt_account_id,
                    amount=repay,
                    ledger=program.ledger_id,
                    code=TransferCode.DEBT_REPAYMENT,
                    metadata={"order_id": last.order_id},
                )
            ]
        )
        if outcome.result not in ("ok", "exists", "exceeds_credits", "exceeds_debits"):
            raise LedgerRefused(f"debt repayment refused: {outcome.result}")


async def return_purchase(
    session: AsyncSession, ledger: Ledger, program: Program, order_id: str, event: ReturnEvent
) -> ReturnOutcome:
    """Reverse the points of (part of) a purchase, in proportion to the amount
    returned. Before the earning is posted this only shrinks what will be
    posted; after, it takes the points back from the wallet, and what the
    wallet cannot cover becomes the member's debt."""
    purchase = await session.scalar(
        select(Purchase)
        .where(Purchase.program_id == program.id, Purchase.order_id == order_id)
        .with_for_update()
    )
    if purchase is None:
        raise NotFound(f"no purchase {order_id!r} in program {program.slug!r}")
    earlier = await session.scalar(
        select(PurchaseReturn).where(
            PurchaseReturn.purchase_id == purchase.id, PurchaseReturn.return_id == event.return_id
        )
    )
    if earlier is not None:
        if earlier.amount_minor != event.amount_minor:
            raise Conflict(f"return {event.return_id!r} was recorded with another amount")
        return ReturnOutcome(
            return_id=earlier.return_id,
            points_reversed=earlier.points_reversed,
            debt_points=earlier.debt_points,
            replayed=True,
        )
    returned = purchase.returned_minor + event.amount_minor
    if returned > purchase.amount_minor:
        raise ReturnExceedsPurchase(
            f"returns would total {returned}, more than the purchase's {purchase.amount_minor}"
        )
    # Cumulative, so partial returns add up to exactly the points earned.
    reversed_after = points_for_return(purchase.points, purchase.amount_minor, returned)
    points = reversed_after - purchase.points_reversed
    debt = 0
    if points and purchase.posted_at is not None:
        member = await session.get_one(Member, purchase.member_id)
        debt = await _take_back(session, ledger, program, member, purchase, event, points)
    purchase.returned_minor = returned
    purchase.points_reversed = reversed_after
    session.add(
        PurchaseReturn(
            purchase_id=purchase.id,
            return_id=event.return_id,
            amount_minor=event.amount_minor,
            points_reversed=points,
            debt_points=debt,
        )
    )
    await session.flush()
    return ReturnOutcome(
        return_id=event.return_id, points_reversed=points, debt_points=debt, replayed=False
    )


async def _take_back(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    purchase: Purchase,
    event: ReturnEvent,
    points: int,
) -> int:
    return await take_back_points(
        session,
        ledger,
        program,
        member,
        ("return", purchase.order_id, event.return_id),
        points,
        {"order_id": purchase.order_id, "return_id": event.return_id},
        code=TransferCode.RETURN_REVERSAL,
    )


def _replay(recorded: _Recorded, member: _Member, event: PurchaseEvent) -> PurchaseOutcome:
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
