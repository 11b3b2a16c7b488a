"""Points a partner issues to members: one ledger transfer from the contract
holder's issuance account to the member's wallet, with its row, audit line
and outbox event in one transaction.

The hot path of the coalition: raw SQL on one connection (no ORM), the
parties read in one statement (``partners.acting``), the ledger called
last so that its lock is held only from that call to the commit. The
holder's issuance account is bounded, so an issuance beyond its funding
is refused by the ledger itself (``exceeds_credits``), whatever the race.

Idempotent by the partner's ``transaction_id`` (per contract holder): the
same request again answers the first issuance (``replayed``); another
request under the same id is a ``Conflict`` and writes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from core import audit
from core.codes import AccountCode, TransferCode, derived_id, partner_account_id
from core.errors import Conflict, DomainError, ErrorKind, NotFound
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from ledger import Ledger, Transfer, new_id
from partners import events
from partners.acting import Acting, partner_of, resolve
from partners.coalition_errors import FundingExhausted, InvalidIssuance
from partners.coalition_models import ContractRoles
from partners.coalition_schemas import IssuanceRequest, IssuanceView
from rewards.connections import Connection
from rewards.errors import LedgerRefused
from rewards.rule_versions import parse_rules
from rewards.rules import Basket, EarnRules, quote_purchase

_JSON = msgspec.json.Encoder()

_INSERT = """
INSERT INTO partner_issuances (id, program_id, partner_id, company_id, transaction_id,
    member_id, identifier, points, purchase_amount_minor, currency, contract_version,
    rule_version, transfer_id, request_digest)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (partner_id, transaction_id) DO NOTHING
RETURNING created_at
"""

# What ``core.outbox.emit`` writes, on a raw connection (it takes a session).
_EMIT = (
    "INSERT INTO outbox_events (id, topic, subject, payload) VALUES ($1, $2, $3, $4::text::jsonb)"
)

_VIEW = """
SELECT i.id, i.transaction_id, i.identifier, m.external_id, i.points, i.purchase_amount_minor,
    i.currency, c.slug AS company, h.slug AS partner, i.contract_version, i.rule_version,
    i.created_at, i.request_digest, i.company_id
FROM partner_issuances i
JOIN members m ON m.id = i.member_id
JOIN partners c ON c.id = i.company_id
JOIN partners h ON h.id = i.partner_id
WHERE i.program_id = $1 AND i.company_id = ANY($2::uuid[])
"""


class _Replay(Exception):
    """Leaves the transaction (rolled back: nothing of it is kept) with the
    issuance a concurrent request of the same id committed first."""

    def __init__(self, view: IssuanceView) -> None:
        self.view = view


def request_digest(request: IssuanceRequest, company: str) -> bytes:
    """The request's fingerprint: its fields as sent, the company resolved
    to its slug (the default company is the credential's, which a replay
    shares)."""
    fields = msgspec.to_builtins(request)
    fields["company"] = company
    return hashlib.sha256(_JSON.encode(fields)).digest()


@functools.lru_cache(maxsize=256)
def _rules(program_id: uuid.UUID, version: int, document: str) -> EarnRules:
    # A published version never changes: parsed once per process.
    return parse_rules(msgspec.json.decode(document))


def price_purchase(acting: Acting, request: IssuanceRequest, now: datetime) -> int:
    """Points the purchase earns under the program's rules in force: the
    base rate, the minimum spend and the member's tier multiplier. Not the
    program's bonuses (its own promotions, which it funds) nor category or
    SKU multipliers (a partner sends no basket)."""
    assert request.purchase_amount_minor is not None
    if request.currency != acting.program_currency:
        raise InvalidIssuance(
            f"currency: purchases are priced in the program's currency"
            f" ({acting.program_currency}), not {request.currency}"
        )
    if acting.rule_version is None or acting.rules is None:
        return 0
    rules = _rules(acting.program_id, acting.rule_version, acting.rules)
    basket = Basket(
        amount_minor=request.purchase_amount_minor,
        occurred_at=now,
        minor_per_major=acting.minor_per_major,
    )
    return quote_purchase(rules, basket, acting.tier_code).base_points


async def issue_points(
    db: asyncpg.Pool | Connection,
    ledger: Ledger,
    request: IssuanceRequest,
    now: datetime,
    *,
    principal: Principal,
) -> IssuanceView:
    """Issue points for a partner principal with ``points:issue``; see the
    module's docstring. On a pool, in a transaction of its own; on a
    connection, in a transaction (or savepoint) of it."""
    principal.require("points:issue")
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as connection:
            return await issue_points(connection, ledger, request, now, principal=principal)
    try:
        acting = await resolve(
            db,
            principal,
            company=request.company,
            member=request.member,
            identifier=request.identifier,
            at=now,
            role=ContractRoles.ISSUER,
            with_rules=request.purchase_amount_minor is not None,
        )
    except DomainError as refusal:
        # A replay answers the first issuance even if its parties have
        # changed since (a contract ended, a member frozen): looked for
        # only when refused, so that the hot path pays nothing for it.
        if refusal.kind is not ErrorKind.CONFLICT:
            raise
        earlier = await _replay_of(db, principal, request)
        if earlier is None:
            raise
        return earlier
    digest = request_digest(request, acting.company_slug)
    points = request.points
    rule_version = None
    if points is None:
        points = price_purchase(acting, request, now)
        rule_version = acting.rule_version
    transfer_id = (
        derived_id(
            acting.program_id, "partner-issue", str(acting.holder_id), request.transaction_id
        )
        if points > 0
        else None
    )
    issuance_id = new_id()
    try:
        async with db.transaction():
            created_at = await db.fetchval(
                _INSERT,
                issuance_id,
                acting.program_id,
                acting.holder_id,
                acting.company_id,
                request.transaction_id,
                acting.member_id,
                request.identifier,
                points,
                request.purchase_amount_minor,
                request.currency,
                acting.contract_version,
                rule_version,
                transfer_id,
                digest,
            )
            if created_at is None:
                # The same id committed meanwhile (the insert waited for it).
                raise _Replay(await _earlier(db, principal, acting, request, digest))
            await _record(db, principal, acting, request, issuance_id, points)
            if transfer_id is not None:
                await _transfer(db, ledger, acting, request, transfer_id, points)
    except _Replay as replay:
        return replay.view
    return IssuanceView(
        id=str(issuance_id),
        transaction_id=request.transaction_id,
        member=request.member,
        identifier=request.identifier,
        points=points,
        purchase_amount_minor=request.purchase_amount_minor,
        currency=request.currency,
        company=acting.company_slug,
        partner=acting.holder_slug,
        contract_version=acting.contract_version,
        rule_version=rule_version,
        issued_at=created_at,
    )


async def _earlier(
    db: Connection, principal: Principal, acting: Acting, request: IssuanceRequest, digest: bytes
) -> IssuanceView:
    row = await db.fetchrow(
        "SELECT id, request_digest FROM partner_issuances"
        " WHERE partner_id = $1 AND transaction_id = $2",
        acting.holder_id,
        request.transaction_id,
    )
    assert row is not None
    if bytes(row["request_digest"]) != digest:
        raise Conflict(f"transaction {request.transaction_id!r} was issued with other fields")
    # Another company of the group made it: the same digest names the same
    # company, so this one is within the reach.
    view = await get_issuance(db, row["id"], principal=principal)
    return msgspec.structs.replace(view, replayed=True)


async def _replay_of(
    db: Connection, principal: Principal, request: IssuanceRequest
) -> IssuanceView | None:
    """The issuance this very request made before, within the reach, if any."""
    program_id, _ = partner_of(principal)
    rows = await db.fetch(
        _VIEW + " AND i.transaction_id = $3",
        program_id,
        list(principal.partner_ids),
        request.transaction_id,
    )
    for row in rows:
        if bytes(row["request_digest"]) == request_digest(request, row["company"]):
            return _view(row, replayed=True)
    return None


async def _record(
    db: Connection,
    principal: Principal,
    acting: Acting,
    request: IssuanceRequest,
    issuance_id: uuid.UUID,
    points: int,
) -> None:
    subject = (
        f"program:{acting.program_slug}:partner:{acting.holder_slug}"
        f":issuance:{request.transaction_id}"
    )
    await audit.record_on(
        db,
        principal,
        "partner.issue",
        subject,
        {
            "issuance": str(issuance_id),
            "points": points,
            "company": acting.company_slug,
            "member": acting.external_id,
        },
    )
    payload: dict[str, Any] = {
        "issuance_id": str(issuance_id),
        "transaction_id": request.transaction_id,
        # As the partner named the member: a link's identifier stays one.
        "member": request.member,
        "identifier": request.identifier,
        "points": points,
        "company": acting.company_slug,
        "partner": acting.holder_slug,
    }
    await db.execute(
        _EMIT,
        new_id(),
        events.POINTS_ISSUED,
        events.subject(acting.company_id),
        _JSON.encode(payload).decode(),
    )


async def _transfer(
    db: Connection,
    ledger: Ledger,
    acting: Acting,
    request: IssuanceRequest,
    transfer_id: uuid.UUID,
    points: int,
) -> None:
    # Last: from the ledger call to the commit the transaction holds the
    # program ledger's lock, so nothing after it waits on anything.
    [outcome] = await ledger.create_transfers_within(
        db,
        [
            Transfer(
                id=transfer_id,
                debit_account_id=partner_account_id(
                    acting.program_id, acting.holder_id, AccountCode.PARTNER_ISSUANCE
                ),
                credit_account_id=acting.wallet_account_id,
                amount=points,
                ledger=acting.ledger_id,
                code=TransferCode.PARTNER_ISSUANCE,
                metadata={
                    "partner": acting.holder_slug,
                    "company": acting.company_slug,
                    # What the member's history shows.
                    "partner_name": acting.company_name,
                    "transaction_id": request.transaction_id,
                },
            )
        ],
    )
    if outcome.result == "exceeds_credits":
        raise FundingExhausted(
            f"partner {acting.holder_slug!r} may not issue {points} more points: its funding"
            " (prepaid blocks or credit line) is used up"
        )
    if outcome.result not in ("ok", "exists"):
        raise LedgerRefused(f"the issuance's transfer was refused: {outcome.result}")


def _view(row: asyncpg.Record, *, replayed: bool = False) -> IssuanceView:
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


async def get_issuance(
    db: asyncpg.Pool | Connection, issuance_id: uuid.UUID, *, principal: Principal
) -> IssuanceView:
    """An issuance of a company within the principal's reach; any other is
    not found, as a missing one."""
    program_id, _ = partner_of(principal)
    row = await db.fetchrow(
        _VIEW + " AND i.id = $3", program_id, list(principal.partner_ids), issuance_id
    )
    if row is None:
        raise NotFound(f"no issuance {issuance_id}")
    return _view(row)


async def list_issuances(
    db: asyncpg.Pool | Connection, *, principal: Principal, limit: int, cursor: str | None
) -> Page[IssuanceView]:
    """The issuances of the companies within the principal's reach, newest first."""
    program_id, _ = partner_of(principal)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        _VIEW + " AND ($3::uuid IS NULL OR i.id < $3) ORDER BY i.id DESC LIMIT $4",
        program_id,
        list(principal.partner_ids),
        after,
        limit + 1,
    )
    return page_of([_view(r) for r in rows], [r["id"] for r in rows], limit)
