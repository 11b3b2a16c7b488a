"""A program's revenue settings: its rounding policy, default breakage rate,
development horizon, service life and GL account overrides. A program with
none stored uses the defaults (``RevenueSettingsBody()``); storing them is
audited. A change applies to the runs after it: allocations already made
keep the policy they were made with (each row records it)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.models import Program
from core.principal import Principal
from finance.gl_accounts import GlAccounts
from finance.revenue.models import RevenueSettings
from finance.revenue.rounding import Rounding, RoundingMode, RoundingPolicy
from finance.revenue.schemas import RevenueSettingsBody, RevenueSettingsView


@dataclass(frozen=True)
class Settings:
    rounding: Rounding
    default_breakage_rate: Decimal
    development_months: int
    service_life_months: int
    gl_accounts: GlAccounts
    stored: bool

    def view(self) -> RevenueSettingsView:
        return RevenueSettingsView(
            rounding_policy=self.rounding.policy.value,
            rounding_mode=self.rounding.mode.value,
            ratio_places=self.rounding.ratio_places,
            default_breakage_rate=self.default_breakage_rate,
            development_months=self.development_months,
            service_life_months=self.service_life_months,
            gl_accounts=dict(self.gl_accounts.overrides),
            stored=self.stored,
        )


def _of(body: RevenueSettingsBody, *, stored: bool) -> Settings:
    return Settings(
        rounding=Rounding(
            RoundingPolicy(body.rounding_policy),
            RoundingMode(body.rounding_mode),
            body.ratio_places,
        ),
        default_breakage_rate=body.default_breakage_rate,
        development_months=body.development_months,
        service_life_months=body.service_life_months,
        gl_accounts=GlAccounts(dict(body.gl_accounts)),
        stored=stored,
    )


def _body(row: RevenueSettings) -> RevenueSettingsBody:
    return RevenueSettingsBody(
        rounding_policy=row.rounding_policy,  # type: ignore[arg-type]
        rounding_mode=row.rounding_mode,  # type: ignore[arg-type]
        ratio_places=row.ratio_places,
        default_breakage_rate=row.default_breakage_rate.normalize(),
        development_months=row.development_months,
        service_life_months=row.service_life_months,
        gl_accounts=dict(row.gl_accounts),
    )


async def revenue_settings(session: AsyncSession, program: Program) -> Settings:
    """The program's settings (the defaults when it stored none). ``program``
    comes from a look-up within the principal's tenant."""
    row = await session.scalar(
        select(RevenueSettings).where(RevenueSettings.program_id == program.id)
    )
    if row is None:
        return _of(RevenueSettingsBody(), stored=False)
    return _of(_body(row), stored=True)


async def store_revenue_settings(
    session: AsyncSession, program: Program, body: RevenueSettingsBody, *, principal: Principal
) -> Settings:
    """Store the program's settings (all of them: a PUT), audited; the same
    settings again write nothing."""
    row = await session.scalar(
        select(RevenueSettings).where(RevenueSettings.program_id == program.id).with_for_update()
    )
    fields = msgspec.structs.asdict(body)
    if row is not None and _body(row) == body:
        return _of(body, stored=True)
    if row is None:
        row = RevenueSettings(program_id=program.id, **fields)
        session.add(row)
    else:
        for name, value in fields.items():
            setattr(row, name, value)
    await session.flush()
    await audit.record(
        session, principal, "finance.revenue.settings", f"program:{program.slug}", body
    )
    return _of(body, stored=True)
