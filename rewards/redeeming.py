"""Spending points: catalog rewards and member-to-member gifts.

Each use case is idempotent by the member app's key: the ledger transfer's id
derives from it, and a repeated key answers the first outcome. Concurrent
requests never spend the same points twice: the ledger refuses a debit the
wallet cannot cover, and stock and the daily gift allowance are counted under
a row lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.codes import TransferCode, derived_id
from core.errors import AlreadyExists, IdempotencyKeyReused, NotFound
from core.members import find_member, lock_member, require_active
from core.models import Member, Program
from core.principal import Principal
from core.programs import lock_program
from ledger import Ledger, Transfer
from ledger.bounds import (
    MOMENT_RULE,
    ExternalId,
    NonEmpty,
    NonNegativeInteger,
    PositiveBigInt,
    Text100,
    Text200,
    check_moment,
)
from rewards.errors import GiftLimitExceeded, GiftToSelf, RewardUnavailable
from rewards.models import CatalogReward, Gift, Redemption
from rewards.programs import record_transfers
from rewards.rules import Moment

Key = ExternalId


_NOT_ENOUGH = "the wallet does not hold enough points"
_SKU = "The reward's SKU, its id in the program's catalog."
_REPLAYED = (
    "True when the Idempotency-Key was used before: the first answer again, nothing spent twice."
)


class RewardSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sku: Annotated[Text100, NonEmpty, msgspec.Meta(description=_SKU)]
    name: Annotated[Text200, NonEmpty, msgspec.Meta(description="A name for members to read.")]
    points_price: Annotated[
        PositiveBigInt, msgspec.Meta(description="Points one unit of the reward costs.")
    ]
    stock: (
        Annotated[
            NonNegativeInteger,
            msgspec.Meta(description="Units left to redeem; none for unlimited."),
        ]
        | None
    ) = None
    valid_from: (
        Annotated[
            Moment,
            msgspec.Meta(description=f"When it can first be redeemed; none for now. {MOMENT_RULE}"),
        ]
        | None
    ) = None
    valid_until: (
        Annotated[
            Moment,
            msgspec.Meta(
                description="When it can no longer be redeemed (exclusive); none for never."
                f" {MOMENT_RULE}"
            ),
        ]
        | None
    ) = None
    fulfilling_partner: (
        Annotated[
            Text100,
            msgspec.Meta(description="The partner who delivers the reward, if not the program."),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        check_moment("valid_from", self.valid_from)
        check_moment("valid_until", self.valid_until)


class RewardView(msgspec.Struct, kw_only=True, frozen=True):
    sku: Annotated[str, msgspec.Meta(description=_SKU)]
    name: Annotated[str, msgspec.Meta(description="A name for members to read.")]
    points_price: Annotated[int, msgspec.Meta(description="Points one unit costs.")]
    stock: Annotated[
        int | None, msgspec.Meta(description="Units left to redeem; none for unlimited.")
    ]
    valid_until: Annotated[
        datetime | None,
        msgspec.Meta(description="When it can no longer be redeemed; none for never."),
    ]

    @classmethod
    def of(cls, reward: CatalogReward) -> RewardView:
        return cls(
            sku=reward.sku,
            name=reward.name,
            points_price=reward.points_price,
            stock=reward.stock,
            # In UTC, as stored: a new reward answers as it reads back later.
            valid_until=reward.valid_until.astimezone(UTC) if reward.valid_until else None,
        )


class RedemptionRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sku: Annotated[
        Text100, NonEmpty, msgspec.Meta(description="The catalog reward's SKU (see /me/rewards).")
    ]
    quantity: Annotated[
        int, msgspec.Meta(ge=1, le=100, description="Units to redeem; all are paid at once.")
    ] = 1


class RedemptionOutcome(msgspec.Struct, kw_only=True, frozen=True):
    sku: Annotated[str, msgspec.Meta(description="The reward redeemed.")]
    quantity: Annotated[int, msgspec.Meta(description="Units redeemed.")]
    points: Annotated[int, msgspec.Meta(description="Points spent: the price times quantity.")]
    replayed: Annotated[bool, msgspec.Meta(description=_REPLAYED)]


class GiftRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    to: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The receiving member's external id, in the same program (not the sender)."
        ),
    ]
    points: Annotated[
        PositiveBigInt,
        msgspec.Meta(description="Points to give, within the program's daily gift limit."),
    ]


class GiftOutcome(msgspec.Struct, kw_only=True, frozen=True):
    to: Annotated[str, msgspec.Meta(description="The receiving member's external id.")]
    points: Annotated[int, msgspec.Meta(description="Points given.")]
    replayed: Annotated[bool, msgspec.Meta(description=_REPLAYED)]


async def add_reward(
    session: AsyncSession, program: Program, spec: RewardSpec, *, principal: Principal
) -> tuple[CatalogReward, bool]:
    """Add a reward to the catalog, audited; and whether it is new.
    Idempotent by SKU: the same spec again (a retry after a lost answer)
    answers the reward and writes nothing; another spec under the SKU is
    refused, naming ``sku``. Compared as the reward stands now: once a unit
    is redeemed, its ``stock`` is no longer the spec's."""
    await lock_program(session, program)
    fields = msgspec.structs.asdict(spec)
    existing = await session.scalar(
        select(CatalogReward).where(
            CatalogReward.program_id == program.id, CatalogReward.sku == spec.sku
        )
    )
    if existing is not None:
        if different := [
            name for name, value in fields.items() if getattr(existing, name) != value
        ]:
            raise AlreadyExists(
                f"a reward with sku {spec.sku!r} is in the program's catalog with other"
                f" {', '.join(different)}",
                field="sku",
            )
        return existing, False
    reward = CatalogReward(program_id=program.id, **fields)
    session.add(reward)
    await session.flush()
    await audit.record(
        session, principal, "catalog.add", f"program:{program.slug}:reward:{spec.sku}", spec
    )
    return reward, True


async def list_rewards(session: AsyncSession, program: Program, now: datetime) -> list[RewardView]:
    rewards = await session.scalars(
        select(CatalogReward)
        .where(
            CatalogReward.program_id == program.id,
            (CatalogReward.valid_from.is_(None)) | (CatalogReward.valid_from <= now),
            (CatalogReward.valid_until.is_(None)) | (CatalogReward.valid_until > now),
        )
        .order_by(CatalogReward.points_price, CatalogReward.sku)
    )
    return [RewardView.of(r) for r in rewards]


async def redeem(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    key: str,
    request: RedemptionRequest,
    now: datetime,
) -> RedemptionOutcome:
    # Looked up under the lock: a duplicate sent at the same moment waits
    # for the first to commit, then answers its outcome.
    await lock_member(session, member.id)
    earlier = await _earlier_redemption(session, member, key, request)
    if earlier is not None:
        return earlier
    require_active(member)
    reward = await session.scalar(
        select(CatalogReward)
        .where(CatalogReward.program_id == program.id, CatalogReward.sku == request.sku)
        .with_for_update()
    )
    if reward is None or not _valid(reward, now):
        raise RewardUnavailable(f"{request.sku!r} is not available")
    if reward.stock is not None:
        if reward.stock < request.quantity:
            raise RewardUnavailable(f"{request.sku!r} is out of stock")
        reward.stock -= request.quantity
    points = reward.points_price * request.quantity
    # From the member's id, not their external id: one enrolled again after
    # an erasure is another member, whose keys start afresh.
    transfer_id = derived_id(program.id, "redeem", str(member.id), key)
    await record_transfers(
        ledger,
        [
            Transfer(
                id=transfer_id,
                debit_account_id=member.wallet_account_id,
                credit_account_id=program.redemption_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.CATALOG_REDEMPTION,
                metadata={"sku": reward.sku, "quantity": request.quantity},
            )
        ],
        insufficient=_NOT_ENOUGH,
    )
    session.add(
        Redemption(
            program_id=program.id,
            member_id=member.id,
            idempotency_key=key,
            reward_id=reward.id,
            quantity=request.quantity,
            points=points,
            transfer_id=transfer_id,
        )
    )
    await session.flush()
    return RedemptionOutcome(
        sku=reward.sku, quantity=request.quantity, points=points, replayed=False
    )


async def _earlier_redemption(
    session: AsyncSession, member: Member, key: str, request: RedemptionRequest
) -> RedemptionOutcome | None:
    """The outcome recorded under ``key``, if any (the same request only)."""
    earlier = await session.scalar(
        select(Redemption).where(
            Redemption.member_id == member.id, Redemption.idempotency_key == key
        )
    )
    if earlier is None:
        return None
    redeemed = await session.get_one(CatalogReward, earlier.reward_id)
    if (redeemed.sku, earlier.quantity) != (request.sku, request.quantity):
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for another redemption")
    return RedemptionOutcome(
        sku=redeemed.sku, quantity=earlier.quantity, points=earlier.points, replayed=True
    )


async def give_gift(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    sender: Member,
    key: str,
    request: GiftRequest,
    now: datetime,
) -> GiftOutcome:
    recipient = await find_member(session, program, request.to)
    # The sender's row lock makes the day's total exact under concurrency;
    # the key is looked up under it, so a duplicate sent at the same moment
    # waits for the first to commit, then answers its outcome.
    await lock_member(session, sender.id)
    earlier = await _earlier_gift(session, sender, recipient, key, request)
    if earlier is not None:
        return earlier
    require_active(sender)
    if recipient is None:
        raise NotFound(f"no member {request.to!r} in program {program.slug!r}")
    require_active(recipient)
    if recipient.id == sender.id:
        raise GiftToSelf("a member cannot give points to themselves")
    # The limit is per day of the program's calendar, not of UTC.
    day_start, day_end = calendar.local_day(now, program.time_zone)
    given = await session.scalar(
        select(func.coalesce(func.sum(Gift.points), 0)).where(
            Gift.sender_id == sender.id,
            Gift.created_at >= day_start,
            Gift.created_at < day_end,
        )
    )
    if int(given or 0) + request.points > program.gift_daily_limit:
        raise GiftLimitExceeded(
            f"gifts today would total {int(given or 0) + request.points} points,"
            f" more than the daily limit of {program.gift_daily_limit}"
        )
    transfer_id = derived_id(program.id, "gift", str(sender.id), key)
    await record_transfers(
        ledger,
        [
            Transfer(
                id=transfer_id,
                debit_account_id=sender.wallet_account_id,
                credit_account_id=recipient.wallet_account_id,
                amount=request.points,
                ledger=program.ledger_id,
                code=TransferCode.GIFT,
            )
        ],
        insufficient=_NOT_ENOUGH,
    )
    session.add(
        Gift(
            program_id=program.id,
            sender_id=sender.id,
            recipient_id=recipient.id,
            idempotency_key=key,
            points=request.points,
            transfer_id=transfer_id,
        )
    )
    await session.flush()
    return GiftOutcome(to=request.to, points=request.points, replayed=False)


async def _earlier_gift(
    session: AsyncSession,
    sender: Member,
    recipient: Member | None,
    key: str,
    request: GiftRequest,
) -> GiftOutcome | None:
    """The outcome recorded under ``key``, if any (the same request only)."""
    earlier = await session.scalar(
        select(Gift).where(Gift.sender_id == sender.id, Gift.idempotency_key == key)
    )
    if earlier is None:
        return None
    if recipient is None or (earlier.recipient_id, earlier.points) != (
        recipient.id,
        request.points,
    ):
        raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for another gift")
    return GiftOutcome(to=request.to, points=earlier.points, replayed=True)


def _valid(reward: CatalogReward, now: datetime) -> bool:
    return (reward.valid_from is None or reward.valid_from <= now) and (
        reward.valid_until is None or reward.valid_until > now
    )
