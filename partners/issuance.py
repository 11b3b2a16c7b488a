"""Points a partner issues to members: one ledger transfer from the contract
holder's issuance account to the member's wallet, with its row, audit line
and outbox event in one transaction.

The hot path of the coalition, in two steps: the request's parties read in
one statement (``partners.acting``) and its points priced
(``prepare_issuance``, reads only), then its writes
(``partners.issuance_recording``), which serve concurrent requests of one
program together: one transaction, the ledger called last so that its
lock is held only from that call to the commit. The holder's issuance
account is bounded, so an issuance beyond its funding is refused by the
ledger itself (``exceeds_credits``), whatever the race, and writes
nothing.

Idempotent by the partner's ``transaction_id`` (per contract holder): the
same request again answers the first issuance (``replayed``); another
request under the same id is a ``Conflict`` and writes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import datetime

import asyncpg
import msgspec

from core.codes import derived_id
from core.errors import DomainError, ErrorKind
from core.principal import Principal
from ledger import Ledger, new_id
from partners.acting import Acting, partner_of, resolve
from partners.coalition_errors import InvalidIssuance
from partners.coalition_models import ContractRoles
from partners.coalition_schemas import IssuanceRequest, IssuanceView
from partners.issuance_recording import PreparedIssuance, record_issuances
from partners.issuance_views import VIEW, get_issuance, list_issuances, view_of
from rewards.connections import Connection
from rewards.end_of_earning import check_earning
from rewards.rule_versions import parse_rules
from rewards.rules import Basket, EarnRules, quote_purchase

__all__ = [
    "get_issuance",
    "issue_points",
    "list_issuances",
    "prepare_issuance",
    "price_purchase",
    "request_digest",
]

_JSON = msgspec.json.Encoder()


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


async def prepare_issuance(
    db: asyncpg.Pool | Connection,
    request: IssuanceRequest,
    now: datetime,
    *,
    principal: Principal,
) -> PreparedIssuance | IssuanceView:
    """The issuance ready to be written (``partners.issuance_recording``):
    its parties resolved, its points priced, its ids chosen. Or, when its
    parties refuse it (a contract ended, a member frozen) but this very
    request was issued before, that first issuance again: a replay answers
    it even if its parties have changed since. Reads only."""
    principal.require("points:issue")
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
        # After a sunset's end of earning (a conflict: a replay still answers).
        await check_earning(db, acting.program_id, acting.program_slug, now, now)
    except DomainError as refusal:
        # Looked for only when refused, so that the hot path pays nothing
        # for it.
        if refusal.kind is not ErrorKind.CONFLICT:
            raise
        earlier = await _replay_of(db, principal, request)
        if earlier is None:
            raise
        return earlier
    points = request.points
    rule_version = None
    if points is None:
        points = price_purchase(acting, request, now)
        rule_version = acting.rule_version
    return PreparedIssuance(
        request=request,
        principal=principal,
        acting=acting,
        points=points,
        rule_version=rule_version,
        digest=request_digest(request, acting.company_slug),
        id=new_id(),
        transfer_id=derived_id(
            acting.program_id, "partner-issue", str(acting.holder_id), request.transaction_id
        )
        if points > 0
        else None,
    )


async def issue_points(
    db: asyncpg.Pool | Connection,
    ledger: Ledger,
    request: IssuanceRequest,
    now: datetime,
    *,
    principal: Principal,
) -> IssuanceView:
    """Issue points for a partner principal with ``points:issue``, alone (the
    HTTP route gathers concurrent requests: ``api.issuance_intake``); see
    the module's docstring. On a pool, in a transaction of its own; on a
    connection, in a transaction (or savepoint) of it."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as connection:
            return await issue_points(connection, ledger, request, now, principal=principal)
    prepared = await prepare_issuance(db, request, now, principal=principal)
    if isinstance(prepared, IssuanceView):
        return prepared
    [answer] = await record_issuances(db, ledger, [prepared])
    if isinstance(answer, DomainError):
        raise answer
    return answer


async def _replay_of(
    db: asyncpg.Pool | Connection, principal: Principal, request: IssuanceRequest
) -> IssuanceView | None:
    """The issuance this very request made before, within the reach, if any."""
    program_id, _ = partner_of(principal)
    rows = await db.fetch(
        VIEW + " AND i.transaction_id = $3",
        program_id,
        list(principal.partner_ids),
        request.transaction_id,
    )
    for row in rows:
        if bytes(row["request_digest"]) == request_digest(request, row["company"]):
            return view_of(row, replayed=True)
    return None
