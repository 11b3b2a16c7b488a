"""A segment definition compiled into one SQLAlchemy query over the
program's members, as of a moment: every value the definition or its
filter carries is a bound parameter, every field a known column.

The query has up to three layers: the members with their activity up to the
moment (``_facts``), their RFM scores when anything asks for them (window
functions over the whole program, so that the scores do not depend on the
rest of the definition), and the conditions. Activity is joined only when a
criterion, the filter or the caller (an export) needs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import Subquery

from core.models import Member, Program
from ledger.account_activity import first_posted_credit_sql
from partners.coalition_models import HoldStatus, PartnerHold, PartnerIssuance
from partners.models import Partner
from partners.segments.definition import CohortBasis, PartnerAction, SegmentDefinition
from partners.segments.errors import InvalidSegment
from partners.segments.filters import (
    FIELDS,
    AllOf,
    AnyOf,
    FieldType,
    Filter,
    FilterSyntaxError,
    Negation,
    Value,
    fields_of,
    parse_filter,
    partner_slugs,
)
from rewards.models import Purchase, Tier

_ACTIVITY_FIELDS = frozenset(
    {
        "days_since_last_purchase",
        "purchases",
        "spend_minor",
        "recency_score",
        "frequency_score",
        "monetary_score",
    }
)
_SCORE_FIELDS = frozenset({"recency_score", "frequency_score", "monetary_score"})
#: What an export of a segment gives per member, in this order.
EXPORT_COLUMNS = (
    "member",
    "status",
    "tier",
    "enrolled_on",
    "days_since_last_purchase",
    "purchases",
    "spend_minor",
)


@dataclass(frozen=True)
class ResolvedSegment:
    """A definition checked against its program: tiers and partners found,
    the filter parsed."""

    definition: SegmentDefinition
    partner_ids: dict[str, uuid.UUID]
    filter: Filter | None

    @property
    def needs_activity(self) -> bool:
        d = self.definition
        named = fields_of(self.filter) if self.filter else set()
        return bool(d.recency or d.frequency or d.monetary or d.rfm or named & _ACTIVITY_FIELDS)

    @property
    def needs_scores(self) -> bool:
        named = fields_of(self.filter) if self.filter else set()
        return self.definition.rfm is not None or bool(named & _SCORE_FIELDS)

    @property
    def needs_first_earning(self) -> bool:
        named = fields_of(self.filter) if self.filter else set()
        cohort = self.definition.cohort
        return "first_earning_cohort" in named or (
            cohort is not None and cohort.basis is CohortBasis.FIRST_EARNING
        )


def _month(text: str) -> date:
    year, month = text.split("-")
    return date(int(year), int(month), 1)


def _check_bounds(name: str, low: int | None, high: int | None) -> None:
    if low is None and high is None:
        raise InvalidSegment(f"{name}: give a minimum, a maximum or both")
    if low is not None and high is not None and low > high:
        raise InvalidSegment(f"{name}: the minimum is above the maximum")


def check_shape(definition: SegmentDefinition) -> Filter | None:
    """What can be judged without the program's rows: bounds in order, the
    filter's syntax. Answers the parsed filter."""
    d = definition
    if d.recency:
        _check_bounds("recency", d.recency.min_days, d.recency.max_days)
    if d.frequency:
        _check_bounds("frequency", d.frequency.min_purchases, d.frequency.max_purchases)
    if d.monetary:
        _check_bounds("monetary", d.monetary.min_minor, d.monetary.max_minor)
    if d.rfm:
        scores = {"recency": d.rfm.recency, "frequency": d.rfm.frequency}
        scores["monetary"] = d.rfm.monetary
        if all(s is None for s in scores.values()):
            raise InvalidSegment("rfm: give at least one of recency, frequency and monetary")
        for name, bounds in scores.items():
            if bounds is not None:
                _check_bounds(f"rfm.{name}", bounds.min_score, bounds.max_score)
    if d.cohort:
        first, last = d.cohort.from_month, d.cohort.to_month
        if first is None and last is None:
            raise InvalidSegment("cohort: give from_month, to_month or both")
        if first is not None and last is not None and _month(first) > _month(last):
            raise InvalidSegment("cohort: from_month comes after to_month")
    if len(set(d.statuses)) != len(d.statuses):
        raise InvalidSegment("statuses: a status appears twice")
    if d.filter is None:
        return None
    try:
        return parse_filter(d.filter)
    except FilterSyntaxError as error:
        raise InvalidSegment(f"filter: {error}") from None


async def resolve(
    session: AsyncSession, program: Program, definition: SegmentDefinition
) -> ResolvedSegment:
    """The definition checked against the program (``InvalidSegment`` when
    it names what the program does not have)."""
    parsed = check_shape(definition)
    if definition.tiers:
        known = set(
            await session.scalars(
                select(Tier.code).where(
                    Tier.program_id == program.id, Tier.code.in_(definition.tiers)
                )
            )
        )
        missing = sorted(set(definition.tiers) - known)
        if missing:
            raise InvalidSegment(f"tiers: the program has no tier {missing[0]!r}")
    slugs = set(definition.partner.partners) if definition.partner else set()
    if parsed is not None:
        slugs |= partner_slugs(parsed)
    partner_ids: dict[str, uuid.UUID] = {}
    if slugs:
        partner_ids = {
            row.slug: row.id
            for row in await session.execute(
                select(Partner.slug, Partner.id).where(
                    Partner.program_id == program.id, Partner.slug.in_(sorted(slugs))
                )
            )
        }
        missing = sorted(slugs - set(partner_ids))
        if missing:
            raise InvalidSegment(f"partner: the program has no partner {missing[0]!r}")
    return ResolvedSegment(definition=definition, partner_ids=partner_ids, filter=parsed)


def _local(program: Program, moment: ColumnElement[datetime]) -> ColumnElement[datetime]:
    return func.timezone(literal(program.time_zone), moment)


def _day(program: Program, moment: ColumnElement[datetime]) -> ColumnElement[date]:
    return cast(_local(program, moment), Date)


def _month_of(program: Program, moment: ColumnElement[datetime]) -> ColumnElement[date]:
    return cast(func.date_trunc("month", _local(program, moment)), Date)


def _activity(program: Program, as_of: datetime, window_days: int) -> Subquery:
    """Per member: the last purchase up to ``as_of``, and the purchases and
    spend of the window."""
    own = select(
        Purchase.member_id.label("member_id"),
        Purchase.occurred_at.label("at"),
        case(
            (
                Purchase.currency == program.currency,
                Purchase.amount_minor - Purchase.returned_minor,
            ),
            else_=0,
        ).label("amount"),
    ).where(Purchase.program_id == program.id, Purchase.occurred_at <= as_of)
    issued = PartnerIssuance
    at_partners = select(
        issued.member_id,
        issued.created_at,
        case(
            (issued.currency == program.currency, func.coalesce(issued.purchase_amount_minor, 0)),
            else_=0,
        ),
    ).where(issued.program_id == program.id, issued.created_at <= as_of)
    both = union_all(own, at_partners).subquery("purchase_activity")
    since = as_of - timedelta(days=window_days)
    in_window = both.c.at > since
    return (
        select(
            both.c.member_id,
            func.max(both.c.at).label("last_at"),
            func.count().filter(in_window).label("purchases"),
            # bigint, not sum()'s numeric: spend is whole minor units.
            cast(func.coalesce(func.sum(both.c.amount).filter(in_window), 0), BigInteger).label(
                "spend"
            ),
        )
        .group_by(both.c.member_id)
        .subquery("member_activity")
    )


def _facts(
    program: Program, resolved: ResolvedSegment, as_of: datetime, *, activity: bool
) -> Subquery:
    m = Member.__table__
    columns: list[ColumnElement[Any]] = [
        m.c.id,
        m.c.external_id,
        m.c.status,
        m.c.tier_code,
        m.c.tier_since,
        m.c.created_at,
        m.c.email,
        m.c.phone,
    ]
    source: Any = m
    if activity:
        act = _activity(program, as_of, resolved.definition.window_days)
        source = m.outerjoin(act, act.c.member_id == m.c.id)
        days = type_coerce(_day(program, literal(as_of)) - _day(program, act.c.last_at), Integer)
        columns += [
            days.label("days_since_last_purchase"),
            func.coalesce(act.c.purchases, 0).label("purchases"),
            func.coalesce(act.c.spend, 0).label("spend_minor"),
        ]
    if resolved.needs_first_earning:
        first: ColumnElement[Any] = literal_column(
            first_posted_credit_sql("members.wallet_account_id")
        )
        columns.append(first.label("first_earning_at"))
    facts = (
        select(*columns)
        .select_from(source)
        .where(m.c.program_id == program.id, m.c.created_at <= as_of)
    )
    if not (activity and resolved.needs_scores):
        return facts.subquery("member_facts")
    inner = facts.subquery("member_facts")
    spent = inner.c.purchases > 0
    population = func.count().over(partition_by=spent)

    def score(*order: ColumnElement[Any]) -> ColumnElement[int]:
        rank = func.rank().over(partition_by=spent, order_by=order)
        return case((spent, 1 + (5 * (rank - 1)) // population), else_=0)

    return select(
        *inner.c,
        score(inner.c.days_since_last_purchase.desc()).label("recency_score"),
        score(inner.c.purchases).label("frequency_score"),
        score(inner.c.spend_minor).label("monetary_score"),
    ).subquery("scored_members")


def _partner_exists(
    facts: Subquery,
    ids: list[uuid.UUID],
    action: PartnerAction,
    as_of: datetime,
    within_days: int | None,
) -> ColumnElement[bool]:
    since = as_of - timedelta(days=within_days) if within_days else None
    found: list[ColumnElement[bool]] = []
    if action in (PartnerAction.EARNED, PartnerAction.EITHER):
        i = PartnerIssuance
        window = [i.created_at <= as_of] + ([i.created_at > since] if since else [])
        found.append(
            exists().where(
                i.member_id == facts.c.id,
                or_(i.partner_id.in_(ids), i.company_id.in_(ids)),
                *window,
            )
        )
    if action in (PartnerAction.REDEEMED, PartnerAction.EITHER):
        h = PartnerHold
        window = [h.created_at <= as_of] + ([h.created_at > since] if since else [])
        found.append(
            exists().where(
                h.member_id == facts.c.id,
                or_(h.partner_id.in_(ids), h.company_id.in_(ids)),
                h.status == HoldStatus.CAPTURED,
                h.captured_points > 0,
                *window,
            )
        )
    return or_(*found)


def _between(
    column: ColumnElement[int] | ColumnElement[date], low: object, high: object
) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if low is not None:
        found.append(column >= low)
    if high is not None:
        found.append(column <= high)
    return found


def _field(program: Program, facts: Subquery) -> Callable[[str], ColumnElement[Any]]:
    c = facts.c

    def column(name: str) -> ColumnElement[Any]:
        if name == "external_id":
            return c.external_id
        if name == "status":
            return c.status
        if name == "tier":
            return c.tier_code
        if name == "tier_since":
            return _day(program, c.tier_since)
        if name == "enrolled_on":
            return _day(program, c.created_at)
        if name == "has_email":
            return func.coalesce(c.email, "") != ""
        if name == "has_phone":
            return func.coalesce(c.phone, "") != ""
        if name == "enrolment_cohort":
            return _month_of(program, c.created_at)
        if name == "first_earning_cohort":
            return _month_of(program, c.first_earning_at)
        return c[name]

    return column


def _compile_filter(
    tree: Filter,
    program: Program,
    facts: Subquery,
    resolved: ResolvedSegment,
    as_of: datetime,
) -> ColumnElement[bool]:
    """Two-valued: a comparison with a null (no tier, no purchase) is false,
    and ``not`` of it true."""
    if isinstance(tree, AllOf):
        return and_(*(_compile_filter(t, program, facts, resolved, as_of) for t in tree.items))
    if isinstance(tree, AnyOf):
        return or_(*(_compile_filter(t, program, facts, resolved, as_of) for t in tree.items))
    if isinstance(tree, Negation):
        return not_(_compile_filter(tree.item, program, facts, resolved, as_of))
    kind = FIELDS[tree.field][0]
    if kind is FieldType.PARTNERS:
        ids = [resolved.partner_ids[str(v)] for v in tree.values]
        action = PartnerAction.EARNED if tree.field == "earned_at" else PartnerAction.REDEEMED
        return _partner_exists(facts, ids, action, as_of, None)
    column = _field(program, facts)(tree.field)
    return func.coalesce(_comparison(column, tree.op, tree.values), false())


def _comparison(
    column: ColumnElement[Any], op: str, values: tuple[Value, ...]
) -> ColumnElement[bool]:
    if op == "is null":
        return column.is_(None)
    if op == "is not null":
        return column.is_not(None)
    if op == "true":
        return type_coerce(column, Boolean)
    if op == "in":
        return column.in_(values)
    if op == "not in":
        return column.not_in(values)
    if op == "between":
        return column.between(values[0], values[1])
    value = values[0]
    compare = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op]
    return compare(value)


def segment_query(
    program: Program,
    resolved: ResolvedSegment,
    as_of: datetime,
    *,
    with_activity: bool = False,
    member_id: uuid.UUID | None = None,
) -> Select[Any]:
    """The members of the segment as of ``as_of`` (``member_id``: that one
    member only, if in it): a select of the facts' columns, in member id
    order. ``with_activity`` adds the activity columns an export gives."""
    d = resolved.definition
    activity = with_activity or resolved.needs_activity
    facts = _facts(program, resolved, as_of, activity=activity)
    c = facts.c
    where: list[ColumnElement[bool]] = [c.status.in_([s.value for s in d.statuses])]
    if member_id is not None:
        where.append(c.id == member_id)
    if d.tiers:
        where.append(c.tier_code.in_(d.tiers))
    if d.recency:
        where.append(c.days_since_last_purchase.is_not(None))
        where += _between(c.days_since_last_purchase, d.recency.min_days, d.recency.max_days)
    if d.frequency:
        where += _between(c.purchases, d.frequency.min_purchases, d.frequency.max_purchases)
    if d.monetary:
        where += _between(c.spend_minor, d.monetary.min_minor, d.monetary.max_minor)
    if d.rfm:
        for name, bounds in (
            ("recency_score", d.rfm.recency),
            ("frequency_score", d.rfm.frequency),
            ("monetary_score", d.rfm.monetary),
        ):
            if bounds is not None:
                where += _between(c[name], bounds.min_score, bounds.max_score)
    if d.partner:
        ids = [resolved.partner_ids[s] for s in d.partner.partners]
        where.append(_partner_exists(facts, ids, d.partner.action, as_of, d.partner.within_days))
    if d.cohort:
        at = c.created_at if d.cohort.basis is CohortBasis.ENROLMENT else c.first_earning_at
        month = _month_of(program, at)
        first = _month(d.cohort.from_month) if d.cohort.from_month else None
        last = _month(d.cohort.to_month) if d.cohort.to_month else None
        where += _between(month, first, last)
    if resolved.filter is not None:
        where.append(_compile_filter(resolved.filter, program, facts, resolved, as_of))
    return select(*c).where(*where).order_by(c.id)


def count_query(program: Program, resolved: ResolvedSegment, as_of: datetime) -> Select[Any]:
    """How many members the segment holds as of ``as_of``: one query."""
    members = segment_query(program, resolved, as_of).order_by(None).subquery("segment")
    return select(func.count()).select_from(members)


def export_query(program: Program, resolved: ResolvedSegment, as_of: datetime) -> Select[Any]:
    """``EXPORT_COLUMNS`` per member of the segment, in member id order."""
    members = segment_query(program, resolved, as_of, with_activity=True).subquery("segment")
    c = members.c
    return select(
        c.external_id,
        c.status,
        c.tier_code,
        _day(program, c.created_at),
        c.days_since_last_purchase,
        c.purchases,
        c.spend_minor,
    ).order_by(c.id)
