"""Issuances as a partner sees them: one by id, a page of them, and the
issuances already made under given transaction ids (what a replay answers).
Only the companies within the principal's reach are shown; any other
issuance is not found, as a missing one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from core.errors import NotFound
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from partners.acting import partner_of
from partners.coalition_schemas import IssuanceView
from rewards.connections import Connection

_COLUMNS = """
SELECT i.id, i.transaction_id, i.identifier, m.external_id, i.points, i.purchase_amount_minor,
    i.currency, c.slug AS company, h.slug AS partner, i.contract_version, i.rule_version,
    i.created_at, i.request_digest, i.company_id, i.partner_id
FROM partner_issuances i
JOIN members m ON m.id = i.member_id
JOIN partners c ON c.id = i.company_id
JOIN partners h ON h.id = i.partner_id
"""

#: The issuances of the companies within a reach ($2) in a program ($1).
VIEW = _COLUMNS + "WHERE i.program_id = $1 AND i.company_id = ANY($2::uuid[])"

# By key, whoever's reach: a replay is answered only when its fingerprint
# matches, which names the same company as the request (one within reach).
_BY_KEY = (
    _COLUMNS
    + """JOIN unnest($2::uuid[], $3::text[]) AS k(partner_id, transaction_id)
    ON i.partner_id = k.partner_id AND i.transaction_id = k.transaction_id
WHERE i.program_id = $1"""
)


def view_of(row: asyncpg.Record, *, replayed: bool = False) -> IssuanceView:
    by_link = row["identifier"] is not None
    return IssuanceView(
        id=str(row["id"]),
        transaction_id=row["transaction_id"],
        member=None if by_link else row["external_id"],
        identifier=row["identifier"],
        points=row["points"],
        purchase_amount_minor=row["purchase_amount_minor"],
        currency=row["currency"],
        company=row["company"],
        partner=row["partner"],
        contract_version=row["contract_version"],
        rule_version=row["rule_version"],
        issued_at=row["created_at"],
        replayed=replayed,
    )


async def issued_under(
    db: Connection, program_id: uuid.UUID, keys: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], asyncpg.Record]:
    """The issuances of the program under ``(contract holder, transaction
    id)`` keys, by key: those this transaction sees (its own uncommitted
    ones too)."""
    rows = await db.fetch(
        _BY_KEY, program_id, [holder for holder, _ in keys], [tx for _, tx in keys]
    )
    return {(row["partner_id"], row["transaction_id"]): row for row in rows}


async def get_issuance(
    db: asyncpg.Pool | Connection, issuance_id: uuid.UUID, *, principal: Principal
) -> IssuanceView:
    """An issuance of a company within the principal's reach; any other is
    not found, as a missing one."""
    program_id, _ = partner_of(principal)
    row = await db.fetchrow(
        VIEW + " AND i.id = $3", program_id, list(principal.partner_ids), issuance_id
    )
    if row is None:
        raise NotFound(f"no issuance {issuance_id}")
    return view_of(row)


async def list_issuances(
    db: asyncpg.Pool | Connection, *, principal: Principal, limit: int, cursor: str | None
) -> Page[IssuanceView]:
    """The issuances of the companies within the principal's reach, newest first."""
    program_id, _ = partner_of(principal)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        VIEW + " AND ($3::uuid IS NULL OR i.id < $3) ORDER BY i.id DESC LIMIT $4",
        program_id,
        list(principal.partner_ids),
        after,
        limit + 1,
    )
    return page_of([view_of(r) for r in rows], [r["id"] for r in rows], limit)
