"""Weighted lead scoring, in versions: the operator saves criteria and
weights as a new version (never changed afterwards, as earn rule versions);
a lead is scored when it is registered by the version then latest, and
keeps its score, the version and each criterion's contribution.

A criterion's value is 0-1000; its contribution is weight times value;
the score is the sum of contributions divided by the sum of weights (floor),
so 0-1000. Integers throughout: the explanation adds up exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.models import Program
from core.principal import Principal
from partners.leads.errors import InvalidScoringCriteria
from partners.leads.models import LeadScoringVersion
from partners.leads.schemas import Contribution, Criterion, ScoringCriteria, ScoringVersionView
from partners.leads.versions import next_version, recent_versions

#: What each criterion needs besides its weight.
_NEEDS = {
    "company_size": "bands",
    "industry": "values",
    "territory": "values",
    "recent_activity": "within_days",
}


def check_criteria(criteria: ScoringCriteria) -> None:
    names = [c.name for c in criteria.criteria]
    if len(set(names)) != len(names):
        raise InvalidScoringCriteria("criteria: each criterion appears once")
    for each in criteria.criteria:
        needed = _NEEDS[each.name]
        if getattr(each, needed) in (None, [], {}):
            raise InvalidScoringCriteria(f"criteria: {each.name} needs {needed}")
        extra = [f for f in set(_NEEDS.values()) - {needed} if getattr(each, f) is not None]
        if extra:
            raise InvalidScoringCriteria(f"criteria: {each.name} takes no {', '.join(extra)}")


def criterion_value(
    criterion: Criterion,
    *,
    size: int | None,
    industry: str | None,
    territory: str,
    last_activity_at: datetime | None,
    now: datetime,
) -> int:
    if criterion.name == "company_size":
        if size is None:
            return 0
        reached = [b.value for b in criterion.bands or () if size >= b.min_employees]
        return max(reached, default=0)
    if criterion.name == "industry":
        return (criterion.values or {}).get(industry or "", 0)
    if criterion.name == "territory":
        return (criterion.values or {}).get(territory, 0)
    # recent_activity: 1000 now, falling linearly to 0 at within_days.
    if last_activity_at is None or criterion.within_days is None:
        return 0
    window = criterion.within_days * 86400
    age = max(0, int((now - last_activity_at).total_seconds()))
    return max(0, 1000 * (window - age) // window)


def score(
    criteria: ScoringCriteria,
    *,
    size: int | None,
    industry: str | None,
    territory: str,
    last_activity_at: datetime | None,
    now: datetime,
) -> tuple[int, list[Contribution]]:
    """The lead's score (0-1000) and how it was reached."""
    details = []
    for each in criteria.criteria:
        value = criterion_value(
            each,
            size=size,
            industry=industry,
            territory=territory,
            last_activity_at=last_activity_at,
            now=now,
        )
        details.append(
            Contribution(
                criterion=each.name,
                weight=each.weight,
                value=value,
                contribution=each.weight * value,
            )
        )
    weights = sum(d.weight for d in details)
    return sum(d.contribution for d in details) // weights, details


def criteria_of(version: LeadScoringVersion | dict[str, Any]) -> ScoringCriteria:
    document = version.criteria if isinstance(version, LeadScoringVersion) else version
    return msgspec.convert(document, ScoringCriteria)


async def save_scoring_version(
    session: AsyncSession, program: Program, criteria: ScoringCriteria, *, principal: Principal
) -> ScoringVersionView:
    """A new version of the program's criteria, audited; in use at once."""
    principal.require("leads:write")
    check_criteria(criteria)
    version = LeadScoringVersion(
        program_id=program.id,
        version=await next_version(session, LeadScoringVersion, program),
        criteria=msgspec.to_builtins(criteria),
    )
    session.add(version)
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.scoring_version",
        f"program:{program.slug}:lead-scoring:{version.version}",
        criteria,
    )
    return _view(version)


async def scoring_versions(
    session: AsyncSession, program: Program, *, principal: Principal
) -> list[ScoringVersionView]:
    principal.require("leads:read")
    found = await recent_versions(session, LeadScoringVersion, program)
    return [_view(v) for v in found]


def _view(version: LeadScoringVersion) -> ScoringVersionView:
    return ScoringVersionView(
        version=version.version,
        criteria=criteria_of(version).criteria,
        created_at=version.created_at,
    )
