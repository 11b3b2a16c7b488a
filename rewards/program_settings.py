"""A program's settings: set when it is opened (``ProgramSpec``), changed
later by an operator (``change_settings``).

A change applies to what is evaluated after it, never to what was posted
before: points already earned, settled, given or expired stay as they are.

- ``tier_basis``, ``tier_window``, ``tier_grace_days``: the next purchases'
  upgrade checks, threshold windows and the next tier evaluations judge by
  them; members keep their tier until a purchase or an evaluation moves it.
- ``gift_daily_limit``: gifts from now on (today's earlier gifts still count
  towards today's total).
- ``return_window_days``: purchases recorded from now on; a pending earning
  keeps the date it was given to settle on.
- ``time_zone``: every day, month and year counted from now on (the current
  window's edges move by the difference of the offsets).
- ``started_at``: may move only while no rule version is published, since
  the first version may take effect from it (see ``rule_versions``).
- ``point_value_minor``: redemptions, points payments and balances' values
  from now on; the value in force before stays on record from its instant
  (``rewards.point_values``), so finance values a past date at its own.

The purchase intake and the member app keep programs for a short while
(``api.program_cache``): they see a change within that time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.errors import DomainError, ErrorKind
from core.models import Program
from core.principal import Principal
from core.programs import lock_program
from ledger.bounds import MOMENT_RULE, Moment, NonNegativeBigInt, check_moment
from rewards.models import EarnRuleVersion, RuleStatus
from rewards.point_values import at_column_scale, check_point_value, record_point_value

TierBasis = Annotated[
    Literal["spend", "points"],
    msgspec.Meta(
        description="What qualifies for tiers: `spend` (minor units, net of returns) or"
        " `points` (earned, net of reversals)."
    ),
]
TierWindow = Annotated[
    Literal["calendar_year", "rolling_12_months", "anniversary"],
    msgspec.Meta(
        description="The qualifying window of tiers and thresholds: `calendar_year` (from"
        " 1 January), `rolling_12_months` (the year up to each moment) or `anniversary`"
        " (the year from each member's enrolment), in the program's `time_zone`."
    ),
]
TierGraceDays = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=365,
        description="Days after a window closes before a member who did not keep their"
        " tier moves down (one tier at a time).",
    ),
]
GiftDailyLimit = Annotated[
    NonNegativeBigInt,
    msgspec.Meta(
        description="Points a member may give away per day of the program's `time_zone`"
        " (0: no gifts)."
    ),
]
ReturnWindowDays = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=365,
        description="Days a purchase may be returned in; its points stay pending until"
        " the window ends.",
    ),
]
TimeZoneName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description="The IANA time zone every calendar rule of the program counts in (tier"
        " and threshold windows, the daily gift limit, month-based expiry), e.g."
        " Africa/Johannesburg; an unknown name is refused (422 unknown-time-zone).",
    ),
]
PointValueMinor = Annotated[
    Decimal,
    msgspec.Meta(
        description="What one point is worth when redeemed, in minor units of the"
        " currency (1: 100 points pay 1.00); above 0 and below 10^12, at most 6"
        " decimal places kept. A number or a decimal string; shown as a decimal string."
    ),
]
StartedAt = Annotated[
    Moment,
    msgspec.Meta(
        description="When the program began; earlier than now for a program whose history"
        " is imported: its first published rule version may take effect from then (and"
        f" price purchases that occurred since). {MOMENT_RULE}"
    ),
]


class StartFixed(DomainError):
    """The program's start cannot move once a rule version is published."""

    type_slug = "program-start-fixed"
    kind = ErrorKind.CONFLICT


class SettingsChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The settings to change: each one given is set, each one left out (or
    null) is kept."""

    tier_basis: TierBasis | None = None
    tier_window: TierWindow | None = None
    tier_grace_days: TierGraceDays | None = None
    gift_daily_limit: GiftDailyLimit | None = None
    return_window_days: ReturnWindowDays | None = None
    time_zone: TimeZoneName | None = None
    started_at: StartedAt | None = None
    point_value_minor: PointValueMinor | None = None

    def __post_init__(self) -> None:
        check_moment("started_at", self.started_at)
        if self.point_value_minor is not None:
            check_point_value(self.point_value_minor)


class ProgramSettings(msgspec.Struct, kw_only=True, frozen=True):
    """A program's settings as they are now."""

    tier_basis: TierBasis
    tier_window: TierWindow
    tier_grace_days: TierGraceDays
    gift_daily_limit: GiftDailyLimit
    return_window_days: ReturnWindowDays
    time_zone: TimeZoneName
    started_at: StartedAt
    point_value_minor: PointValueMinor

    @classmethod
    def of(cls, program: Program) -> ProgramSettings:
        return cls(
            tier_basis=program.tier_basis,  # type: ignore[arg-type]  # checked by the column
            tier_window=program.tier_window,  # type: ignore[arg-type]  # checked by the column
            tier_grace_days=program.tier_grace_days,
            gift_daily_limit=program.gift_daily_limit,
            return_window_days=program.return_window_days,
            time_zone=program.time_zone,
            started_at=program.started_at,
            point_value_minor=program.point_value_minor,
        )


async def change_settings(
    session: AsyncSession, program: Program, change: SettingsChange, *, principal: Principal
) -> ProgramSettings:
    """Set the settings ``change`` gives, and answer them all; audited with
    each changed setting's value before and after (a change that changes
    nothing writes no line). Affects later evaluations only (see the module)."""
    if change.time_zone is not None:
        calendar.time_zone(change.time_zone)  # UnknownTimeZone: refused before any write
    # Under the row's lock, so that concurrent changes are audited each
    # from the values the other left.
    locked = await lock_program(session, program)
    wanted = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not None}
    if change.point_value_minor is not None:
        wanted["point_value_minor"] = at_column_scale(change.point_value_minor)  # as stored
    changed: dict[str, dict[str, Any]] = {
        name: {"from": getattr(locked, name), "to": value}
        for name, value in wanted.items()
        if getattr(locked, name) != value
    }
    if "started_at" in changed and await _published_any(session, locked):
        raise StartFixed(
            f"started_at of program {locked.slug!r} cannot move: a rule version is published,"
            " and the first one may have taken effect from it"
        )
    if changed:
        for name, values in changed.items():
            setattr(locked, name, values["to"])
        await session.flush()
        if "point_value_minor" in changed:
            await record_point_value(
                session, locked.id, datetime.now(UTC), changed["point_value_minor"]["to"]
            )
        await audit.record(
            session, principal, "program.settings", f"program:{locked.slug}", changed
        )
    return ProgramSettings.of(locked)


async def _published_any(session: AsyncSession, program: Program) -> bool:
    published = await session.scalar(
        select(
            exists().where(
                EarnRuleVersion.program_id == program.id,
                EarnRuleVersion.status == RuleStatus.PUBLISHED,
            )
        )
    )
    return bool(published)
