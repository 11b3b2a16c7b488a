"""A generated program for the segment tests: members of every status and
tier, enrolled over the last year and more, with purchases (the program's
own and at partners), captured and released checkouts at partners, and
wallet credits (plain, pending, backdated) for their first earning; and a
brute force that says, in Python, who each definition should select."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Program
from core.principal import system
from ledger import Ledger, Transfer, TransferFlags
from partners.segments.definition import CohortBasis, PartnerAction, SegmentDefinition
from partners.segments.filters import AllOf, AnyOf, Comparison, Filter, Negation, parse_filter
from rewards.programs import Enrolment, ProgramSpec, enrol_member, open_program

TIERS = ("bronze", "silver", "gold")
STATUSES = ("active", "active", "active", "frozen", "closed")
ZONE = "Pacific/Auckland"


@dataclass
class Buy:
    at: datetime
    amount: int  # counted spend (0 in another currency)


@dataclass
class Person:
    id: uuid.UUID
    external_id: str
    wallet: uuid.UUID
    status: str
    tier: str | None
    tier_since: datetime | None
    created_at: datetime
    email: str | None
    phone: str | None
    buys: list[Buy] = field(default_factory=list)
    #: (partner slug, at) of issuances and of captured checkouts.
    earned: list[tuple[str, datetime]] = field(default_factory=list)
    redeemed: list[tuple[str, datetime]] = field(default_factory=list)
    #: Business times of posted wallet credits.
    credits: list[datetime] = field(default_factory=list)


@dataclass
class World:
    program: Program
    partners: dict[str, uuid.UUID]
    people: list[Person]
    as_of: datetime

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(ZONE)


async def build_world(session: AsyncSession, ledger: Ledger, seed: int, size: int = 60) -> World:
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    spec = {
        "slug": f"segments-{seed}-{uuid.uuid4().hex[:8]}",
        "name": "Segments",
        "currency": "ZAR",
        "point_value_minor": Decimal(1),
        "time_zone": ZONE,
    }
    program, _ = await open_program(
        session, ledger, msgspec.convert(spec, ProgramSpec), principal=system("test")
    )
    for rank, code in enumerate(TIERS, start=1):
        await session.execute(
            text(
                "INSERT INTO tiers (id, program_id, code, name, rank, threshold, perks)"
                " VALUES (:id, :program, :code, :code, :rank, :threshold, '[]')"
            ),
            {
                "id": uuid.uuid4(),
                "program": program.id,
                "code": code,
                "rank": rank,
                "threshold": rank * 1000,
            },
        )
    partners: dict[str, uuid.UUID] = {}
    for slug in ("fuel", "books"):
        partners[slug] = uuid.uuid4()
        await session.execute(
            text(
                "INSERT INTO partners (id, program_id, slug, name, legal_name, country, currency,"
                " contacts, status, status_changed_at)"
                " VALUES (:id, :program, :slug, :slug, :slug, 'ZA', 'ZAR', '[]', 'active', now())"
            ),
            {"id": partners[slug], "program": program.id, "slug": slug},
        )
    await session.commit()
    people: list[Person] = []
    for n in range(size):
        member, _ = await enrol_member(
            session, ledger, program, Enrolment(external_id=f"m-{n:03d}"), principal=system("t")
        )
        tier = rng.choice((None, *TIERS))
        person = Person(
            id=member.id,
            external_id=member.external_id,
            wallet=member.wallet_account_id,
            status=rng.choice(STATUSES),
            tier=tier,
            tier_since=now - timedelta(days=rng.randint(0, 400), hours=rng.randint(0, 23))
            if tier
            else None,
            created_at=now - timedelta(days=rng.randint(0, 500), hours=rng.randint(0, 23)),
            email=rng.choice((None, "", f"m{n}@example.com")),
            phone=rng.choice((None, "+27 21 000 0000")),
        )
        if n == size - 1:
            person.created_at = now + timedelta(days=3)  # enrols after the moment: in none
        people.append(person)
        await session.execute(
            text(
                "UPDATE members SET status = :status, tier_code = :tier, tier_since = :since,"
                " created_at = :created, email = :email, phone = :phone WHERE id = :id"
            ),
            {
                "status": person.status,
                "tier": person.tier,
                "since": person.tier_since,
                "created": person.created_at,
                "email": person.email,
                "phone": person.phone,
                "id": person.id,
            },
        )
        for k in range(rng.choice((0, 0, 1, 2, 3, 5, 8))):
            at = now - timedelta(days=rng.randint(-5, 500), hours=rng.randint(0, 23))
            amount = rng.choice((0, 500, 1_000, 2_500, 10_000, 40_000))
            returned = rng.choice((0, 0, amount // 2))
            currency = rng.choice(("ZAR", "ZAR", "ZAR", "USD"))
            await session.execute(
                text(
                    "INSERT INTO purchases (id, program_id, member_id, order_id, occurred_at,"
                    " amount_minor, currency, points, matures_at, returned_minor)"
                    " VALUES (:id, :program, :member, :order, :at, :amount, :currency, 0, :at,"
                    " :returned)"
                ),
                {
                    "id": uuid.uuid4(),
                    "program": program.id,
                    "member": person.id,
                    "order": f"o-{n}-{k}",
                    "at": at,
                    "amount": amount,
                    "currency": currency,
                    "returned": returned,
                },
            )
            if at <= now:
                person.buys.append(Buy(at, amount - returned if currency == "ZAR" else 0))
        for k in range(rng.choice((0, 0, 1, 2, 4))):
            slug = rng.choice(tuple(partners))
            at = now - timedelta(days=rng.randint(-5, 400), minutes=rng.randint(0, 600))
            spent: int | None = rng.choice((None, 700, 3_000))
            paid_in = rng.choice(("ZAR", "ZAR", "USD")) if spent is not None else None
            await session.execute(
                text(
                    "INSERT INTO partner_issuances (id, program_id, partner_id, company_id,"
                    " transaction_id, member_id, points, purchase_amount_minor, currency,"
                    " contract_version, request_digest, created_at, transfer_id)"
                    " VALUES (:id, :program, :partner, :partner, :tx, :member, 5, :amount,"
                    " :currency, 1, '\\x00', :at, :id)"
                ),
                {
                    "id": uuid.uuid4(),
                    "program": program.id,
                    "partner": partners[slug],
                    "tx": f"t-{n}-{k}",
                    "member": person.id,
                    "amount": spent,
                    "currency": paid_in,
                    "at": at,
                },
            )
            if at <= now:
                counted = spent if spent is not None and paid_in == "ZAR" else 0
                person.buys.append(Buy(at, counted))
                person.earned.append((slug, at))
        for k in range(rng.choice((0, 0, 1, 2))):
            slug = rng.choice(tuple(partners))
            at = now - timedelta(days=rng.randint(-5, 400), minutes=rng.randint(0, 600))
            status = rng.choice(("captured", "captured", "released"))
            captured = rng.choice((0, 10)) if status == "captured" else 0
            await session.execute(
                text(
                    "INSERT INTO partner_holds (id, program_id, partner_id, company_id,"
                    " checkout_id, member_id, points, status, captured_points, refunded_points,"
                    " expires_at, contract_version, transfer_id, request_digest, created_at)"
                    " VALUES (:id, :program, :partner, :partner, :checkout, :member, 10,"
                    " :status, :captured, 0, :at, 1, :id, '\\x00', :at)"
                ),
                {
                    "id": uuid.uuid4(),
                    "program": program.id,
                    "partner": partners[slug],
                    "checkout": f"c-{n}-{k}",
                    "member": person.id,
                    "status": status,
                    "captured": captured,
                    "at": at,
                },
            )
            if at <= now and status == "captured" and captured > 0:
                person.redeemed.append((slug, at))
    await session.commit()
    transfers: list[Transfer] = []
    for person in people:
        for _ in range(rng.choice((0, 1, 2))):
            at = now - timedelta(days=rng.randint(0, 500), hours=rng.randint(0, 23))
            pending = rng.random() < 0.25
            transfers.append(
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=person.wallet,
                    amount=rng.randint(1, 50),
                    ledger=program.ledger_id,
                    code=TransferCode.ADJUSTMENT,
                    flags=TransferFlags.PENDING if pending else TransferFlags.NONE,
                    effective_at=at,
                )
            )
            if not pending:
                person.credits.append(at)
    outcomes = await ledger.create_transfers(transfers)
    assert all(o.ok for o in outcomes), outcomes
    return World(program=program, partners=partners, people=people, as_of=now)


# The brute force: what a definition means, member by member.


@dataclass(frozen=True)
class Facts:
    person: Person
    days_since_last_purchase: int | None
    purchases: int
    spend_minor: int
    scores: dict[str, int]


def _day(world: World, at: datetime) -> date:
    return at.astimezone(world.zone).date()


def _month(world: World, at: datetime) -> date:
    return _day(world, at).replace(day=1)


def facts_of(world: World, window_days: int, as_of: datetime | None = None) -> list[Facts]:
    """Every member enrolled by the moment, with their activity and scores."""
    moment = as_of or world.as_of
    since = moment - timedelta(days=window_days)
    base = []
    for p in world.people:
        if p.created_at > moment:
            continue
        buys = [b for b in p.buys if b.at <= moment]
        window = [b for b in buys if b.at > since]
        last = max((b.at for b in buys), default=None)
        days = (_day(world, moment) - _day(world, last)).days if last else None
        base.append((p, days, len(window), sum(b.amount for b in window)))
    spenders = [row for row in base if row[2] > 0]

    def score(value: int, values: list[int], lower_is_better: bool) -> int:
        # rank(): 1 + how many come strictly before.
        before = sum(1 for v in values if (v > value if lower_is_better else v < value))
        return 1 + (5 * before) // len(values)

    facts = []
    for p, days, purchases, spend in base:
        scores = {"recency_score": 0, "frequency_score": 0, "monetary_score": 0}
        if purchases > 0:
            assert days is not None
            scores = {
                "recency_score": score(days, [r[1] for r in spenders], lower_is_better=True),  # type: ignore[misc]
                "frequency_score": score(purchases, [r[2] for r in spenders], False),
                "monetary_score": score(spend, [r[3] for r in spenders], False),
            }
        facts.append(Facts(p, days, purchases, spend, scores))
    return facts


def _within(value: object, low: object, high: object) -> bool:
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)  # type: ignore[operator]


def field_value(world: World, f: Facts, name: str) -> object:
    p = f.person
    if name == "external_id":
        return p.external_id
    if name == "status":
        return p.status
    if name == "tier":
        return p.tier
    if name == "tier_since":
        return _day(world, p.tier_since) if p.tier_since else None
    if name == "enrolled_on":
        return _day(world, p.created_at)
    if name == "has_email":
        return bool(p.email)
    if name == "has_phone":
        return bool(p.phone)
    if name == "enrolment_cohort":
        return _month(world, p.created_at)
    if name == "first_earning_cohort":
        return _month(world, min(p.credits)) if p.credits else None
    if name in f.scores:
        return f.scores[name]
    return getattr(f, name)


def _compare(value: object, op: str, values: tuple[object, ...]) -> bool:
    if op == "is null":
        return value is None
    if op == "is not null":
        return value is not None
    if op == "true":
        return bool(value)
    if value is None:
        return False
    if op == "in":
        return value in values
    if op == "not in":
        return value not in values
    if op == "between":
        return bool(values[0] <= value <= values[1])  # type: ignore[operator]
    other = values[0]
    return bool(
        {
            "=": value == other,
            "!=": value != other,
            "<": value < other,  # type: ignore[operator]
            "<=": value <= other,  # type: ignore[operator]
            ">": value > other,  # type: ignore[operator]
            ">=": value >= other,  # type: ignore[operator]
        }[op]
    )


def holds(world: World, f: Facts, tree: Filter, moment: datetime) -> bool:
    if isinstance(tree, AllOf):
        return all(holds(world, f, t, moment) for t in tree.items)
    if isinstance(tree, AnyOf):
        return any(holds(world, f, t, moment) for t in tree.items)
    if isinstance(tree, Negation):
        return not holds(world, f, tree.item, moment)
    assert isinstance(tree, Comparison)
    if tree.field in ("earned_at", "redeemed_at"):
        events = f.person.earned if tree.field == "earned_at" else f.person.redeemed
        return any(slug in tree.values and at <= moment for slug, at in events)
    return _compare(field_value(world, f, tree.field), tree.op, tree.values)


def expected(world: World, d: SegmentDefinition, as_of: datetime | None = None) -> set[str]:
    """The external ids the definition selects, by brute force."""
    moment = as_of or world.as_of
    chosen = set()
    tree = parse_filter(d.filter) if d.filter else None
    for f in facts_of(world, d.window_days, moment):
        p = f.person
        if p.status not in d.statuses:
            continue
        if d.tiers and p.tier not in d.tiers:
            continue
        if d.recency and not _within(
            f.days_since_last_purchase, d.recency.min_days, d.recency.max_days
        ):
            continue
        if d.frequency and not _within(
            f.purchases, d.frequency.min_purchases, d.frequency.max_purchases
        ):
            continue
        if d.monetary and not _within(f.spend_minor, d.monetary.min_minor, d.monetary.max_minor):
            continue
        if d.rfm and not all(
            _within(f.scores[name], b.min_score, b.max_score)
            for name, b in (
                ("recency_score", d.rfm.recency),
                ("frequency_score", d.rfm.frequency),
                ("monetary_score", d.rfm.monetary),
            )
            if b is not None
        ):
            continue
        if d.partner:
            since = (
                moment - timedelta(days=d.partner.within_days) if d.partner.within_days else None
            )
            events = []
            if d.partner.action in (PartnerAction.EARNED, PartnerAction.EITHER):
                events += p.earned
            if d.partner.action in (PartnerAction.REDEEMED, PartnerAction.EITHER):
                events += p.redeemed
            if not any(
                slug in d.partner.partners and at <= moment and (since is None or at > since)
                for slug, at in events
            ):
                continue
        if d.cohort:
            if d.cohort.basis is CohortBasis.ENROLMENT:
                month: date | None = _month(world, p.created_at)
            else:
                month = _month(world, min(p.credits)) if p.credits else None
            first = date.fromisoformat(d.cohort.from_month + "-01") if d.cohort.from_month else None
            last = date.fromisoformat(d.cohort.to_month + "-01") if d.cohort.to_month else None
            if not _within(month, first, last):
                continue
        if tree is not None and not holds(world, f, tree, moment):
            continue
        chosen.add(p.external_id)
    return chosen
