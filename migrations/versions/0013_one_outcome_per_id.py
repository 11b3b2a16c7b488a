"""One id, one outcome: a transfer id that two batches of different ledgers
post at the same moment, one recording it and one rejecting it, ends
recorded or rejected, never both.

Each ledger has its own lock, so the two batches do not wait on each other
and neither sees the other's uncommitted row. A batch that rejects an id now
reserves it in the transfers' primary key with a row of ledger 0 (no
accounts, no amount: an id reservation, which every read of transfers
skips) beside its rejection. The primary key arbitrates: the batch that
comes second waits for the first to commit, then sees the id taken; a batch
recording the transfer then fails on the key and the writer posts it again,
which answers it from the rejection; a rejecting batch answers
``exists_with_different_fields``.

Revision ID: 0013_one_outcome_per_id
Revises: 0012_points_purchases
Create Date: 2026-12-01
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0013_one_outcome_per_id"
down_revision: str | None = "0012_points_purchases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORIGINAL: str = importlib.import_module("migrations.versions.0001_ledger").CREATE_TRANSFERS

_EDITS = (
    # A recorded transfer answers its replays, whatever rejection its id has.
    (
        """        JOIN transfer_rejections x ON x.id = u.id
    LOOP
        pre[i] := code;
    END LOOP;""",
        """        JOIN transfer_rejections x ON x.id = u.id
    LOOP
        IF pre[i] < 0 THEN pre[i] := code; END IF;
    END LOOP;""",
    ),
    # Replays are answered from real transfers, not from id reservations.
    (
        """        JOIN transfers t ON t.id = u.id
    LOOP
        pre[i] := code;""",
        """        JOIN transfers t ON t.id = u.id AND t.ledger <> 0
    LOOP
        pre[i] := code;""",
    ),
    # A reservation is no pending transfer to post or void.
    (
        """            LEFT JOIN transfers t ON t.id = q.id
            LEFT JOIN transfers res""",
        """            LEFT JOIN transfers t ON t.id = q.id AND t.ledger <> 0
            LEFT JOIN transfers res""",
    ),
    # A rejected id is reserved in the primary key, which waits for any
    # batch recording the same id and keeps any later one from doing so.
    (
        """    -- Failed ids are reserved with their failure""",
        """    FOR i IN
        SELECT u.i FROM unnest(r, pre, first_i, p_id) WITH ORDINALITY AS u(res, pre, fi, id, i)
        WHERE u.res > 2 AND u.res <> 5 AND u.pre < 0 AND u.fi = u.i AND u.id <> c_nil
    LOOP
        INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger,
                               code, flags, timeout, "timestamp", created_at)
        VALUES (p_id[i], c_nil, c_nil, 0, 0, 0, 0, 0, 0, v_now)
        ON CONFLICT (id) DO NOTHING;
        GET DIAGNOSTICS n_updated = ROW_COUNT;
        IF n_updated = 0 THEN
            -- Taken meanwhile by a batch of another ledger.
            r[i] := 2;
        END IF;
    END LOOP;

    -- Failed ids are reserved with their failure""",
    ),
)


def or_replace(source: str) -> str:
    """``source`` with ``CREATE OR REPLACE`` for ``CREATE``: it replaces the function."""
    return source.replace(
        "CREATE FUNCTION ledger_create_transfers(",
        "CREATE OR REPLACE FUNCTION ledger_create_transfers(",
        1,
    )


def apply_edits(source: str, edits: Sequence[tuple[str, str]], revision: str) -> str:
    """``source`` with each (old, new) of ``edits`` applied; each old text must
    occur exactly once."""
    for old, new in edits:
        if source.count(old) != 1:
            raise RuntimeError(
                f"{revision}: the function's text to replace was not found: {old[:60]!r}"
            )
        source = source.replace(old, new)
    return source


def _edited() -> str:
    return or_replace(apply_edits(_ORIGINAL, _EDITS, "0013"))


def upgrade() -> None:
    op.execute(_edited())


def downgrade() -> None:
    op.execute(or_replace(_ORIGINAL))
