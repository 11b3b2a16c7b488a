"""The queries of purchases, returns and their settlement, in one place.

Set-based statements (the batch of the intake, the settlement job) run on
the asyncpg connection under the caller's transaction: round trips cost more
than these statements on a busy machine, so a batch reads in one statement
and writes in one. Single-row look-ups of a return use the ORM session.
No query here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.connections import Connection
from rewards.models import Purchase, PurchaseReturn


class BatchMember(msgspec.Struct, kw_only=True):
    """A member of an intake batch, as locked by ``read_batch``."""

    id: uuid.UUID
    external_id: str
    status: str
    wallet_account_id: uuid.UUID
    tier_code: str | None
    tier_since: datetime | None
    created_at: datetime
    #: Set when a purchase of this batch moved the member's tier.
    moved: bool = False


class RecordedPurchase(msgspec.Struct, kw_only=True, frozen=True):
    order_id: str
    member_id: uuid.UUID
    amount_minor: int
    occurred_at: datetime
    #: The items as JSON text, as stored.
    items: str
    points: int
    rule_version: int | None
    matures_at: datetime


class BatchRead(msgspec.Struct, kw_only=True, frozen=True):
    members: list[BatchMember]
    recorded: list[RecordedPurchase]
    #: The program's terms (rule versions, tiers, thresholds) as one JSON
    #: document, parsed by ``rewards.purchase_pricing.parse_terms``.
    terms: str


_MEMBERS = msgspec.json.Decoder(list[BatchMember])
_RECORDEDS = msgspec.json.Decoder(list[RecordedPurchase])

# The batch's members, locked one after another in the order given (callers
# sort them, so two batches lock in the same order); the orders already
# recorded; and the program's terms as one document. (The recorded orders
# are read with the statement's snapshot, taken before a member lock may have
# had to wait: an order recorded by the batch that held the lock is then
# caught by the insert's unique key, and the batch is retried. They are
# looked up one key at a time, laterally, like the members: a plan made on
# stale statistics once scanned all of the program's purchases for them.)
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


async def read_batch(
    connection: Connection,
    program_id: uuid.UUID,
    members: Sequence[str],
    orders: Sequence[str],
) -> BatchRead:
    """Lock the batch's members (``members`` sorted: see ``_READ_BATCH``),
    and read the orders already recorded and the program's terms: one round
    trip."""
    row = await connection.fetchrow(_READ_BATCH, program_id, list(members), list(orders))
    assert row is not None
    return BatchRead(
        members=_MEMBERS.decode(row["members"]),
        recorded=_RECORDEDS.decode(row["recorded"]),
        terms=row["terms"],
    )


# Spend net of returns and points net of reversals in each window, one row
# per window in the order given. (A lateral sum per window: one index range
# each, never a scan of all purchases.)
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


async def window_totals(
    connection: Connection,
    windows: Sequence[tuple[uuid.UUID, datetime, datetime]],
) -> list[tuple[int, int]]:
    """(spend, points) of each (member, start, end) window, in order."""
    if not windows:
        return []
    rows = await connection.fetch(
        _WINDOW_TOTALS,
        [w[0] for w in windows],
        [w[1] for w in windows],
        [w[2] for w in windows],
    )
    return [(row["spend"], row["points"]) for row in rows]


class NewPurchase(RecordedPurchase, kw_only=True, frozen=True):
    """A purchase as the batch writes it: what is read back, and its ids."""

    id: uuid.UUID
    earn_transfer_id: uuid.UUID | None


class TierMove(msgspec.Struct, kw_only=True, frozen=True):
    member_id: uuid.UUID
    tier_code: str | None
    tier_since: datetime | None


class NewGrant(msgspec.Struct, kw_only=True, frozen=True):
    #: Also the id of its pending ledger transfer.
    id: uuid.UUID
    threshold_id: uuid.UUID
    member_id: uuid.UUID
    window_start: datetime
    window_end: datetime
    matures_at: datetime


class AuditRow(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    actor: str
    action: str
    subject: str
    #: As JSON text.
    details: str


class BatchWritten(msgspec.Struct, kw_only=True, frozen=True):
    #: Order ids inserted: fewer than sent when another request took one.
    inserted: set[str]
    #: Grants inserted: a standing grant of the same window wins.
    granted: set[uuid.UUID]


# Purchases, tier moves, threshold grants and audit lines in one statement
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


async def write_batch(
    connection: Connection,
    program_id: uuid.UUID,
    currency: str,
    purchases: Sequence[NewPurchase],
    moves: Sequence[TierMove],
    grants: Sequence[NewGrant],
    lines: Sequence[AuditRow],
) -> BatchWritten:
    """Insert a batch's purchases, grants and audit lines and move its tiers:
    one round trip."""
    row = await connection.fetchrow(
        _WRITE_BATCH,
        program_id,
        currency,
        [p.id for p in purchases],
        [p.member_id for p in purchases],
        [p.order_id for p in purchases],
        [p.occurred_at for p in purchases],
        [p.amount_minor for p in purchases],
        [p.items for p in purchases],
        [p.rule_version for p in purchases],
        [p.points for p in purchases],
        [p.earn_transfer_id for p in purchases],
        [p.matures_at for p in purchases],
        [m.member_id for m in moves],
        [m.tier_code for m in moves],
        [m.tier_since for m in moves],
        [g.id for g in grants],
        [g.threshold_id for g in grants],
        [g.member_id for g in grants],
        [g.window_start for g in grants],
        [g.window_end for g in grants],
        [g.matures_at for g in grants],
        [line.id for line in lines],
        [line.actor for line in lines],
        [line.action for line in lines],
        [line.subject for line in lines],
        [line.details for line in lines],
    )
    assert row is not None
    return BatchWritten(inserted=set(row["inserted"]), granted=set(row["granted"]))


# -- settlement ----------------------------------------------------------------


class DuePurchase(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    program_id: uuid.UUID
    member_id: uuid.UUID
    order_id: str
    #: What returns left of the earning: posted, or the earning voided if 0.
    remaining: int
    earn_transfer_id: uuid.UUID


class DueGrant(msgspec.Struct, kw_only=True, frozen=True):
    #: Also the id of its pending ledger transfer.
    id: uuid.UUID
    program_id: uuid.UUID
    member_id: uuid.UUID
    code: str
    amount_minor: int
    bonus_points: int
    window_start: datetime
    window_end: datetime


class IndebtedMember(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    program_id: uuid.UUID
    #: The program's ledger.
    ledger_id: int
    wallet_account_id: uuid.UUID
    debt_account_id: uuid.UUID


# Claimed with SKIP LOCKED: several workers settle disjoint batches.
_CLAIM_DUE_PURCHASES = """SELECT p.id, p.program_id, p.member_id, p.order_id,
    p.points - p.points_reversed AS remaining, p.earn_transfer_id
FROM purchases p
WHERE p.posted_at IS NULL AND p.earn_transfer_id IS NOT NULL AND p.matures_at <= $1
    AND ($2::uuid IS NULL OR p.program_id = $2)
ORDER BY p.matures_at LIMIT $3
FOR UPDATE OF p SKIP LOCKED"""

_CLAIM_DUE_GRANTS = """SELECT g.id, r.program_id, g.member_id, r.code, r.amount_minor,
    r.bonus_points, g.window_start, g.window_end
FROM threshold_grants g JOIN threshold_rewards r ON r.id = g.threshold_id
WHERE g.settled_at IS NULL AND g.matures_at <= $1
    AND ($2::uuid IS NULL OR r.program_id = $2)
ORDER BY g.matures_at LIMIT $3
FOR UPDATE OF g SKIP LOCKED"""

# In the order of the intake's batches (a program's members by external id),
# so that a settlement and a batch never lock two members crosswise.
_LOCK_INDEBTED = """SELECT m.id, m.program_id, p.ledger_id, m.wallet_account_id, m.debt_account_id
FROM members m JOIN programs p ON p.id = m.program_id
WHERE m.id = ANY($1::uuid[]) AND m.debt_account_id IS NOT NULL
ORDER BY m.program_id, m.external_id
FOR UPDATE OF m"""

_MARK_POSTED = "UPDATE purchases SET posted_at = $2, updated_at = now() WHERE id = ANY($1::uuid[])"

_MARK_GRANTS_SETTLED = """UPDATE threshold_grants
SET settled_at = $3, voided = (id = ANY($2::uuid[]))
WHERE id = ANY($1::uuid[])"""


async def claim_due_purchases(
    connection: Connection, now: datetime, limit: int, program_id: uuid.UUID | None
) -> list[DuePurchase]:
    rows = await connection.fetch(_CLAIM_DUE_PURCHASES, now, program_id, limit)
    return [DuePurchase(**dict(row)) for row in rows]


async def claim_due_grants(
    connection: Connection, now: datetime, limit: int, program_id: uuid.UUID | None
) -> list[DueGrant]:
    rows = await connection.fetch(_CLAIM_DUE_GRANTS, now, program_id, limit)
    return [DueGrant(**dict(row)) for row in rows]


async def lock_indebted_members(
    connection: Connection, member_ids: Sequence[uuid.UUID]
) -> list[IndebtedMember]:
    """Lock, of ``member_ids``, those who have a debt account: a debt is
    repaid under the member's lock, so two settlements never both repay it."""
    if not member_ids:
        return []
    rows = await connection.fetch(_LOCK_INDEBTED, list(member_ids))
    return [IndebtedMember(**dict(row)) for row in rows]


async def mark_settled(
    connection: Connection,
    now: datetime,
    purchases: Sequence[uuid.UUID],
    grants: Sequence[uuid.UUID],
    voided_grants: Sequence[uuid.UUID],
) -> None:
    if purchases:
        await connection.execute(_MARK_POSTED, list(purchases), now)
    if grants:
        await connection.execute(_MARK_GRANTS_SETTLED, list(grants), list(voided_grants), now)


# -- returns -------------------------------------------------------------------


async def lock_purchase(
    session: AsyncSession, program_id: uuid.UUID, order_id: str
) -> Purchase | None:
    """The purchase, locked: returns of one purchase are taken one at a time.
    Read afresh (a copy the session holds may predate a settlement)."""
    purchase: Purchase | None = await session.scalar(
        select(Purchase)
        .where(Purchase.program_id == program_id, Purchase.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return purchase


async def find_return(
    session: AsyncSession, purchase_id: uuid.UUID, return_id: str
) -> PurchaseReturn | None:
    found: PurchaseReturn | None = await session.scalar(
        select(PurchaseReturn).where(
            PurchaseReturn.purchase_id == purchase_id, PurchaseReturn.return_id == return_id
        )
    )
    return found
