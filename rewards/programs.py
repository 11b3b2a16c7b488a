"""Programs and members: opening their ledger accounts, and reading balances."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.codes import AccountCode, TransferCode, derived_id
from core.errors import Forbidden, NotFound
from core.members import find_member, lock_member
from core.models import Member, MemberStatus, Program
from core.principal import Principal
from core.programs import program_id_for
from ledger import (
    Account,
    AccountFlags,
    Ledger,
    Transfer,
    TransferFlags,
    TransferOutcome,
)
from ledger.bounds import (
    ExternalId,
    NonEmpty,
    Text32,
    Text100,
    Text200,
    Text320,
    check_moment,
)
from ledger.reads import ACCOUNT_BALANCES, debit_balance, pending, spendable
from ledger.schemas import Ledger as LedgerDefinition
from rewards.connections import Connection
from rewards.errors import InsufficientPoints, LedgerRefused, ProgramExistsWithDifferentFields
from rewards.point_values import at_column_scale, check_point_value, record_point_value
from rewards.program_settings import (
    GiftDailyLimit,
    ReturnWindowDays,
    StartedAt,
    TierBasis,
    TierGraceDays,
    TierWindow,
    TimeZoneName,
)
from rewards.pseudonyms import erasures

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class ProgramSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    slug: Annotated[
        Slug,
        msgspec.Meta(
            description="The program's id in paths: lowercase letters, digits and hyphens,"
            " starting with a letter or digit, at most 64 characters."
        ),
    ]
    name: Annotated[Text200, NonEmpty, msgspec.Meta(description="A name for people to read.")]
    currency: Annotated[
        Currency,
        msgspec.Meta(description="The currency purchases are in, ISO 4217 (e.g. ZAR)."),
    ]
    point_value_minor: Annotated[
        Decimal,
        msgspec.Meta(
            description="What one point is worth when redeemed, in minor units of the"
            " currency (1: 100 points pay 1.00); above 0 and below 10^12, at most 6"
            " decimal places kept. A number or a decimal string."
        ),
    ]
    minor_per_major: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=1000,
            description="Minor units in one major unit of the currency: 1, 10, 100 or 1000"
            " (100 for ZAR, 1 for JPY).",
        ),
    ] = 100
    return_window_days: ReturnWindowDays = 30
    expiry_policy: Annotated[
        Literal["none", "fixed", "inactivity"],
        msgspec.Meta(
            description="`none`: points never expire; `fixed`: points expire `expiry_months`"
            " after they were credited; `inactivity`: all of a member's points expire once"
            " the wallet has not moved for `expiry_months`."
        ),
    ] = "none"
    expiry_months: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=120,
            description="Months of the expiry policy (unused with `none`).",
        ),
    ] = 24
    # The settings an operator may change later (rewards.program_settings).
    tier_basis: TierBasis = "spend"
    tier_window: TierWindow = "calendar_year"
    tier_grace_days: TierGraceDays = 30
    gift_daily_limit: GiftDailyLimit = 10_000
    time_zone: TimeZoneName = calendar.DEFAULT_TIME_ZONE
    #: None: the program starts when it is opened.
    started_at: StartedAt | None = None

    def __post_init__(self) -> None:
        check_moment("started_at", self.started_at)
        check_point_value(self.point_value_minor)
        if self.minor_per_major not in (1, 10, 100, 1000):
            raise ValueError("minor_per_major must be 1, 10, 100 or 1000")


class Enrolment(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    external_id: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The operator's id of the member: purchases and events name the"
            " member by it. An opaque id, not an e-mail address (the audit trail keeps it)."
        ),
    ]
    email: Annotated[Text320, msgspec.Meta(description="The member's e-mail.")] | None = None
    phone: Annotated[Text32, msgspec.Meta(description="The member's phone number.")] | None = None
    consents: Annotated[
        dict[Annotated[Text100, NonEmpty], bool],
        msgspec.Meta(
            max_length=50,
            description='What the member agreed to, by purpose (e.g. {"marketing": true}).',
        ),
    ] = {}


class MemberBalance(msgspec.Struct, kw_only=True, frozen=True):
    available: Annotated[int, msgspec.Meta(description="Points the member can spend now.")]
    pending: Annotated[
        int,
        msgspec.Meta(
            description="Points earned but not yet posted (inside a purchase's return"
            " window), or held for an order."
        ),
    ]
    debt: Annotated[
        int,
        msgspec.Meta(
            description="Points the member owes after returns the wallet could not cover;"
            " later earnings repay them as they settle."
        ),
    ]
    value_minor: Annotated[
        int,
        msgspec.Meta(
            description="`available` at the program's redemption value, in minor units of"
            " `currency`."
        ),
    ]
    currency: Annotated[str, msgspec.Meta(description="The program's currency, ISO 4217.")]


#: First key of the advisory lock that serializes the opening of one slug
#: (the ledger writer's lock has a key of its own).
_OPENING_LOCK = 1886547815


async def open_program(
    session: AsyncSession, ledger: Ledger, spec: ProgramSpec, *, principal: Principal
) -> tuple[Program, bool]:
    """Open a program: its ledger and system accounts, then its row; and
    whether it is new. Idempotent by slug: the same spec again answers the
    program, another spec under its slug is refused.

    The ledger's writes commit on their own, before the row. A retry after
    a failure between them and the commit of the row converges: it adopts
    the ledger named for the slug, and the program's id (so its accounts'
    ids) is derived from the slug. The audit line commits with the row, so
    the open that creates it writes the one line, retry or not.

    A principal bound to one program opens no other: refused whatever the
    slug holds, so the answer tells nothing of another tenant's programs.
    """
    program_id = program_id_for(spec.slug)
    if not principal.sees_program(program_id):
        raise Forbidden(f"{principal.actor} acts in one program only and cannot open another")
    calendar.time_zone(spec.time_zone)  # UnknownTimeZone (422) before anything is written
    # Concurrent opens of one slug wait here for the first to commit, then
    # find its row (instead of losing a race on the unique slug).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:slug))"),
        {"key": _OPENING_LOCK, "slug": spec.slug},
    )
    # As stored: a repeated spec compares equal, and the first answer reads
    # as every later one.
    fields = msgspec.structs.asdict(spec)
    fields["point_value_minor"] = point_value = at_column_scale(spec.point_value_minor)
    if spec.started_at is None:
        del fields["started_at"]  # "when it was opened": whenever that was
    existing = await session.scalar(select(Program).where(Program.slug == spec.slug))
    if existing is not None:
        different = [name for name, value in fields.items() if getattr(existing, name) != value]
        if different:
            raise ProgramExistsWithDifferentFields(
                f"program {spec.slug!r} exists with other {', '.join(different)}"
            )
        return existing, False
    name = f"program:{spec.slug}"
    earlier = await ledger.ledger_named(name)
    if earlier is not None:
        ledger_id = earlier.id
    else:
        ledger_id = int(await session.scalar(text("SELECT nextval('program_ledger_id_seq')")) or 0)
        await ledger.create_ledger(
            LedgerDefinition(id=ledger_id, name=name), time_zone=spec.time_zone
        )
    # No row is ever deleted, so a slug names one program for good.
    accounts = {
        code: derived_id(program_id, "account", code.name.lower())
        for code in (AccountCode.ISSUANCE, AccountCode.REDEMPTION, AccountCode.BREAKAGE)
    }
    outcomes = await ledger.create_accounts(
        [Account(id=i, ledger=ledger_id, code=c) for c, i in accounts.items()]
    )
    _expect_created(outcomes)
    program = Program(
        id=program_id,
        slug=spec.slug,
        name=spec.name,
        ledger_id=ledger_id,
        currency=spec.currency,
        minor_per_major=spec.minor_per_major,
        point_value_minor=point_value,
        return_window_days=spec.return_window_days,
        expiry_policy=spec.expiry_policy,
        expiry_months=spec.expiry_months,
        tier_basis=spec.tier_basis,
        tier_window=spec.tier_window,
        tier_grace_days=spec.tier_grace_days,
        gift_daily_limit=spec.gift_daily_limit,
        time_zone=spec.time_zone,
        started_at=spec.started_at if spec.started_at is not None else datetime.now(UTC),
        issuance_account_id=accounts[AccountCode.ISSUANCE],
        redemption_account_id=accounts[AccountCode.REDEMPTION],
        breakage_account_id=accounts[AccountCode.BREAKAGE],
    )
    session.add(program)
    await session.flush()
    await record_point_value(session, program.id, program.started_at, point_value)
    await audit.record(session, principal, "program.open", f"program:{spec.slug}", spec)
    return program, True


async def enrol_member(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    enrolment: Enrolment,
    *,
    principal: Principal,
) -> tuple[Member, bool]:
    """The member with this external id, enrolled now if new (and whether new).

    The wallet's id is derived from the external id and how many members
    under it were erased, so that a retry after a failure between the
    wallet and the row opens the same wallet again, while an id enrolled
    after an erasure gets a wallet of its own (the erased member keeps
    theirs, and their history). The audit line commits with the row: one
    line per member, however many tries it took."""
    member = await find_member(session, program, enrolment.external_id)
    if member is not None:
        return member, False
    erased = await erasures(session, program, enrolment.external_id)
    life = (str(erased),) if erased else ()
    wallet = derived_id(program.id, "wallet", enrolment.external_id, *life)
    outcomes = await ledger.create_accounts(
        [
            Account(
                id=wallet,
                ledger=program.ledger_id,
                code=AccountCode.MEMBER_WALLET,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
        ]
    )
    _expect_created(outcomes)
    member = Member(
        program_id=program.id,
        external_id=enrolment.external_id,
        email=enrolment.email,
        phone=enrolment.phone,
        consents=dict(enrolment.consents),
        status=MemberStatus.ACTIVE,
        wallet_account_id=wallet,
    )
    session.add(member)
    await session.flush()
    await audit.record(
        session,
        principal,
        "member.enrol",
        f"program:{program.slug}:member:{enrolment.external_id}",
        {"external_id": enrolment.external_id, "consents": enrolment.consents},
    )
    return member, True


async def open_debt_account(
    session: AsyncSession, ledger: Ledger, program: Program, member: Member
) -> uuid.UUID:
    """The member's debt account, opened on first need. It can never be
    credited beyond what it was debited: repayments stop at the debt."""
    if member.debt_account_id is not None:
        return member.debt_account_id
    # From the wallet, which is the member's alone (their external id may
    # have been erased and enrolled again).
    debt = derived_id(program.id, "debt", str(member.wallet_account_id))
    outcomes = await ledger.create_accounts(
        [
            Account(
                id=debt,
                ledger=program.ledger_id,
                code=AccountCode.MEMBER_DEBT,
                flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
            )
        ]
    )
    _expect_created(outcomes)
    member.debt_account_id = debt
    await session.flush()
    return debt


async def member_balance(ledger: Ledger, program: Program, member: Member) -> MemberBalance:
    ids = [member.wallet_account_id]
    if member.debt_account_id is not None:
        ids.append(member.debt_account_id)
    states = {s.id: s for s in await ledger.lookup_accounts(ids)}
    wallet = states[member.wallet_account_id]
    debt = 0
    if member.debt_account_id is not None:
        debt = debit_balance(states[member.debt_account_id])
    # A wallet's pending points: earnings not yet posted and points held by checkouts.
    return _balance(program, spendable(wallet), pending(wallet), debt)


def _balance(program: Program, available: int, pending: int, debt: int) -> MemberBalance:
    return MemberBalance(
        available=available,
        pending=pending,
        debt=debt,
        value_minor=int(available * program.point_value_minor),
        currency=program.currency,
    )


async def record_transfers(
    ledger: Ledger,
    transfers: list[Transfer],
    *,
    within: Connection | None = None,
    insufficient: str | None = None,
) -> list[TransferOutcome]:
    """Post transfers that must be recorded (or were already): any other
    answer of the ledger is a refusal. ``within``: in that connection's open
    transaction (see ``Ledger.create_transfers_within``). ``insufficient``:
    the transfers spend a member's points, and a wallet that cannot cover
    them is ``InsufficientPoints`` with this message."""
    if within is not None:
        outcomes = await ledger.create_transfers_within(within, transfers)
    else:
        outcomes = await ledger.create_transfers(transfers)
    refused = [o for o in outcomes if o.result not in ("ok", "exists")]
    if refused and insufficient is not None and refused[0].result == "exceeds_credits":
        raise InsufficientPoints(insufficient)
    if refused:
        raise LedgerRefused(f"ledger refused transfer {refused[0].id}: {refused[0].result}")
    return outcomes


def _expect_created(outcomes: list[Any]) -> None:
    refused = [o for o in outcomes if o.result not in ("ok", "exists")]
    if refused:
        raise LedgerRefused(f"ledger refused account {refused[0].id}: {refused[0].result}")


async def take_back_points(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    key: tuple[str, ...],
    points: int,
    metadata: dict[str, Any],
    *,
    code: TransferCode,
    lots: Sequence[uuid.UUID] = (),
) -> int:
    """Take ``points`` back from the member (a return, a refund): from the
    wallet what it holds, under ``code`` (what is being taken back), the
    shortfall as a ``DEBT`` of the member's debt account (one debt, whatever
    its cause: the metadata names it); returns the debt recorded. ``key``
    names the reversal: each attempt has ids of its own (a refused id stays
    refused), and an attempt already recorded is reused. ``lots``: the lots
    the wallet gives first (the points being taken back, where they still
    are), before its other points, oldest first."""
    await lock_member(session, member.id)
    attempts = [
        (
            derived_id(program.id, *key, str(n), "wallet"),
            derived_id(program.id, *key, str(n), "debt"),
        )
        for n in range(5)
    ]
    # An attempt recorded by an earlier run (whose session then rolled back)
    # is the reversal: never a second one beside it.
    recorded = await ledger.lookup_transfers([leg for pair in attempts for leg in pair])
    if recorded:
        debt_legs = {debt for _, debt in attempts}
        return sum(t.amount for t in recorded if t.id in debt_legs)
    for wallet_leg, debt_leg in attempts:
        [wallet] = await ledger.lookup_accounts([member.wallet_account_id])
        take = max(0, min(points, spendable(wallet)))
        legs = []
        if take:
            named = {"lots": [str(lot) for lot in lots]} if lots else {}
            legs.append(
                Transfer(
                    id=wallet_leg,
                    debit_account_id=member.wallet_account_id,
                    credit_account_id=program.issuance_account_id,
                    amount=take,
                    ledger=program.ledger_id,
                    code=code,
                    metadata={**metadata, **named},
                )
            )
        if points - take:
            debt_account = await open_debt_account(session, ledger, program, member)
            legs.append(
                Transfer(
                    id=debt_leg,
                    debit_account_id=debt_account,
                    credit_account_id=program.issuance_account_id,
                    amount=points - take,
                    ledger=program.ledger_id,
                    code=TransferCode.DEBT,
                    metadata=metadata,
                )
            )
        if len(legs) == 2:
            legs[0] = msgspec.structs.replace(legs[0], flags=TransferFlags.LINKED)
        outcomes = await ledger.create_transfers(legs)
        if all(o.result in ("ok", "exists") for o in outcomes):
            return points - take
        if not any(o.result == "exceeds_credits" for o in outcomes):
            raise LedgerRefused(f"reversal refused by the ledger: {outcomes[-1].result}")
        # The wallet moved meanwhile (a ledger call outside these use
        # cases): read it again and retry.
    raise LedgerRefused("the wallet kept changing; retry")


# -- the read path of the member app: asyncpg, no ORM session ----------------

# The member's row joined to the ledger's view of their accounts' balances,
# so that the hottest read of the member app is one key look-up and one round
# trip. The view is the ledger's public read (ledger/reads.py): the same
# derivations as ``member_balance``, stated once by the ledger.
_BALANCE = f"""SELECT w.spendable AS available, w.pending, coalesce(d.debit_balance, 0) AS debt
FROM members m
JOIN {ACCOUNT_BALANCES} w ON w.id = m.wallet_account_id
LEFT JOIN {ACCOUNT_BALANCES} d ON d.id = m.debt_account_id
WHERE m.program_id = $1 AND m.external_id = $2"""


async def read_balance(pool: asyncpg.Pool, program: Program, external_id: str) -> MemberBalance:
    """A member's balance in one query (``member_balance`` without a session),
    on the app's pool: the view is read like any of the app's tables."""
    row = await pool.fetchrow(_BALANCE, program.id, external_id)
    if row is None:
        raise NotFound(f"no member {external_id!r} in program {program.slug!r}")
    return _balance(program, row["available"], row["pending"], row["debt"])
