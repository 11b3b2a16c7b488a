"""A member's data: all of it on request, and erasure of what is personal.

Erasure removes the personal data (email, phone, consents) and replaces the
operator's external id by a pseudonym; the ledger keeps every transfer, on
accounts whose ids never contained personal data, so the books still balance
and reconcile. The operator's external ids should be opaque ids, not e-mail
addresses: the append-only audit trail names members by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import NotFound
from core.member_data import MemberData, Records
from core.members import find_member, lock_member
from core.models import Member, MemberStatus, Program
from core.principal import Principal
from ledger import Ledger, TransferState
from rewards.models import Gift, PointHold, Purchase, PurchaseReturn, Redemption
from rewards.programs import MemberBalance, member_balance
from rewards.pseudonyms import PREFIX, erasures, last_erased, pseudonym


class MemberExport(msgspec.Struct, kw_only=True):
    program: Annotated[str, msgspec.Meta(description="The program's slug.")]
    member: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description="What is kept of the member: external_id, email, phone, consents,"
            " status, tier_code, tier_since, created_at."
        ),
    ]
    balance: Annotated[MemberBalance, msgspec.Meta(description="The member's points now.")]
    purchases: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            description="Purchases, oldest first: order_id, occurred_at, amount_minor,"
            " currency, items, points, points_reversed, returned_minor."
        ),
    ]
    returns: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            description="Returns of those purchases: return_id, amount_minor,"
            " points_reversed, debt_points, created_at."
        ),
    ]
    redemptions: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            description="Rewards redeemed: idempotency_key, quantity, points, created_at."
        ),
    ]
    gifts_sent: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(description="Points given to other members: points, created_at."),
    ]
    gifts_received: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(description="Points received from other members: points, created_at."),
    ]
    holds: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            description="Points held for orders: order_ref, points, status, captured_points,"
            " created_at."
        ),
    ]
    events: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            description="Behaviour events, oldest first: event_id, event, occurred_at,"
            " points, limited_by."
        ),
    ]
    ledger: Annotated[
        list[TransferState],
        msgspec.Meta(
            description="Every ledger transfer of the member's wallet and debt accounts,"
            " oldest first."
        ),
    ]
    modules: Annotated[
        dict[str, Records],
        msgspec.Meta(
            description="What the platform's other modules keep of the member, by module"
            " (`partners`: the identifiers the member linked at partners)."
        ),
    ]
    exported_at: Annotated[datetime, msgspec.Meta(description="When the export was made.")]


def _row(obj: Any, *fields: str) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}


async def export_member(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    now: datetime,
    *,
    principal: Principal,
    others: Sequence[MemberData],
) -> MemberExport:
    """All of the member's data, with what ``others`` (the installation's
    other modules) keep of them; each export is audited (who read it, when)."""
    await audit.record(
        session, principal, "member.export", f"program:{program.slug}:member:{member.external_id}"
    )
    purchases = list(
        await session.scalars(
            select(Purchase).where(Purchase.member_id == member.id).order_by(Purchase.occurred_at)
        )
    )
    returns = list(
        await session.scalars(
            select(PurchaseReturn).where(PurchaseReturn.purchase_id.in_([p.id for p in purchases]))
        )
    )
    redemptions = list(
        await session.scalars(select(Redemption).where(Redemption.member_id == member.id))
    )
    sent = list(await session.scalars(select(Gift).where(Gift.sender_id == member.id)))
    received = list(await session.scalars(select(Gift).where(Gift.recipient_id == member.id)))
    holds = list(await session.scalars(select(PointHold).where(PointHold.member_id == member.id)))
    events = (
        (
            await session.execute(
                text(
                    "SELECT event_id, event, occurred_at, points, limited_by FROM behaviour_events"
                    " WHERE member_id = :m ORDER BY occurred_at"
                ),
                {"m": member.id},
            )
        )
        .mappings()
        .all()
    )
    history: list[TransferState] = []
    for account in filter(None, (member.wallet_account_id, member.debt_account_id)):
        cursor = None
        while True:
            page = await ledger.history(account, limit=500, cursor=cursor)
            history.extend(page.transfers)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return MemberExport(
        program=program.slug,
        member=_row(
            member,
            "external_id",
            "email",
            "phone",
            "consents",
            "status",
            "tier_code",
            "tier_since",
            "created_at",
        ),
        balance=await member_balance(ledger, program, member),
        purchases=[
            _row(
                p,
                "order_id",
                "occurred_at",
                "amount_minor",
                "currency",
                "items",
                "points",
                "points_reversed",
                "returned_minor",
            )
            for p in purchases
        ],
        returns=[
            _row(r, "return_id", "amount_minor", "points_reversed", "debt_points", "created_at")
            for r in returns
        ],
        redemptions=[
            _row(r, "idempotency_key", "quantity", "points", "created_at") for r in redemptions
        ],
        gifts_sent=[_row(g, "points", "created_at") for g in sent],
        gifts_received=[_row(g, "points", "created_at") for g in received],
        holds=[
            _row(h, "order_ref", "points", "status", "captured_points", "created_at") for h in holds
        ],
        events=[dict(e) for e in events],
        ledger=sorted(history, key=lambda t: t.timestamp),
        modules={keeper.name: await keeper.export(session, member) for keeper in others},
        exported_at=now,
    )


async def erase_member(
    session: AsyncSession,
    program: Program,
    member: Member,
    *,
    principal: Principal,
    others: Sequence[MemberData],
) -> str:
    """Remove the member's personal data, and what of it ``others`` (the
    installation's other modules) keep, audited under the pseudonym;
    returns the pseudonym now in its place. The external id is free again:
    enrolled anew, it is a new member (``rewards.programs.enrol_member``).
    A member erased already stays as they are, and nothing is audited again."""
    # Under the member's lock, read afresh: of two erasures at once, the
    # second finds the member erased and audits nothing.
    await lock_member(session, member.id)
    await session.refresh(member)
    if member.external_id.startswith(PREFIX):
        return member.external_id
    alias = pseudonym(
        program, member.external_id, await erasures(session, program, member.external_id)
    )
    member.external_id = alias
    member.email = None
    member.phone = None
    member.consents = {}
    member.status = MemberStatus.CLOSED
    for keeper in others:
        await keeper.erase(session, member)
    await session.flush()
    await audit.record(session, principal, "member.erase", f"program:{program.slug}:member:{alias}")
    return alias


async def erase_by_external_id(
    session: AsyncSession,
    program: Program,
    external_id: str,
    *,
    principal: Principal,
    others: Sequence[MemberData],
) -> str:
    """Erase the member the operator knows as ``external_id``; returns the
    pseudonym in its place. Idempotent: once the erasure committed, no
    member goes by the id any longer, so the same request again (a retry
    after a lost answer) answers the pseudonym of the id's last erased
    member and writes nothing. An id never enrolled is not found. An id
    enrolled again after its erasure names the new member, who is erased in
    turn."""
    member = await find_member(session, program, external_id)
    if member is not None:
        return await erase_member(session, program, member, principal=principal, others=others)
    alias = await last_erased(session, program, external_id)
    if alias is None:
        raise NotFound(f"no member {external_id!r} in program {program.slug!r}")
    return alias
