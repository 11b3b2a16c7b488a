"""Earn rule versions: drafts, publication at a stated time, the version in force."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from rewards.errors import InvalidRules, PublishInPast, VersionAlreadyPublished
from rewards.models import EarnRuleVersion, RuleStatus
from rewards.rules import EarnRules


async def draft_rules(
    session: AsyncSession,
    program: Program,
    rules: EarnRules,
    note: str | None = None,
    *,
    principal: Principal,
) -> EarnRuleVersion:
    """A new draft version (numbered after the last one), audited."""
    last = await session.scalar(
        select(func.max(EarnRuleVersion.version)).where(EarnRuleVersion.program_id == program.id)
    )
    version = EarnRuleVersion(
        program_id=program.id,
        version=(last or 0) + 1,
        status=RuleStatus.DRAFT,
        rules=msgspec.to_builtins(rules),
        note=note,
    )
    session.add(version)
    await session.flush()
    await audit.record(
        session,
        principal,
        "rules.draft",
        f"program:{program.slug}:rules:{version.version}",
        {"rules": version.rules, "note": note},
    )
    return version


async def list_rules(session: AsyncSession, program: Program) -> list[EarnRuleVersion]:
    """Every version of the program's rules, drafts too, in order."""
    versions = await session.scalars(
        select(EarnRuleVersion)
        .where(EarnRuleVersion.program_id == program.id)
        .order_by(EarnRuleVersion.version)
    )
    return list(versions)


async def publish_rules(
    session: AsyncSession,
    program: Program,
    number: int,
    effective_from: datetime,
    now: datetime,
    *,
    principal: Principal,
) -> EarnRuleVersion:
    """Publish a draft to take effect at ``effective_from`` (not in the past:
    events already priced keep their points), audited; publishing it again
    from the same time answers it and writes nothing. A missing version is
    missing whatever the time asked."""
    version = await get_version(session, program, number)
    if effective_from < now:
        await _check_start_in_past(session, program, version, effective_from)
    if version.status == RuleStatus.PUBLISHED:
        if version.effective_from == effective_from:
            return version
        raise VersionAlreadyPublished(
            f"version {number} is already published from {version.effective_from}"
        )
    version.status = RuleStatus.PUBLISHED
    version.effective_from = effective_from
    version.published_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "rules.publish",
        f"program:{program.slug}:rules:{number}",
        {"effective_from": effective_from},
    )
    return version


async def _check_start_in_past(
    session: AsyncSession, program: Program, version: EarnRuleVersion, effective_from: datetime
) -> None:
    """A version takes effect now or later, so that events already priced
    keep their points; except the program's first published version, which
    may take effect as early as the program's start (``started_at``): nothing
    was priced under rules before it, and a history imported since then
    earns under it. Otherwise ``PublishInPast``."""
    # Under the program's row lock: of two first versions published at
    # once, the second sees the first and is refused.
    await session.execute(select(Program.id).where(Program.id == program.id).with_for_update())
    other = await session.scalar(
        select(EarnRuleVersion.version)
        .where(
            EarnRuleVersion.program_id == program.id,
            EarnRuleVersion.status == RuleStatus.PUBLISHED,
            EarnRuleVersion.version != version.version,
        )
        .limit(1)
    )
    when = effective_from.isoformat()
    if other is not None:
        raise PublishInPast(
            f"effective_from {when} is in the past: only a program's first published version"
            f" may take effect in the past, and version {other} is published"
        )
    if effective_from < program.started_at:
        raise PublishInPast(
            f"effective_from {when} is in the past and before the program's start"
            f" ({program.started_at.isoformat()}): the first version may take effect from"
            " the program's started_at on, not earlier"
        )


async def get_version(session: AsyncSession, program: Program, number: int) -> EarnRuleVersion:
    version = await session.scalar(
        select(EarnRuleVersion).where(
            EarnRuleVersion.program_id == program.id, EarnRuleVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"no rule version {number} in program {program.slug!r}")
    return version


async def rules_in_force(
    session: AsyncSession, program: Program, at: datetime
) -> EarnRuleVersion | None:
    """The published version with the latest ``effective_from`` not after ``at``."""
    return await session.scalar(
        select(EarnRuleVersion)
        .where(
            EarnRuleVersion.program_id == program.id,
            EarnRuleVersion.status == RuleStatus.PUBLISHED,
            EarnRuleVersion.effective_from <= at,
        )
        .order_by(EarnRuleVersion.effective_from.desc(), EarnRuleVersion.version.desc())
        .limit(1)
    )


def parse_rules(document: object) -> EarnRules:
    """The rules of a document, converted strictly: ``"points": "10"`` is
    refused, as in any JSON body. Decimals and times are strings in JSON, and
    a strict conversion takes them so. Stored documents load the same way:
    ``draft_rules`` stores the parsed struct re-encoded (numbers as numbers,
    no unknown keys), as every version of it has."""
    try:
        return msgspec.convert(document, EarnRules, strict=True)
    except msgspec.ValidationError as error:
        raise InvalidRules(str(error)) from None
