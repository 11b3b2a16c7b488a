"""Exports streamed in CSV or Parquet, so that a large period never sits in
memory: rows come from an async iterator (a server-side cursor, page by
page) and leave as bytes as soon as a chunk (CSV) or a row group (Parquet)
is written.

The output depends only on the rows: the same rows give the same bytes
(finance re-exports a closed period byte for byte). Parquet files carry no
timestamp of their own, and CSV is written with ``\\n`` line ends and a
fixed quoting policy.

Where PostgreSQL writes the CSV itself (``COPY ... TO STDOUT``, far faster
than Python), ``csv_lines`` writes the few rows Python makes in the same
form (an empty field is NULL, a value is quoted only when it holds a
comma, a quote or a line end), ``csv_tables`` parses the pieces into Arrow
tables, and ``parquet_from_tables`` cuts row groups of exactly
``CHUNK_ROWS`` rows whatever the pieces' sizes, so the bytes still depend
only on the rows.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
}

#: Rows per CSV chunk and per Parquet row group: memory stays bounded by one
#: of these, whatever the export's size.
CHUNK_ROWS = 50_000


def _iso(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _plain_decimal(value: Any) -> Any:
    return None if value is None else format(value, "f")


def _text_converters(schema: pa.Schema) -> list[tuple[int, Callable[[Any], Any]]]:
    """The columns whose values CSV must not take as ``str()`` gives them:
    times in ISO 8601, decimals without an exponent. The csv module writes
    the rest itself (``None`` as an empty field), at C speed."""
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for position, field in enumerate(schema):
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            converters.append((position, _iso))
        elif pa.types.is_decimal(field.type):
            converters.append((position, _plain_decimal))
    return converters


async def csv_chunks(
    schema: pa.Schema, rows: AsyncIterator[Sequence[Any]], *, chunk_rows: int = CHUNK_ROWS
) -> AsyncIterator[bytes]:
    """The header, then the rows, in chunks of ``chunk_rows`` lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(schema.names)
    converters = _text_converters(schema)
    batch: list[Sequence[Any]] = []

    def flush() -> bytes:
        if converters:
            for index, row in enumerate(batch):
                values = list(row)
                for position, convert in converters:
                    values[position] = convert(values[position])
                batch[index] = values
        writer.writerows(batch)
        batch.clear()
        chunk = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return chunk

    async for row in rows:
        batch.append(row)
        if len(batch) >= chunk_rows:
            yield flush()
    yield flush()


class _Sink(io.RawIOBase):
    """A write-only file that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        taken = b"".join(self._parts)
        self._parts.clear()
        return taken


async def parquet_chunks(
    schema: pa.Schema, rows: AsyncIterator[Sequence[Any]], *, chunk_rows: int = CHUNK_ROWS
) -> AsyncIterator[bytes]:
    """A Parquet file of ``schema``, one row group per ``chunk_rows`` rows,
    each sent as soon as it is written (the footer comes last)."""
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=True)
    names = schema.names
    batch: list[Sequence[Any]] = []

    def flush() -> None:
        columns: list[Sequence[Any]] = (
            list(zip(*batch, strict=True)) if batch else [() for _ in names]
        )
        table = pa.Table.from_arrays(
            [pa.array(list(values), type=schema.field(n).type) for n, values in enumerate(columns)],
            schema=schema,
        )
        writer.write_table(table, row_group_size=chunk_rows)
        batch.clear()

    try:
        async for row in rows:
            batch.append(row)
            if len(batch) >= chunk_rows:
                flush()
                yield sink.take()
        if batch:
            flush()
    finally:
        writer.close()
    yield sink.take()


async def export_chunks(
    export_format: ExportFormat,
    schema: pa.Schema,
    rows: AsyncIterator[Sequence[Any]],
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> AsyncIterator[bytes]:
    """``rows`` (tuples in ``schema``'s column order) in ``export_format``."""
    if export_format is ExportFormat.CSV:
        async for chunk in csv_chunks(schema, rows, chunk_rows=chunk_rows):
            yield chunk
    else:
        async for chunk in parquet_chunks(schema, rows, chunk_rows=chunk_rows):
            yield chunk


def csv_lines(schema: pa.Schema, rows: Sequence[Sequence[Any]], *, header: bool) -> bytes:
    """``rows`` as CSV lines (``None`` an empty field), after the header when
    ``header``: the form ``COPY ... (FORMAT csv)`` writes, so both can be
    joined in one file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    if header:
        writer.writerow(schema.names)
    converters = _text_converters(schema)
    for row in rows:
        values = list(row)
        for position, convert in converters:
            values[position] = convert(values[position])
        writer.writerow(values)
    return buffer.getvalue().encode()


def rows_table(schema: pa.Schema, rows: Sequence[Sequence[Any]]) -> pa.Table:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.Table.from_arrays(
        [pa.array(list(values), type=schema.field(n).type) for n, values in enumerate(columns)],
        schema=schema,
    )


async def csv_tables(
    schema: pa.Schema, pieces: AsyncIterator[bytes]
) -> AsyncGenerator[pa.Table, None]:
    """Arrow tables of ``schema`` from CSV pieces (no header, each cut at a
    line end, no line end inside a value), with ``csv_lines``' conventions:
    an empty field is null, a quoted empty one an empty string."""
    read = pa_csv.ReadOptions(column_names=schema.names, block_size=4 << 20, use_threads=False)
    parse = pa_csv.ParseOptions(newlines_in_values=False)
    convert = pa_csv.ConvertOptions(
        column_types={field.name: field.type for field in schema},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    async for piece in pieces:
        if piece:
            table = pa_csv.read_csv(
                pa.BufferReader(piece),
                read_options=read,
                parse_options=parse,
                convert_options=convert,
            )
            yield table.cast(schema)


async def parquet_from_tables(
    schema: pa.Schema, tables: AsyncIterator[pa.Table], *, chunk_rows: int = CHUNK_ROWS
) -> AsyncGenerator[bytes, None]:
    """A Parquet file of the tables' rows, in row groups of exactly
    ``chunk_rows`` rows (the last one the rest), each sent once written."""
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=True)
    waiting: list[pa.Table] = []
    rows = 0

    def write(table: pa.Table) -> None:
        # One contiguous chunk per column: the pages then depend on the rows only.
        writer.write_table(table.combine_chunks(), row_group_size=chunk_rows)

    try:
        async for table in tables:
            waiting.append(table)
            rows += table.num_rows
            while rows >= chunk_rows:
                ready = pa.concat_tables(waiting)
                write(ready.slice(0, chunk_rows))
                rest = ready.slice(chunk_rows)
                waiting, rows = [rest], rest.num_rows
                yield sink.take()
        if rows or not waiting:
            write(pa.concat_tables(waiting) if waiting else schema.empty_table())
    finally:
        writer.close()
    yield sink.take()
