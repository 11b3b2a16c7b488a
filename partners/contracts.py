"""Partner contracts: versions drafted and published to be in force from a
stated time (as earn rule versions are), the firm whose contract a company
acts under, and the ledger accounts a contract opens.

A published version's terms (roles, prices, shares, currency, tax codes)
are in force from its ``effective_from`` until a published version with a
later start. Its credit limit is different: headroom is a ledger balance,
moved when the version is published (the ledger cannot post in the
future), so a postpaid partner's credit line is that of the version
published last.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import AccountCode, TransferCode, derived_id, partner_account_id
from core.errors import NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal, PrincipalKind
from ledger import Account, AccountFlags, Ledger, Transfer
from partners.coalition_errors import CreditLineInUse, InvalidContract, PartnerNotActive
from partners.coalition_models import ContractStatus, FundingModel, PartnerContract
from partners.contract_schemas import ContractTerms, ContractView
from partners.models import Partner, PartnerStatus
from rewards.connections import session_connection
from rewards.errors import LedgerRefused, PublishInPast, VersionAlreadyPublished

#: Levels walked up at most to find a contract holder: past any depth a
#: group may have (``partners.firm_schemas.DEPTH_MAX``).
_WALK_BOUND = 64

#: The nearest firm, from the company up, with a published contract of its own.
HOLDER_SQL = """
    WITH RECURSIVE up (id, parent_id, level) AS (
        SELECT id, parent_id, 1 FROM partners WHERE id = :company AND program_id = :program
        UNION ALL
        SELECT p.id, p.parent_id, up.level + 1
        FROM partners p JOIN up ON p.id = up.parent_id
        WHERE p.program_id = :program AND up.level < :bound
    )
    SELECT up.id FROM up
    WHERE EXISTS (
        SELECT 1 FROM partner_contracts c WHERE c.partner_id = up.id AND c.status = 'published'
    )
    ORDER BY up.level LIMIT 1
"""


def _subject(program: Program, partner: Partner, version: int) -> str:
    return f"program:{program.slug}:partner:{partner.slug}:contract:{version}"


async def lock_partner(session: AsyncSession, partner: Partner) -> Partner:
    """Lock the firm's row to the end of the transaction, for a change of
    its contracts or fundings: of two at once the second sees the first's.
    ``FOR NO KEY UPDATE``: issuances, which only refer to it, go on."""
    locked = await session.scalar(
        select(Partner)
        .where(Partner.id == partner.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    assert locked is not None  # partners are never deleted
    return locked


def _stored(terms: ContractTerms, partner: Partner) -> dict[str, Any]:
    """The terms as the row stores them, checked for what a schema cannot say."""
    postpaid = terms.funding_model == FundingModel.POSTPAID
    if postpaid and terms.credit_limit_points is None:
        raise InvalidContract("credit_limit_points: a postpaid contract needs a credit limit")
    if not postpaid and terms.credit_limit_points:
        raise InvalidContract("credit_limit_points: a prepaid contract has no credit limit")
    return {
        "roles": terms.roles.value,
        "issue_price_per_point": Decimal(terms.issue_price_per_point),
        "redemption_rate_per_point": Decimal(terms.redemption_rate_per_point),
        "issuance_share": Decimal(terms.issuance_share),
        "funding_model": terms.funding_model.value,
        "credit_limit_points": terms.credit_limit_points or 0,
        "settlement_period": terms.settlement_period.value,
        "currency": terms.currency or partner.currency,
        "issuance_tax_code": terms.tax_codes.issuance,
        "redemption_tax_code": terms.tax_codes.redemption,
        "fee_tax_code": terms.tax_codes.fees,
        "prepaid_credit_minor": terms.prepaid_credit_minor,
        "minimum_commitment_minor": terms.minimum_commitment_minor,
        "note": terms.note,
    }


async def draft_contract(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    terms: ContractTerms,
    *,
    principal: Principal,
) -> tuple[ContractView, bool]:
    """A new draft version of the partner's contract (numbered after its
    last), audited; and whether it is new. The very terms of the latest
    version while that is still a draft answer that draft and write
    nothing (a retry after a lost answer drafts no second version), as
    earn rule drafts do. Under the partner's row lock. ``partner`` comes
    from a look-up within the principal's tenant."""
    partner = await lock_partner(session, partner)
    fields = _stored(terms, partner)
    latest = await session.scalar(
        select(PartnerContract)
        .where(PartnerContract.partner_id == partner.id)
        .order_by(PartnerContract.version.desc())
        .limit(1)
    )
    if (
        latest is not None
        and latest.status == ContractStatus.DRAFT
        and all(getattr(latest, name) == value for name, value in fields.items())
    ):
        return ContractView.of(latest), False
    contract = PartnerContract(
        program_id=program.id,
        partner_id=partner.id,
        version=(latest.version if latest is not None else 0) + 1,
        status=ContractStatus.DRAFT,
        **fields,
    )
    session.add(contract)
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.contract.draft",
        _subject(program, partner, contract.version),
        terms,
    )
    return ContractView.of(contract), True


def _readable(principal: Principal, partner: Partner) -> Select[PartnerContract]:
    """The partner's versions the principal may read: of its program only,
    and for a partner principal of the firms within its reach only; any
    other is not found, as a missing one."""
    query = select(PartnerContract).where(PartnerContract.partner_id == partner.id)
    if principal.program_id is not None:
        query = query.where(PartnerContract.program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        query = query.where(PartnerContract.partner_id.in_(principal.partner_ids))
    return query


async def get_contract(
    session: AsyncSession, partner: Partner, version: int, *, principal: Principal
) -> PartnerContract:
    contract = await session.scalar(
        _readable(principal, partner).where(PartnerContract.version == version)
    )
    if contract is None:
        raise NotFound(f"no contract version {version} of partner {partner.slug!r}")
    return contract


async def list_contracts(
    session: AsyncSession,
    partner: Partner,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[ContractView]:
    """The partner's versions, newest first (drafts too)."""
    query = _readable(principal, partner)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(PartnerContract.id < after)
    rows = list(await session.scalars(query.order_by(PartnerContract.id.desc()).limit(limit + 1)))
    return page_of([ContractView.of(c) for c in rows], [c.id for c in rows], limit)


async def publish_contract(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    version: int,
    effective_from: datetime,
    now: datetime,
    *,
    principal: Principal,
) -> ContractView:
    """Publish a draft to be in force from ``effective_from``, audited; the
    same publication again answers it and writes nothing.

    The first publication opens the partner's issuance and acceptance
    accounts (ids derived from the partner: opening again is a no-op).
    Each publication moves the partner's credit line to this version's
    limit, by a transfer of the difference (its id derived from the
    version) in the session's transaction: a lower limit than the headroom
    left is refused by the ledger itself (``CreditLineInUse``), and nothing
    of the publication is kept."""
    partner = await lock_partner(session, partner)
    contract = await get_contract(session, partner, version, principal=principal)
    published = contract.status == ContractStatus.PUBLISHED
    if published and contract.effective_from == effective_from:
        return ContractView.of(contract)
    if partner.status == PartnerStatus.OFFBOARDED:
        raise PartnerNotActive(f"partner {partner.slug!r} is offboarded")
    if published:
        raise VersionAlreadyPublished(
            f"version {version} is already published from {contract.effective_from}"
        )
    if effective_from < now:
        await _check_start_in_past(session, partner, contract, effective_from)
    granted = await credit_line(session, partner)
    await open_accounts(ledger, program, partner)
    contract.status = ContractStatus.PUBLISHED
    contract.effective_from = effective_from
    contract.published_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.contract.publish",
        _subject(program, partner, version),
        {"effective_from": effective_from, "credit_line": contract.credit_limit_points},
    )
    # Last: from the ledger call to the commit this transaction holds the
    # program ledger's lock, so nothing after it may wait on anything.
    await _move_credit_line(
        session, ledger, program, partner, version, contract.credit_limit_points - granted
    )
    return ContractView.of(contract)


async def _check_start_in_past(
    session: AsyncSession, partner: Partner, contract: PartnerContract, effective_from: datetime
) -> None:
    """Only a partner's first published version may start in the past, and
    no earlier than the partner's creation: nothing was issued under a
    contract before it, and a history brought in since then counts."""
    other = await session.scalar(
        select(PartnerContract.version)
        .where(
            PartnerContract.partner_id == partner.id,
            PartnerContract.status == ContractStatus.PUBLISHED,
            PartnerContract.id != contract.id,
        )
        .limit(1)
    )
    when = effective_from.isoformat()
    if other is not None:
        raise PublishInPast(
            f"effective_from {when} is in the past: only a partner's first published version"
            f" may start in the past, and version {other} is published"
        )
    if effective_from < partner.created_at:
        raise PublishInPast(
            f"effective_from {when} is before the partner was created"
            f" ({partner.created_at.isoformat()})"
        )


async def credit_line(session: AsyncSession, partner: Partner) -> int:
    """The credit line granted now: the limit of the version published last."""
    limit = await session.scalar(
        select(PartnerContract.credit_limit_points)
        .where(
            PartnerContract.partner_id == partner.id,
            PartnerContract.status == ContractStatus.PUBLISHED,
        )
        .order_by(PartnerContract.published_at.desc(), PartnerContract.version.desc())
        .limit(1)
    )
    return int(limit or 0)


async def latest_published(session: AsyncSession, partner: Partner) -> PartnerContract | None:
    return await session.scalar(
        select(PartnerContract)
        .where(
            PartnerContract.partner_id == partner.id,
            PartnerContract.status == ContractStatus.PUBLISHED,
        )
        .order_by(PartnerContract.published_at.desc(), PartnerContract.version.desc())
        .limit(1)
    )


async def contract_in_force(
    session: AsyncSession, holder_id: uuid.UUID, at: datetime
) -> PartnerContract | None:
    """The published version with the latest start not after ``at``."""
    return await session.scalar(
        select(PartnerContract)
        .where(
            PartnerContract.partner_id == holder_id,
            PartnerContract.status == ContractStatus.PUBLISHED,
            PartnerContract.effective_from <= at,
        )
        .order_by(PartnerContract.effective_from.desc(), PartnerContract.version.desc())
        .limit(1)
    )


async def contract_holder(
    session: AsyncSession, program: Program, company_id: uuid.UUID
) -> uuid.UUID | None:
    """The firm whose contract ``company_id`` acts under: itself if it has a
    published contract, else its nearest ancestor that has one."""
    found = await session.scalar(
        text(HOLDER_SQL), {"company": company_id, "program": program.id, "bound": _WALK_BOUND}
    )
    return found if isinstance(found, uuid.UUID) else None


def issuance_account(program: Program, holder_id: uuid.UUID) -> uuid.UUID:
    return partner_account_id(program.id, holder_id, AccountCode.PARTNER_ISSUANCE)


def acceptance_account(program: Program, holder_id: uuid.UUID) -> uuid.UUID:
    return partner_account_id(program.id, holder_id, AccountCode.PARTNER_ACCEPTANCE)


async def open_accounts(ledger: Ledger, program: Program, partner: Partner) -> None:
    """The partner's issuance and acceptance accounts. Both are bounded:
    the issuance account's balance is what the partner may still issue, the
    acceptance account's what it may still refund, so the ledger refuses
    any transfer beyond them whatever the race. Commits on its own (ids
    derived from the partner: a retry opens nothing twice)."""
    bounded = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    metadata = {"partner": partner.slug}
    outcomes = await ledger.create_accounts(
        [
            Account(
                id=issuance_account(program, partner.id),
                ledger=program.ledger_id,
                code=AccountCode.PARTNER_ISSUANCE,
                flags=bounded,
                metadata=metadata,
            ),
            Account(
                id=acceptance_account(program, partner.id),
                ledger=program.ledger_id,
                code=AccountCode.PARTNER_ACCEPTANCE,
                flags=bounded,
                metadata=metadata,
            ),
        ]
    )
    refused = [o for o in outcomes if o.result not in ("ok", "exists")]
    if refused:
        raise LedgerRefused(
            f"the partner's account {refused[0].id} was refused: {refused[0].result}"
        )


async def _move_credit_line(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    version: int,
    change: int,
) -> None:
    if change == 0:
        return
    account = issuance_account(program, partner.id)
    grant = change > 0
    [outcome] = await ledger.create_transfers_within(
        await session_connection(session),
        [
            Transfer(
                id=derived_id(program.id, "partner-credit-line", str(partner.id), str(version)),
                debit_account_id=program.issuance_account_id if grant else account,
                credit_account_id=account if grant else program.issuance_account_id,
                amount=abs(change),
                ledger=program.ledger_id,
                code=TransferCode.PARTNER_CREDIT_LINE,
                metadata={"partner": partner.slug, "contract_version": version},
            )
        ],
    )
    if outcome.result == "exceeds_credits":
        raise CreditLineInUse(
            f"the credit line cannot shrink by {-change} points: the partner has issued"
            " more of it than would be left"
        )
    if outcome.result not in ("ok", "exists"):
        raise LedgerRefused(f"the credit line's transfer was refused: {outcome.result}")
