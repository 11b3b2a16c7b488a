"""Earn rule versions: drafts, publication at a stated time, the version in force."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from core.programs import lock_program
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
    """The draft version of ``rules`` (see ``draft_rules_once``)."""
    version, _ = await draft_rules_once(session, program, rules, note, principal=principal)
    return version


async def draft_rules_once(
    session: AsyncSession,
    program: Program,
    rules: EarnRules,
    note: str | None = None,
    *,
    principal: Principal,
) -> tuple[EarnRuleVersion, bool]:
    """A new draft version (numbered after the last one), audited; and
    whether it is new. Drafting exactly the document and note of the
    program's latest version while that one is still a draft answers that
    draft and writes nothing: a retry after a lost answer drafts no second
    version. Anything else, the same document after the latest version was
    published included, is a new version.

    Under the program's row lock: two identical drafts at once give one
    version, and two different ones two numbers."""
    await lock_program(session, program)
    # As stored and read back (JSON: lists, not tuples), so that a repeated
    # document compares equal.
    document = msgspec.json.decode(msgspec.json.encode(rules))
    latest = await session.scalar(
        select(EarnRuleVersion)
        .where(EarnRuleVersion.program_id == program.id)
        .order_by(EarnRuleVersion.version.desc())
        .limit(1)
    )
    if (
        latest is not None
        and latest.status == RuleStatus.DRAFT
        and latest.rules == document
        and latest.note == note
    ):
        return latest, False
    version = EarnRuleVersion(
        program_id=program.id,
        version=(latest.version if latest is not None else 0) + 1,
        status=RuleStatus.DRAFT,
        rules=document,
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
    return version, True


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
    from the same time answers it and writes nothing, also once that time
    has passed (a retry after a lost answer). A missing version is missing
    whatever the time asked.

    Under the program's row lock, taken before anything is read: of two
    publications at once (of one version, or of two first versions) the
    second sees the first; and the program's start is the one the lock
    found, since a change of the settings takes the same lock."""
    started_at = (await lock_program(session, program)).started_at
    version = await get_version(session, program, number)
    # A version published from this very time is the answer of a publish
    # sent again, whatever the clock says now: checked before the time.
    published = version.status == RuleStatus.PUBLISHED
    if published and version.effective_from == effective_from:
        return version
    if effective_from < now:
        await _check_start_in_past(session, program, started_at, version, effective_from)
    if published:
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
    session: AsyncSession,
    program: Program,
    started_at: datetime,
    version: EarnRuleVersion,
    effective_from: datetime,
) -> None:
    """A version takes effect now or later, so that events already priced
    keep their points; except the program's first published version, which
    may take effect as early as the program's start (``started_at``, read
    under the lock): nothing was priced under rules before it, and a history
    imported since then earns under it. Otherwise ``PublishInPast``."""
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
    if effective_from < started_at:
        raise PublishInPast(
            f"effective_from {when} is in the past and before the program's start"
            f" ({started_at.isoformat()}): the first version may take effect from"
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
