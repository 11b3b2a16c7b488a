"""Writing issuances a batch at a time: the issuances of concurrent requests
of one program, whose parties are resolved and points priced
(``partners.issuance.prepare_issuance``), in one transaction of three
round trips however many they are: one statement for their rows, audit
lines and outbox events, one ledger call for all their transfers, the
commit.

Issuances of a program serialise on the program ledger's lock, held from
the ledger call to the commit; one transaction for many makes that wait
once per batch instead of once per issuance.

Each issuance's answer is its own. The ledger answers each transfer of a
batch on its own, as if posted one after the other (TigerBeetle's
semantics): a transfer beyond the holder's funding is refused
(``exceeds_credits``) while the others post. But a refused transfer leaves
a rejection under its id in the same transaction, and its issuance's row,
line and event are written already: a refusal rolls the whole transaction
back, and the batch is written again without the refused issuances (which
are answered with their refusal, having written nothing). Refusals are
rare (funding used up); each retry drops at least one issuance, so the
loop ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from core.codes import AccountCode, TransferCode, partner_account_id
from core.errors import Conflict, DomainError
from core.principal import Principal
from ledger import Ledger, Transfer, TransferOutcome, new_id
from partners import events
from partners.acting import Acting
from partners.coalition_errors import FundingExhausted
from partners.coalition_schemas import IssuanceRequest, IssuanceView
from partners.issuance_views import issued_under, view_of
from rewards.connections import Connection
from rewards.end_of_earning import end_of_earning
from rewards.errors import LedgerRefused

_JSON = msgspec.json.Encoder()

# The rows, their audit lines and their events in one statement (data-
# modifying CTEs always run to completion). An issuance whose transaction id
# is taken (committed before, by a concurrent batch that committed while
# this insert waited for it, or earlier in this very batch) inserts nothing,
# and its line and event go with it. Rows go in the order of their keys, so
# that two batches inserting the same keys cannot deadlock.
_WRITE = """WITH inserted AS (
    INSERT INTO partner_issuances (id, program_id, partner_id, company_id, transaction_id,
        member_id, identifier, points, purchase_amount_minor, currency, contract_version,
        rule_version, transfer_id, request_digest)
    SELECT i.id, $1, i.partner_id, i.company_id, i.transaction_id, i.member_id, i.identifier,
        i.points, i.purchase_amount_minor, i.currency, i.contract_version, i.rule_version,
        i.transfer_id, i.request_digest
    FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::text[],
        $8::bigint[], $9::bigint[], $10::text[], $11::integer[], $12::integer[], $13::uuid[],
        $14::bytea[]) WITH ORDINALITY
        AS i(id, partner_id, company_id, transaction_id, member_id, identifier, points,
            purchase_amount_minor, currency, contract_version, rule_version, transfer_id,
            request_digest, n)
    ORDER BY i.n
    ON CONFLICT (partner_id, transaction_id) DO NOTHING
    RETURNING id, created_at
), audited AS (
    INSERT INTO audit_events (id, actor, action, subject, details)
    SELECT l.id, l.actor, 'partner.issue', l.subject, l.details::jsonb
    FROM unnest($15::uuid[], $16::uuid[], $17::text[], $18::text[], $19::text[])
        WITH ORDINALITY AS l(id, issuance_id, actor, subject, details, n)
    WHERE l.issuance_id IN (SELECT id FROM inserted)
    ORDER BY l.n
), emitted AS (
    -- In the order of the requests: a subject's events are handed on in
    -- the order of their positions.
    INSERT INTO outbox_events (id, topic, subject, payload)
    SELECT e.id, $20, e.subject, e.payload::jsonb
    FROM unnest($21::uuid[], $16::uuid[], $22::text[], $23::text[])
        WITH ORDINALITY AS e(id, issuance_id, subject, payload, n)
    WHERE e.issuance_id IN (SELECT id FROM inserted)
    ORDER BY e.n
)
SELECT id, created_at FROM inserted"""


class PreparedIssuance(msgspec.Struct, kw_only=True, frozen=True):
    """An issuance ready to be written: its parties found, its points priced,
    its ids chosen."""

    request: IssuanceRequest
    principal: Principal
    acting: Acting
    points: int
    rule_version: int | None
    #: The request's fingerprint (``partners.issuance.request_digest``).
    digest: bytes
    id: uuid.UUID
    #: None when the purchase earned nothing: nothing moves.
    transfer_id: uuid.UUID | None

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        """What makes it idempotent: its transaction id, per contract holder."""
        return self.acting.holder_id, self.request.transaction_id


Answer = IssuanceView | DomainError


class _Refused(Exception):
    """Leaves the transaction (rolled back) with the ledger's refusals, by
    position in the batch."""

    def __init__(self, refusals: dict[int, DomainError]) -> None:
        self.refusals = refusals


async def record_issuances(
    db: asyncpg.Pool | Connection, ledger: Ledger, issuances: Sequence[PreparedIssuance]
) -> list[Answer]:
    """Write issuances of one program (see the module's docstring): one
    answer per issuance, in order, the view of the issuance or the refusal
    of that issuance alone. On a pool, in transactions of their own; on a
    connection, in transactions (or savepoints) of it. Database errors
    propagate: they are the batch's (``ledger.batching.isolate_faults``
    tells whose)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as connection:
            return await record_issuances(connection, ledger, issuances)
    if len({i.acting.program_id for i in issuances}) > 1:
        # A transaction that has posted to one ledger must not then wait on
        # locks another program's writes hold.
        raise ValueError("one program's issuances at a time")
    answers: dict[int, Answer] = {}
    pending = list(range(len(issuances)))
    while pending:
        batch = [issuances[p] for p in pending]
        try:
            async with db.transaction():
                written = await _write(db, ledger, batch)
        except _Refused as refused:
            for position, refusal in refused.refusals.items():
                answers[pending[position]] = refusal
            pending = [p for n, p in enumerate(pending) if n not in refused.refusals]
            continue
        answers.update(zip(pending, written, strict=True))
        break
    return [answers[p] for p in range(len(issuances))]


async def _write(db: Connection, ledger: Ledger, batch: list[PreparedIssuance]) -> list[Answer]:
    """The batch in the open transaction; raises ``_Refused`` if the ledger
    refused any of its transfers (the caller rolls back)."""
    issued_at = await _insert(db, batch)
    answers: list[Answer | None] = [None] * len(batch)
    taken = [n for n, issuance in enumerate(batch) if issuance.id not in issued_at]
    if taken:
        # Rare: retries of a transaction id. Answered from what is there.
        found = await issued_under(
            db, batch[0].acting.program_id, sorted({batch[n].key for n in taken})
        )
        for n in taken:
            answers[n] = _replay(batch[n], found.get(batch[n].key))
    moving = [n for n, issuance in enumerate(batch) if answers[n] is None and issuance.transfer_id]
    if moving:
        # Checked again in the writing transaction (prepare_issuance read it
        # outside any): the end-of-earning lock, taken in share mode here,
        # orders it with a sunset being scheduled.
        acting = batch[0].acting
        end = await end_of_earning(db, acting.program_id)
        if end is not None:
            refused: dict[int, DomainError] = {
                n: late
                for n in moving
                if (late := end.refusal(acting.program_slug, issued_at[batch[n].id],
                                           issued_at[batch[n].id])) is not None
            }  # fmt: skip
            if refused:
                raise _Refused(refused)
        # Last: from the ledger call to the commit the transaction holds the
        # program ledger's lock, so nothing after it waits on anything.
        outcomes = await ledger.create_transfers_within(db, [_transfer(batch[n]) for n in moving])
        refusals = {
            n: refusal
            for n, outcome in zip(moving, outcomes, strict=True)
            if (refusal := _refusal(batch[n], outcome)) is not None
        }
        if refusals:
            raise _Refused(refusals)
    return [
        answer if answer is not None else _view(issuance, issued_at[issuance.id])
        for issuance, answer in zip(batch, answers, strict=True)
    ]


async def _insert(db: Connection, batch: list[PreparedIssuance]) -> dict[uuid.UUID, Any]:
    """The rows, lines and events of the batch; when each issuance that
    took its transaction id was made, by id."""
    rows = sorted(batch, key=lambda i: i.key)
    lines = [_line(i) for i in batch]
    sent = [_event(i) for i in batch]
    written = await db.fetch(
        _WRITE,
        batch[0].acting.program_id,
        [i.id for i in rows],
        [i.acting.holder_id for i in rows],
        [i.acting.company_id for i in rows],
        [i.request.transaction_id for i in rows],
        [i.acting.member_id for i in rows],
        [i.request.identifier for i in rows],
        [i.points for i in rows],
        [i.request.purchase_amount_minor for i in rows],
        [i.request.currency for i in rows],
        [i.acting.contract_version for i in rows],
        [i.rule_version for i in rows],
        [i.transfer_id for i in rows],
        [i.digest for i in rows],
        [new_id() for _ in batch],
        [i.id for i in batch],
        [i.principal.actor for i in batch],
        [subject for subject, _ in lines],
        [details for _, details in lines],
        events.POINTS_ISSUED,
        [new_id() for _ in batch],
        [subject for subject, _ in sent],
        [payload for _, payload in sent],
    )
    return {row["id"]: row["created_at"] for row in written}


def _line(issuance: PreparedIssuance) -> tuple[str, str]:
    """The ``partner.issue`` audit line's subject and details."""
    acting = issuance.acting
    subject = (
        f"program:{acting.program_slug}:partner:{acting.holder_slug}"
        f":issuance:{issuance.request.transaction_id}"
    )
    details = {
        "issuance": str(issuance.id),
        "points": issuance.points,
        "company": acting.company_slug,
        "member": acting.external_id,
    }
    return subject, _JSON.encode(details).decode()


def _event(issuance: PreparedIssuance) -> tuple[str, str]:
    """The ``partner.points_issued`` event's subject (the acting company) and payload."""
    acting, request = issuance.acting, issuance.request
    payload: dict[str, Any] = {
        "issuance_id": str(issuance.id),
        "transaction_id": request.transaction_id,
        # As the partner named the member: a link's identifier stays one.
        "member": request.member,
        "identifier": request.identifier,
        "points": issuance.points,
        "company": acting.company_slug,
        "partner": acting.holder_slug,
    }
    return events.subject(acting.company_id), _JSON.encode(payload).decode()


def _transfer(issuance: PreparedIssuance) -> Transfer:
    acting = issuance.acting
    assert issuance.transfer_id is not None
    return Transfer(
        id=issuance.transfer_id,
        debit_account_id=partner_account_id(
            acting.program_id, acting.holder_id, AccountCode.PARTNER_ISSUANCE
        ),
        credit_account_id=acting.wallet_account_id,
        amount=issuance.points,
        ledger=acting.ledger_id,
        code=TransferCode.PARTNER_ISSUANCE,
        metadata={
            "partner": acting.holder_slug,
            "company": acting.company_slug,
            # What the member's history shows.
            "partner_name": acting.company_name,
            "transaction_id": issuance.request.transaction_id,
        },
    )


def _refusal(issuance: PreparedIssuance, outcome: TransferOutcome) -> DomainError | None:
    if outcome.result in ("ok", "exists"):
        return None
    if outcome.result == "exceeds_credits":
        return FundingExhausted(
            f"partner {issuance.acting.holder_slug!r} may not issue {issuance.points} more"
            " points: its funding (prepaid blocks or credit line) is used up"
        )
    return LedgerRefused(f"the issuance's transfer was refused: {outcome.result}")


def _replay(issuance: PreparedIssuance, row: asyncpg.Record | None) -> Answer:
    """The answer to an issuance whose transaction id was taken: the first
    issuance again if it is the same request, else a conflict."""
    if row is None:
        # Never seen: the insert skips only for a row this statement's
        # successors see. Answered as a race, should it ever happen.
        return Conflict(
            f"transaction {issuance.request.transaction_id!r} was being issued by another"
            " request; send it again"
        )
    if bytes(row["request_digest"]) != issuance.digest:
        return Conflict(
            f"transaction {issuance.request.transaction_id!r} was issued with other fields"
        )
    return view_of(row, replayed=True)


def _view(issuance: PreparedIssuance, issued_at: Any) -> IssuanceView:
    acting, request = issuance.acting, issuance.request
    return IssuanceView(
        id=str(issuance.id),
        transaction_id=request.transaction_id,
        member=request.member,
        identifier=request.identifier,
        points=issuance.points,
        purchase_amount_minor=request.purchase_amount_minor,
        currency=request.currency,
        company=acting.company_slug,
        partner=acting.holder_slug,
        contract_version=acting.contract_version,
        rule_version=issuance.rule_version,
        issued_at=issued_at,
    )
