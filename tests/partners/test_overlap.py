"""Overlap matching against PostgreSQL: both modes (keyed hashes, PSI)
equal a brute-force set intersection of generated lists, no group below
the agreement's minimum is ever shown, a difference attack is refused by
the count-query budget, the overlaps carry only the agreement's fields and
are logged, a partner not party to the agreement finds nothing, and bad
input writes nothing."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import Principal
from partners.data_sharing import overlap, overlap_budget, overlap_hmac, overlap_runs
from partners.data_sharing.errors import AgreementNotFound, NotARecipient
from partners.data_sharing.identifiers import IdentifierKind, normalise_email
from partners.data_sharing.models import DataDisclosure, DataSharingAgreement
from partners.data_sharing.overlap import ListRecord
from partners.data_sharing.overlap_errors import (
    InvalidOverlapList,
    InvalidOverlapRun,
    OverlapListMissing,
    OverlapQueryRefused,
    OverlapRunNotFound,
    OverlapUploadNotFound,
)
from partners.data_sharing.overlap_models import (
    HashedBy,
    MatchMode,
    OverlapCountQuery,
    OverlapRun,
    OverlapUpload,
    ResultKind,
    overlap_psi_setups,
)
from partners.models import Partner
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import partner_principal
from tests.partners.conftest import NewPartner

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SEGMENTS = ("retail", "fleet", "online", "tiny")


_principals: dict[int, tuple[Partner, Principal]] = {}


def acting(partner: Partner) -> Principal:
    # Made once per partner object (kept, so that its id() is not reused):
    # after a rollback its attributes expire.
    found = _principals.get(id(partner))
    if found is None or found[0] is not partner:
        found = _principals[id(partner)] = (partner, _principal(partner))
    return found[1]


def _principal(partner: Partner) -> Principal:
    return partner_principal(partner, scopes=("data:share",))


class World:
    def __init__(
        self, program: Program, a: Partner, b: Partner, c: Partner, agreement: DataSharingAgreement
    ) -> None:
        self.program, self.a, self.b, self.c, self.agreement = program, a, b, c, agreement
        self.agreement_id = agreement.id


async def make_agreement(
    session: AsyncSession, program: Program, a: Partner, b: Partner, **fields: Any
) -> DataSharingAgreement:
    values: dict[str, Any] = {
        "program_id": program.id,
        "proposer_partner_id": a.id,
        "counterparty_partner_id": b.id,
        "purpose": "Joint offers to shared customers",
        "direction": "both",
        "fields": ["email", "tier"],
        "min_group_size": 50,
        "status": "active",
        "proposer_opted_in_at": NOW,
        "counterparty_opted_in_at": NOW,
        "expires_at": NOW + timedelta(days=90),
        "key_epoch": 1,
        **fields,
    }
    agreement = DataSharingAgreement(id=uuid.uuid4(), **values)
    session.add(agreement)
    await session.commit()
    return agreement


@pytest.fixture
async def world(session: AsyncSession, new_program: NewProgram, new_partner: NewPartner) -> World:
    program = await new_program()
    a, b, c = [await new_partner(program) for _ in range(3)]
    for partner in (a, b, c):
        acting(partner)
    return World(program, a, b, c, await make_agreement(session, program, a, b))


def emails(n: int, start: int = 0) -> list[str]:
    return [f"Customer.{i}@Example.COM " for i in range(start, start + n)]


def segmented(values: Sequence[str], seed: int) -> list[ListRecord]:
    rng = random.Random(seed)
    records = []
    for value in values:
        # "tiny" is rare: its overlap stays below the minimum group size.
        segment = rng.choices(SEGMENTS, weights=(40, 30, 29, 1))[0]
        records.append(ListRecord(identifier=value, segment=segment))
    return records


async def upload(
    session: AsyncSession, w: World, who: Partner, records: Sequence[ListRecord], **kw: Any
) -> OverlapUpload:
    kw.setdefault("hashed_by", HashedBy.PLATFORM)
    result = await overlap.upload_list(
        session, acting(who), w.agreement_id, IdentifierKind.EMAIL, records, now=NOW, **kw
    )
    await session.commit()
    return result


async def count(session: AsyncSession, w: World, who: Partner, **kw: Any) -> OverlapRun:
    kw.setdefault("mode", MatchMode.KEYED_HASH)
    run = await overlap_runs.run_match(
        session, acting(who), w.agreement_id, result_kind=ResultKind.COUNTS, now=NOW, **kw
    )
    await session.commit()
    return run


def brute_force_groups(mine: Sequence[ListRecord], theirs: Sequence[ListRecord]) -> dict[str, int]:
    """Distinct shared normalised e-mails, by the segment of their first
    record in ``mine``."""
    other = {normalise_email(r.identifier) for r in theirs} - {None}
    groups: dict[str, int] = {}
    seen: set[str] = set()
    for record in mine:
        value = normalise_email(record.identifier)
        if value is None or value not in other or value in seen:
            continue
        seen.add(value)
        label = record.segment or ""
        groups[label] = groups.get(label, 0) + 1
    return groups


def _lists() -> tuple[list[ListRecord], list[ListRecord]]:
    rng = random.Random(11)
    pool = emails(6000)
    mine = [*rng.sample(pool, 3000), "not an e-mail", pool[0]]  # a bad one, a duplicate
    theirs = rng.sample(pool, 2500)
    return segmented(mine, 1), segmented([v.lower().strip() for v in theirs], 2)


@pytest.mark.parametrize("mode", [MatchMode.KEYED_HASH, MatchMode.PSI])
async def test_counts_equal_a_brute_force_intersection_and_hide_small_groups(
    session: AsyncSession, world: World, mode: MatchMode
) -> None:
    mine, theirs = _lists()
    await upload(session, world, world.a, mine)
    await upload(session, world, world.b, theirs)
    run = await count(session, world, world.a, mode=mode)
    expected = brute_force_groups(mine, theirs)
    assert sum(expected.values()) == run.matched
    assert expected["tiny"] < 50 <= min(expected[s] for s in ("retail", "fleet", "online"))
    shown = run.shown
    assert shown["segments"] == {s: expected[s] for s in ("fleet", "online", "retail")}
    assert "tiny" not in shown["segments"] and shown["suppressed_groups"] == 1
    # The hidden group is below the minimum: the total would give it away.
    assert shown["total"] is None


async def test_psi_reuses_the_cached_setup_of_the_epoch(
    session: AsyncSession, world: World
) -> None:
    mine, theirs = _lists()
    await upload(session, world, world.a, mine)
    other = await upload(session, world, world.b, theirs)
    first = await count(session, world, world.a, mode=MatchMode.PSI)
    cached = await session.scalar(
        select(func.count())
        .select_from(overlap_psi_setups)
        .where(overlap_psi_setups.c.upload_id == other.id)
    )
    assert cached == 1
    again = await count(session, world, world.a, mode=MatchMode.PSI, segment_filter=["retail"])
    expected = brute_force_groups([r for r in mine if r.segment == "retail"], theirs)["retail"]
    assert again.shown["segments"] == {"retail": expected}
    assert again.shown["total"] == expected == first.shown["segments"]["retail"]


async def test_a_total_is_shown_when_nothing_is_hidden(session: AsyncSession, world: World) -> None:
    await upload(session, world, world.a, [ListRecord(e) for e in emails(400)])
    await upload(session, world, world.b, [ListRecord(e) for e in emails(400, start=300)])
    run = await count(session, world, world.a)
    assert run.shown["total"] == 100 == run.matched
    assert run.shown["unsegmented"] == 100


@pytest.mark.parametrize("mode", [MatchMode.KEYED_HASH, MatchMode.PSI])
async def test_an_overlap_below_the_minimum_shows_nothing(
    session: AsyncSession, world: World, mode: MatchMode
) -> None:
    await upload(session, world, world.a, [ListRecord(e) for e in emails(500)])
    await upload(session, world, world.b, [ListRecord(e) for e in emails(500, start=451)])
    run = await count(session, world, world.a, mode=mode)
    assert run.matched == 49
    assert run.shown == {
        "total": None, "segments": {}, "unsegmented": None, "suppressed_groups": 1
    }  # fmt: skip
    overlaps = await overlap_runs.run_match(
        session, acting(world.a), world.agreement_id,
        mode=MatchMode.KEYED_HASH, result_kind=ResultKind.OVERLAPS, now=NOW,
    )  # fmt: skip
    assert overlaps.shown == {"records": None} and overlaps.own_positions is None


async def test_a_difference_attack_is_refused(session: AsyncSession, world: World) -> None:
    theirs = [ListRecord(e) for e in emails(1000, start=500)]
    mine = [ListRecord(e) for e in emails(1000)]
    await upload(session, world, world.b, theirs)
    await upload(session, world, world.a, mine)
    first = await count(session, world, world.a)
    assert first.shown["total"] == 500
    first_shown = dict(first.shown)
    # The same list with one record removed: the two counts would tell
    # whether that one customer is the other partner's.
    target = mine[700]
    await upload(session, world, world.a, [r for r in mine if r is not target])
    queries = await session.scalar(select(func.count()).select_from(OverlapCountQuery))
    with pytest.raises(OverlapQueryRefused, match="differ from an earlier query's by 1"):
        await count(session, world, world.a)
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(OverlapCountQuery)) == queries
    # The other partner removing the record from its own list: refused too.
    await upload(session, world, world.a, mine)
    await upload(session, world, world.b, [r for r in theirs if r.identifier != target.identifier])
    with pytest.raises(OverlapQueryRefused):
        await count(session, world, world.a)
    await session.rollback()
    # The first question again is free: the same figures.
    await upload(session, world, world.b, theirs)
    again = await count(session, world, world.a)
    assert again.shown == first_shown
    # A list that differs by the minimum group size or more is answered.
    await upload(session, world, world.a, mine[:-50])
    assert (await count(session, world, world.a)).shown["total"] == 450


async def test_the_count_query_budget_runs_out(
    session: AsyncSession, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlap_budget, "COUNT_QUERY_BUDGET", 2)
    await upload(session, world, world.b, [ListRecord(e) for e in emails(1000)])
    for size in (1000, 900):
        await upload(session, world, world.a, [ListRecord(e) for e in emails(size)])
        await count(session, world, world.a)
    await upload(session, world, world.a, [ListRecord(e) for e in emails(800)])
    with pytest.raises(OverlapQueryRefused, match="budget of 2 count queries is spent"):
        await count(session, world, world.a)


async def test_overlaps_list_the_matches_with_only_the_agreed_fields(
    session: AsyncSession, world: World
) -> None:
    mine = [ListRecord(e) for e in emails(300)]
    theirs = [
        ListRecord(e, fields={"tier": f"gold-{i}"} if i % 2 else None)
        for i, e in enumerate(emails(300, start=200))
    ]
    await upload(session, world, world.a, mine)
    other = await upload(session, world, world.b, theirs)
    run = await overlap_runs.run_match(
        session, acting(world.a), world.agreement_id,
        mode=MatchMode.KEYED_HASH, result_kind=ResultKind.OVERLAPS, now=NOW,
    )  # fmt: skip
    await session.commit()
    expected = [i for i, r in enumerate(mine) if 200 <= i < 500]
    assert run.own_positions == expected
    assert run.other_positions == [i - 200 for i in expected]
    fields = await overlap_runs.record_fields(session, other.id, run.other_positions)
    assert all(set(f) == {"tier"} for f in fields.values())
    log = (
        await session.scalars(
            select(DataDisclosure).where(DataDisclosure.reference == f"overlap-run:{run.id}")
        )
    ).all()
    assert len(log) == 100 and {d.to_partner_id for d in log} == {world.a.id}
    assert sum(1 for d in log if d.fields == ["tier"]) == 50


async def test_a_field_the_agreement_does_not_share_is_refused_and_nothing_written(
    session: AsyncSession, world: World
) -> None:
    before = await session.scalar(select(func.count()).select_from(OverlapUpload))
    with pytest.raises(InvalidOverlapList, match="does not share phone"):
        await overlap.upload_list(
            session, acting(world.a), world.agreement_id, IdentifierKind.EMAIL,
            [ListRecord("a@example.com", fields={"phone": "+27115550000"})],
            hashed_by=HashedBy.PLATFORM, now=NOW,
        )  # fmt: skip
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(OverlapUpload)) == before


async def test_partner_hashed_lists_match_the_platform_hashed(
    session: AsyncSession, world: World
) -> None:
    epoch, key = await overlap.partner_key(session, acting(world.b), world.agreement_id, NOW)
    await session.commit()
    values = [normalise_email(e) for e in emails(400, start=100)]
    digests = overlap_hmac.keyed_digests(key, values)
    hashed = [ListRecord(d.hex()) for d in overlap_hmac.split_digests(digests)]
    await upload(session, world, world.b, hashed, hashed_by=HashedBy.PARTNER, key_epoch=epoch)
    await upload(session, world, world.a, [ListRecord(e) for e in emails(400)])
    assert (await count(session, world, world.a)).shown["total"] == 300
    with pytest.raises(InvalidOverlapList, match="64 lower-case hex"):
        await upload(
            session, world, world.b, [ListRecord("a@example.com")], hashed_by=HashedBy.PARTNER
        )


async def test_a_rotated_key_stops_earlier_lists_matching(
    session: AsyncSession, world: World
) -> None:
    await upload(session, world, world.a, [ListRecord(e) for e in emails(100)])
    await upload(session, world, world.b, [ListRecord(e) for e in emails(100)])
    _, old_key = await overlap.partner_key(session, acting(world.a), world.agreement_id, NOW)
    epoch = await overlap.rotate_key(session, acting(world.a), world.agreement_id, NOW)
    await session.commit()
    assert epoch == 2
    _, new_key = await overlap.partner_key(session, acting(world.a), world.agreement_id, NOW)
    assert new_key != old_key
    with pytest.raises(OverlapListMissing):
        await count(session, world, world.a)


async def test_a_partner_not_party_finds_nothing(session: AsyncSession, world: World) -> None:
    records = [ListRecord(e) for e in emails(100)]
    a_upload = await upload(session, world, world.a, records)
    await upload(session, world, world.b, records)
    run = await count(session, world, world.a)
    outsider = acting(world.c)
    with pytest.raises(AgreementNotFound):
        await overlap.upload_list(
            session, outsider, world.agreement_id, IdentifierKind.EMAIL, records,
            hashed_by=HashedBy.PLATFORM, now=NOW,
        )  # fmt: skip
    with pytest.raises(AgreementNotFound):
        await overlap_runs.run_match(
            session, outsider, world.agreement_id,
            mode=MatchMode.KEYED_HASH, result_kind=ResultKind.COUNTS, now=NOW,
        )  # fmt: skip
    with pytest.raises(AgreementNotFound):
        await overlap.partner_key(session, outsider, world.agreement_id, NOW)
    with pytest.raises(OverlapRunNotFound):
        await overlap_runs.get_run(session, outsider, world.agreement_id, run.id)
    with pytest.raises(OverlapUploadNotFound):
        await overlap.get_upload(session, outsider, world.agreement_id, a_upload.id)
    # The other party sees neither the caller's run nor its upload.
    with pytest.raises(OverlapRunNotFound):
        await overlap_runs.get_run(session, acting(world.b), world.agreement_id, run.id)


async def test_direction_and_mode_rules(
    session: AsyncSession, world: World, new_partner: NewPartner
) -> None:
    one_way = await make_agreement(
        session, world.program, world.a, world.b, direction="proposer_to_counterparty"
    )
    w = World(world.program, world.a, world.b, world.c, one_way)
    await upload(session, w, w.a, [ListRecord(e) for e in emails(100)])
    await upload(session, w, w.b, [ListRecord(e) for e in emails(100)])
    with pytest.raises(NotARecipient):
        await overlap_runs.run_match(
            session, acting(w.a), one_way.id,
            mode=MatchMode.KEYED_HASH, result_kind=ResultKind.OVERLAPS, now=NOW,
        )  # fmt: skip
    with pytest.raises(InvalidOverlapRun, match="counts only"):
        await overlap_runs.run_match(
            session, acting(w.b), one_way.id,
            mode=MatchMode.PSI, result_kind=ResultKind.OVERLAPS, now=NOW,
        )  # fmt: skip
    with pytest.raises(InvalidOverlapRun, match="no segment"):
        await count(session, w, w.b, segment_filter=["nope"])
