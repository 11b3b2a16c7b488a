"""Demo data: a small points ledger to explore the API with.

Loading is idempotent: ids are fixed, so a second load changes nothing and
answers ``exists`` for every account and transfer.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import system
from ledger import (
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
)
from ledger.schemas import Ledger as LedgerDefinition
from rewards.programs import Enrolment, ProgramSpec, enrol_member, open_program
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.redeeming import RewardSpec, add_reward
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules, Item
from rewards.settlement import settle_matured_earnings
from rewards.tiers import ThresholdSpec, TierSpec, define_threshold, define_tier

DEMO_LEDGER = LedgerDefinition(id=1, name="demo-points", asset_scale=0)

# Account codes
ISSUANCE_CODE = 1
REDEMPTION_CODE = 2
MEMBER_WALLET_CODE = 10
# Transfer codes
EARN_CODE = 1
SPEND_CODE = 2

ISSUANCE = UUID("0193a000-0000-7000-8000-000000000001")
REDEMPTION = UUID("0193a000-0000-7000-8000-000000000002")
ALICE = UUID("0193a000-0000-7000-8000-000000000101")
BOB = UUID("0193a000-0000-7000-8000-000000000102")
CAROL = UUID("0193a000-0000-7000-8000-000000000103")

_WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS

DEMO_ACCOUNTS: tuple[Account, ...] = (
    # Points are issued by debiting the issuance account: it is unbounded.
    Account(
        id=ISSUANCE, ledger=DEMO_LEDGER.id, code=ISSUANCE_CODE, metadata={"name": "points issuance"}
    ),
    Account(
        id=REDEMPTION, ledger=DEMO_LEDGER.id, code=REDEMPTION_CODE, metadata={"name": "redemptions"}
    ),
    Account(
        id=ALICE,
        ledger=DEMO_LEDGER.id,
        code=MEMBER_WALLET_CODE,
        flags=_WALLET,
        metadata={"member": "alice"},
    ),
    Account(
        id=BOB,
        ledger=DEMO_LEDGER.id,
        code=MEMBER_WALLET_CODE,
        flags=_WALLET,
        metadata={"member": "bob"},
    ),
    Account(
        id=CAROL,
        ledger=DEMO_LEDGER.id,
        code=MEMBER_WALLET_CODE,
        flags=_WALLET,
        metadata={"member": "carol"},
    ),
)


def _earn(n: int, member: UUID, amount: int, reason: str) -> Transfer:
    return Transfer(
        id=UUID(f"0193a000-0000-7000-8001-{n:012d}"),
        debit_account_id=ISSUANCE,
        credit_account_id=member,
        amount=amount,
        ledger=DEMO_LEDGER.id,
        code=EARN_CODE,
        metadata={"reason": reason},
    )


def _spend(n: int, member: UUID, amount: int, reason: str, *, hold: bool = False) -> Transfer:
    return Transfer(
        id=UUID(f"0193a000-0000-7000-8002-{n:012d}"),
        debit_account_id=member,
        credit_account_id=REDEMPTION,
        amount=amount,
        ledger=DEMO_LEDGER.id,
        code=SPEND_CODE,
        metadata={"reason": reason},
        flags=TransferFlags.PENDING if hold else TransferFlags.NONE,
    )


#: Posted in order: every spend comes after the earnings that fund it.
DEMO_TRANSFERS: tuple[Transfer, ...] = (
    _earn(1, ALICE, 1000, "welcome bonus"),
    _earn(2, BOB, 500, "welcome bonus"),
    _earn(3, CAROL, 750, "welcome bonus"),
    _earn(4, ALICE, 120, "purchase at partner store"),
    _spend(1, ALICE, 300, "coffee voucher"),
    _spend(2, BOB, 200, "cinema ticket"),
    # A hold: reserved until the order ships, then posted (or voided).
    _spend(3, CAROL, 400, "order awaiting shipment", hold=True),
)


class DemoConflictError(Exception):
    """The database holds other data under the demo's ids."""


class DemoReport(msgspec.Struct, kw_only=True, frozen=True):
    ledger: LedgerDefinition
    accounts: dict[str, int]
    transfers: dict[str, int]


async def load_demo(ledger: Ledger) -> DemoReport:
    """Load the demo ledger, its accounts and transfers; idempotent."""
    if not await ledger.create_ledger(DEMO_LEDGER):
        existing = [d for d in await ledger.ledgers() if d.id == DEMO_LEDGER.id]
        if existing != [DEMO_LEDGER]:
            raise DemoConflictError(f"ledger {DEMO_LEDGER.id} exists and is not the demo ledger")
    accounts = await ledger.create_accounts(DEMO_ACCOUNTS)
    bad_accounts = [
        a for a in accounts if a.result not in (CreateAccountResult.OK, CreateAccountResult.EXISTS)
    ]
    if bad_accounts:
        raise DemoConflictError(f"account {bad_accounts[0].id}: {bad_accounts[0].result}")
    transfers = await ledger.create_transfers(DEMO_TRANSFERS)
    bad_transfers = [
        t
        for t in transfers
        if t.result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS)
    ]
    if bad_transfers:
        raise DemoConflictError(f"transfer {bad_transfers[0].id}: {bad_transfers[0].result}")
    return DemoReport(
        ledger=DEMO_LEDGER,
        accounts=dict(Counter(str(a.result) for a in accounts)),
        transfers=dict(Counter(str(t.result) for t in transfers)),
    )


# -- the rewards demo ---------------------------------------------------------

DEMO_PROGRAM = "demo-shop"
DEMO_MEMBERS = ("alice", "bob", "carol")


class RewardsDemoReport(msgspec.Struct, kw_only=True, frozen=True):
    program: str
    created: bool
    members: list[str]


async def load_rewards_demo(
    session: AsyncSession, ledger: Ledger, now: datetime
) -> RewardsDemoReport:
    """A program with a tier ladder, earn rules, a catalog, a spend threshold,
    three members and their first purchases. Loaded once: a program already
    there is left as it is."""
    existing = await session.scalar(select(Program).where(Program.slug == DEMO_PROGRAM))
    if existing is not None:
        return RewardsDemoReport(program=DEMO_PROGRAM, created=False, members=list(DEMO_MEMBERS))
    principal = system("demo")
    program, _ = await open_program(
        session,
        ledger,
        ProgramSpec(
            slug=DEMO_PROGRAM,
            name="Demo Shop Rewards",
            currency="ZAR",
            point_value_minor=Decimal(1),
            return_window_days=0,
        ),
        principal=principal,
    )
    for rank, (code, threshold, perks) in enumerate(
        (
            ("blue", 0, ["member prices"]),
            ("silver", 200_000, ["free delivery"]),
            ("gold", 1_000_000, ["free delivery", "priority support"]),
        ),
        start=1,
    ):
        await define_tier(
            session,
            program,
            TierSpec(code=code, name=code.title(), rank=rank, threshold=threshold, perks=perks),
            principal=principal,
        )
    rules = EarnRules(
        points_per_unit=Decimal(1),
        category_multipliers={"fresh": Decimal(2)},
        excluded_categories=frozenset({"tobacco"}),
        tier_multipliers={"silver": Decimal("1.25"), "gold": Decimal("1.5")},
    )
    version = await draft_rules(session, program, rules, note="launch rules", principal=principal)
    await publish_rules(session, program, version.version, now, now=now, principal=principal)
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-1000", amount_minor=100_000, bonus_points=250),
        principal=principal,
    )
    for sku, name, price, stock in (
        ("COFFEE", "Coffee voucher", 300, None),
        ("CINEMA", "Cinema ticket", 1_200, 100),
        ("HAMPER", "Gift hamper", 5_000, 10),
    ):
        await add_reward(
            session,
            program,
            RewardSpec(sku=sku, name=name, points_price=price, stock=stock),
            principal=principal,
        )
    for name, amount in zip(DEMO_MEMBERS, (250_000, 48_000, 120_000), strict=True):
        await enrol_member(
            session,
            ledger,
            program,
            Enrolment(
                external_id=name, email=f"{name}@example.com", consents={"marketing": name != "bob"}
            ),
            principal=principal,
        )
        await record_purchase(
            session,
            ledger,
            program,
            PurchaseEvent(
                member=name,
                order_id=f"DEMO-{name}",
                amount_minor=amount,
                currency="ZAR",
                occurred_at=now,
                items=(
                    Item(sku="BREAD", category="bakery", amount_minor=amount // 2),
                    Item(sku="APPLES", category="fresh", amount_minor=amount - amount // 2),
                ),
            ),
            now,
            principal=principal,
        )
    await settle_matured_earnings(session, ledger, now, program=program)
    return RewardsDemoReport(program=DEMO_PROGRAM, created=True, members=list(DEMO_MEMBERS))
