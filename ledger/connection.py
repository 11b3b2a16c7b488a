"""asyncpg connections for the ledger: JSON codecs and the pool."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary wire format is a version byte followed by the JSON text.
    return b"\x01" + _json_encoder.encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return _json_decoder.decode(data[1:])


async def init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await connection.set_type_codec(
        "json",
        encoder=lambda v: _json_encoder.encode(v).decode(),
        decoder=_json_decoder.decode,
        schema="pg_catalog",
    )


class PooledConnection(asyncpg.Connection):
    """A connection released to the pool without a reset query.

    asyncpg resets a released connection (advisory locks, cursors, LISTEN,
    settings) with one more round trip, which doubled the cost of a key
    look-up. Nothing here leaves such state behind: locks are taken per
    transaction, settings only by a function's own ``SET`` clause. An open
    transaction is still rolled back on release.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout: float = 60,
    connect_timeout: float = 60,
) -> asyncpg.Pool:
    """A pool whose statements give up after ``command_timeout`` seconds and
    whose connection attempts after ``connect_timeout`` (``TimeoutError``)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        command_timeout=command_timeout,
        timeout=connect_timeout,
        connection_class=PooledConnection,
    )
    assert pool is not None
    return pool
