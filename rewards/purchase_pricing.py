"""Pricing a batch of new purchases: the points each earns under the rule
version in force at its time, and what it does to its member's tier and
threshold rewards, as a sequence of single purchases would."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from core.codes import derived_id
from core.models import Program
from ledger import new_id
from rewards.budgets import lock_budgets, take_from_budget
from rewards.connections import Connection
from rewards.purchase_repository import BatchMember, RecordedPurchase, window_totals
from rewards.purchases import PurchaseEvent, PurchaseOutcome
from rewards.rule_versions import parse_rules
from rewards.rules import Basket, EarnRules, quote_purchase
from rewards.tiers import qualified_tier, window_at

_JSON = msgspec.json.Encoder()


class _Version(msgspec.Struct, kw_only=True, frozen=True):
    version: int
    effective_from: datetime
    rules: dict[str, Any]


class _Rung(msgspec.Struct, kw_only=True, frozen=True):
    code: str
    rank: int
    threshold: int


class Threshold(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    code: str
    amount_minor: int
    bonus_points: int


class _TermsDocument(msgspec.Struct, kw_only=True, frozen=True):
    versions: list[_Version]
    tiers: list[_Rung]
    thresholds: list[Threshold]


class Terms(msgspec.Struct, kw_only=True, frozen=True):
    """What pricing and qualifying need of a program, read once per batch."""

    #: Published versions, latest effective first, with their parsed rules.
    versions: list[tuple[_Version, EarnRules]]
    tiers: list[_Rung]
    thresholds: list[Threshold]

    def rules_at(self, at: datetime) -> tuple[_Version, EarnRules] | None:
        return next((v for v in self.versions if v[0].effective_from <= at), None)


@functools.lru_cache(maxsize=256)
def parse_terms(document: str) -> Terms:
    # Published versions never change, so the same text parses to the same
    # terms: a busy program pays for the parsing once.
    parsed = msgspec.json.decode(document, type=_TermsDocument)
    return Terms(
        versions=[(v, parse_rules(v.rules)) for v in parsed.versions],
        tiers=parsed.tiers,
        thresholds=parsed.thresholds,
    )


class PricedPurchase(msgspec.Struct, kw_only=True):
    """A purchase of the batch, priced and counted, before it is written."""

    #: The event's position in the batch.
    position: int
    event: PurchaseEvent
    member: BatchMember
    id: uuid.UUID
    items: str
    rule_version: int | None
    points: int
    earn_id: uuid.UUID | None
    matures_at: datetime
    #: Threshold rewards whose amount the member's window spend reached.
    reached: list[Threshold] = []
    window_start: datetime | None = None
    window_end: datetime | None = None

    def outcome(self) -> PurchaseOutcome:
        return PurchaseOutcome(
            order_id=self.event.order_id,
            points=self.points,
            rule_version=self.rule_version,
            matures_at=self.matures_at,
            replayed=False,
        )

    def as_recorded(self) -> RecordedPurchase:
        return RecordedPurchase(
            order_id=self.event.order_id,
            member_id=self.member.id,
            amount_minor=self.event.amount_minor,
            occurred_at=self.event.occurred_at,
            items=self.items,
            points=self.points,
            rule_version=self.rule_version,
            matures_at=self.matures_at,
        )


async def price_and_count(
    connection: Connection,
    program: Program,
    terms: Terms,
    fresh: list[tuple[int, PurchaseEvent, BatchMember]],
) -> list[PricedPurchase]:
    """Price each new purchase, in order, and move tiers as a sequence of
    single purchases would: a purchase that upgrades its member prices the
    member's next purchases at the new tier."""
    # The budgets this batch may draw on, locked up front in one order:
    # taken purchase by purchase, two batches could lock them crosswise.
    budgets = set()
    for _, event, _ in fresh:
        in_force = terms.rules_at(event.occurred_at)
        if in_force is None:
            continue
        for bonus in in_force[1].bonuses:
            if (
                bonus.budget_points is not None
                and bonus.starts_at <= event.occurred_at < bonus.ends_at
            ):
                budgets.add((in_force[0].version, f"bonus:{bonus.name}"))
    if budgets:
        await lock_budgets(connection, program.id, sorted(budgets))
    qualifying = bool(terms.tiers or terms.thresholds)
    windows = [window_at(program, m.created_at, e.occurred_at) for _, e, m in fresh]
    totals: list[tuple[int, int]] = []
    if qualifying:
        totals = await window_totals(
            connection, [(m.id, w[0], w[1]) for (_, _, m), w in zip(fresh, windows, strict=True)]
        )
    rows: list[PricedPurchase] = []
    for (position, event, member), (start, end), index in zip(
        fresh, windows, range(len(fresh)), strict=True
    ):
        in_force = terms.rules_at(event.occurred_at)
        points = 0
        if in_force is not None:
            points = await _price(connection, program, in_force, event, member.tier_code)
        row = PricedPurchase(
            position=position,
            event=event,
            member=member,
            id=new_id(),
            items=_JSON.encode(event.items).decode(),
            rule_version=in_force[0].version if in_force else None,
            points=points,
            earn_id=derived_id(program.id, "earn", event.order_id) if points > 0 else None,
            matures_at=event.occurred_at + timedelta(days=program.return_window_days),
        )
        rows.append(row)
        if not qualifying:
            continue
        # This batch's earlier purchases of the member in the same window
        # count too: the database has not seen them yet.
        spend, earned = totals[index]
        for other in rows:
            if other.member is member and start <= other.event.occurred_at < end:
                spend += other.event.amount_minor
                earned += other.points
        amount = spend if program.tier_basis == "spend" else earned
        reached = qualified_tier(terms.tiers, amount)
        current = next((t for t in terms.tiers if t.code == member.tier_code), None)
        if reached is not None and (current is None or reached.rank > current.rank):
            member.tier_code, member.tier_since, member.moved = (
                reached.code,
                event.occurred_at,
                True,
            )
        row.reached = [t for t in terms.thresholds if spend >= t.amount_minor]
        row.window_start, row.window_end = start, end
    return rows


async def _price(
    connection: Connection,
    program: Program,
    in_force: tuple[_Version, EarnRules],
    event: PurchaseEvent,
    tier: str | None,
) -> int:
    version, rules = in_force
    basket = Basket(
        amount_minor=event.amount_minor,
        occurred_at=event.occurred_at,
        items=event.items,
        minor_per_major=program.minor_per_major,
    )
    quote = quote_purchase(rules, basket, tier)
    points = quote.base_points
    budgets = {b.name: b.budget_points for b in rules.bonuses}
    for grant in quote.bonuses:
        budget = budgets.get(grant.name)
        if budget is None:
            points += grant.points
        else:
            # A bonus never grants more than its budget, whatever the race.
            points += await take_from_budget(
                connection, program.id, version.version, f"bonus:{grant.name}", budget, grant.points
            )
    return points
