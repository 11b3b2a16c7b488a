"""Ids for ledger records.

Clients choose transfer and account ids; the id is the idempotency key.
Time-ordered UUIDv7 ids keep the primary-key index append-mostly, where
random UUIDv4 ids scatter inserts (and write-ahead-log page images) over the
whole index.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A new time-ordered (v7) id."""
    return uuid7()
