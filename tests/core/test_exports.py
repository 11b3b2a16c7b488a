"""Exports stream in CSV and Parquet, the same rows giving the same bytes."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.exports import ExportFormat, export_chunks

SCHEMA = pa.schema(
    [("day", pa.date32()), ("account", pa.string()), ("amount", pa.decimal128(20, 2))]
)


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [(date(2026, 1, 1 + i % 28), f"acct,{i}", Decimal(i) / 100) for i in range(n)]


async def _iterate(rows: Sequence[tuple[Any, ...]]) -> AsyncIterator[tuple[Any, ...]]:
    for row in rows:
        yield row


async def _export(fmt: ExportFormat, rows: list[tuple[Any, ...]], chunk: int) -> list[bytes]:
    return [part async for part in export_chunks(fmt, SCHEMA, _iterate(rows), chunk_rows=chunk)]


async def test_parquet_streams_row_groups_and_reads_back() -> None:
    rows = _rows(1_000)
    parts = await _export(ExportFormat.PARQUET, rows, 100)
    assert len(parts) > 2  # sent a row group at a time, not at the end
    table = pq.read_table(io.BytesIO(b"".join(parts)))
    assert table.num_rows == 1_000
    assert pq.ParquetFile(io.BytesIO(b"".join(parts))).num_row_groups == 10
    assert table.column("amount").to_pylist()[7] == Decimal("0.07")
    assert b"".join(parts) == b"".join(await _export(ExportFormat.PARQUET, rows, 100))


async def test_csv_streams_chunks_quoted_and_identical_twice() -> None:
    rows = _rows(250)
    parts = await _export(ExportFormat.CSV, rows, 100)
    assert len(parts) == 3
    text = b"".join(parts).decode()
    lines = text.splitlines()
    assert lines[0] == "day,account,amount"
    assert lines[2] == '2026-01-02,"acct,1",0.01'
    assert len(lines) == 251
    assert parts == await _export(ExportFormat.CSV, rows, 100)


async def test_an_empty_export_is_still_a_file() -> None:
    assert b"".join(await _export(ExportFormat.CSV, [], 10)) == b"day,account,amount\n"
    table = pq.read_table(io.BytesIO(b"".join(await _export(ExportFormat.PARQUET, [], 10))))
    assert table.num_rows == 0 and table.schema.names == SCHEMA.names


async def test_csv_writes_times_in_iso_8601_and_nothing_for_none() -> None:
    schema = pa.schema([("at", pa.timestamp("us", tz="UTC")), ("note", pa.string())])
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        yield (moment, None)
        yield (None, "x")

    text = b"".join([c async for c in export_chunks(ExportFormat.CSV, schema, rows())]).decode()
    assert text == "at,note\n2026-03-01T12:30:00+00:00,\n,x\n"
