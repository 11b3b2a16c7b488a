"""Overlap matching's speed (issue 11, "Speed"): keyed-hash matching of two
lists of ``--records`` each with ``--overlap`` in common, from upload to
result, beside the time that hashing the two lists alone takes in the same
run; then PSI counts-only matching of ``--psi-records`` x ``--psi-records``.

    .venv/bin/python bench/overlap.py [--records 1000000] [--overlap 100000]
        [--psi-records 100000] [--psi-1m] [--rounds 1] [--skip-psi]

Runs in a database of its own on ``DATABASE_URL``'s server (dropped at the
end). Prints, per round:

- hash only: HMAC-SHA256 of both lists' identifiers, in memory, nothing else;
- upload to result: both partners' uploads through the use case
  (``overlap.upload_list``: agreement check, normalisation, keyed hashes,
  COPY of the digests, commit), then the count query
  (``overlap_runs.run_match``: both lists read back, the join, the
  difference-attack budget, the minimum group size, the run, the
  disclosure line, commit), and the ratio of the two (goal: under 10 s and
  within 2x);
- PSI: the server's setup message, the client's request, the server's
  response and the count (``overlap_psi``), each timed, their total (goal:
  under 60 s for 100,000 x 100,000), and the same count with the setup
  message from the cache. ``--psi-1m`` adds 1,000,000 x 1,000,000 (about
  ten times the 100,000 figures: the four steps are linear).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common import argument_parser, bench_database
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.database import migrate, sqlalchemy_url
from core.principal import Principal, PrincipalKind, system
from ledger import Ledger
from ledger.connection import create_pool
from partners.data_sharing import overlap, overlap_hmac, overlap_psi, overlap_runs
from partners.data_sharing.identifiers import IdentifierKind, normalise_email
from partners.data_sharing.models import DataSharingAgreement
from partners.data_sharing.overlap import ListRecord
from partners.data_sharing.overlap_models import HashedBy, MatchMode, ResultKind
from partners.models import Partner, PartnerStatus
from rewards.programs import ProgramSpec, open_program


def acting(partner: Partner) -> Principal:
    return Principal(
        kind=PrincipalKind.PARTNER,
        actor=f"partner:bench-{partner.slug}",
        scopes=frozenset({"data:share"}),
        program_id=partner.program_id,
        partner_id=partner.id,
        partner_ids=frozenset({partner.id}),
    )


def lists(records: int, common: int) -> tuple[list[str], list[str]]:
    """Two lists of ``records`` addresses sharing ``common``, as partners
    hold them (mixed case, some padding)."""
    left = [f"Customer.{i}@Example.com" for i in range(records)]
    start = records - common
    right = [f" customer.{i}@example.COM" for i in range(start, start + records)]
    return left, right


async def setup(url: str) -> tuple[AsyncSession, Partner, Partner, DataSharingAgreement]:
    pool = await create_pool(url, min_size=1, max_size=2)
    engine = create_async_engine(sqlalchemy_url(url))
    session = AsyncSession(engine, expire_on_commit=False)
    program, _ = await open_program(
        session,
        Ledger(pool),
        ProgramSpec(slug="bench", name="Bench", currency="ZAR", point_value_minor=Decimal(1)),
        principal=system("bench"),
    )
    now = datetime.now(UTC)
    partners = []
    for n in range(2):
        partner = Partner(
            id=uuid.uuid4(), program_id=program.id, slug=f"partner-{n}", name=f"Partner {n}",
            legal_name=f"Partner {n} (Pty) Ltd", country="ZA", currency="ZAR", contacts=[],
            status=PartnerStatus.ACTIVE, status_changed_at=now,
        )  # fmt: skip
        session.add(partner)
        partners.append(partner)
    await session.commit()
    agreement = DataSharingAgreement(
        id=uuid.uuid4(), program_id=program.id, proposer_partner_id=partners[0].id,
        counterparty_partner_id=partners[1].id, purpose="bench", direction="both",
        fields=["email"], min_group_size=50, status="active", proposer_opted_in_at=now,
        counterparty_opted_in_at=now, expires_at=now + timedelta(days=30), key_epoch=1,
    )  # fmt: skip
    session.add(agreement)
    await session.commit()
    return session, partners[0], partners[1], agreement


async def keyed_hash_round(
    session: AsyncSession,
    a: Partner,
    b: Partner,
    agreement: DataSharingAgreement,
    left: list[str],
    right: list[str],
) -> None:
    key = (await overlap.epoch_key(session, agreement)).hmac_key
    await session.commit()
    started = time.perf_counter()
    overlap_hmac.keyed_digests(key, left)
    overlap_hmac.keyed_digests(key, right)
    hash_only = time.perf_counter() - started

    left_records = [ListRecord(v) for v in left]
    right_records = [ListRecord(v) for v in right]
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for who, records in ((a, left_records), (b, right_records)):
        mark = time.perf_counter()
        await overlap.upload_list(
            session, acting(who), agreement.id, IdentifierKind.EMAIL, records,
            hashed_by=HashedBy.PLATFORM, now=now,
        )  # fmt: skip
        await session.commit()
        timings[f"upload {who.slug}"] = time.perf_counter() - mark
    mark = time.perf_counter()
    run = await overlap_runs.run_match(
        session, acting(a), agreement.id,
        mode=MatchMode.KEYED_HASH, result_kind=ResultKind.COUNTS, now=now,
    )  # fmt: skip
    await session.commit()
    timings["match"] = time.perf_counter() - mark
    total = time.perf_counter() - started
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
    print(
        f"keyed hash {len(left):,} x {len(right):,}: matched {run.matched:,}"
        f" (shown total {run.shown['total']})\n"
        f"  hash only (both lists): {hash_only:.2f} s\n"
        f"  upload to result:       {total:.2f} s ({parts})\n"
        f"  ratio: {total / hash_only:.2f} (goal < 2, and upload to result < 10 s)",
        flush=True,
    )


def psi_round(records: int, common: int) -> None:
    # The partners' own clients normalise before the protocol, as for hashes.
    raw_left, raw_right = lists(records, common)
    left = [v for v in map(normalise_email, raw_left) if v is not None]
    right = [v for v in map(normalise_email, raw_right) if v is not None]
    server_key, client_key = overlap_psi.new_key(), overlap_psi.new_key()
    started = time.perf_counter()
    setup = overlap_psi.server_setup(server_key, right)
    t_setup = time.perf_counter() - started
    mark = time.perf_counter()
    request = overlap_psi.client_request(client_key, left)
    t_request = time.perf_counter() - mark
    mark = time.perf_counter()
    response = overlap_psi.server_response(server_key, request)
    t_response = time.perf_counter() - mark
    mark = time.perf_counter()
    count = overlap_psi.intersection_size(client_key, setup, response)
    t_count = time.perf_counter() - mark
    total = time.perf_counter() - started
    cached = total - t_setup
    print(
        f"PSI {records:,} x {records:,}: count {count:,} (expected {common:,})\n"
        f"  setup {t_setup:.1f} s, request {t_request:.1f} s, response {t_response:.1f} s,"
        f" count {t_count:.1f} s\n"
        f"  total {total:.1f} s (goal < 60 s at 100,000); with the setup cached {cached:.1f} s",
        flush=True,
    )


async def run(args: argparse.Namespace, url: str) -> None:
    session, a, b, agreement = await setup(url)
    left, right = lists(args.records, args.overlap)
    for _ in range(args.rounds):
        # Every round asks the same question again: a repeat, free of budget.
        await keyed_hash_round(session, a, b, agreement, left, right)
    await session.close()


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--overlap", type=int, default=100_000)
    parser.add_argument("--psi-records", type=int, default=100_000)
    parser.add_argument("--psi-1m", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-psi", action="store_true")
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load {load}", flush=True)
    with bench_database() as url:
        migrate(url)
        asyncio.run(run(args, url))
    if not args.skip_psi:
        psi_round(args.psi_records, args.psi_records // 10)
        if args.psi_1m:
            psi_round(1_000_000, 100_000)


if __name__ == "__main__":
    main()
