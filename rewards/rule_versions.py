"""Earn rule versions: drafts, publication at a stated time, the version in force."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Program
from rewards.errors import InvalidRules, PublishInPast, VersionAlreadyPublished
from rewards.models import EarnRuleVersion, RuleStatus
from rewards.rules import EarnRules


async def draft_rules(
    session: AsyncSession, program: Program, rules: EarnRules, note: str | None = None
) -> EarnRuleVersion:
    """A new draft version (numbered after the last one)."""
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
    return version


async def publish_rules(
    session: AsyncSession, program: Program, number: int, effective_from: datetime, now: datetime
) -> EarnRuleVersion:
    """Publish a draft to take effect at ``effective_from`` (not in the past:
    events already priced keep their points)."""
    if effective_from < now:
        raise PublishInPast(f"effective_from {effective_from.isoformat()} is in the past")
    version = await get_version(session, program, number)
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
    return version


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
