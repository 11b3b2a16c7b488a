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

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0013_one_outcome_per_id"
down_revision: str | None = "0012_points_purchases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        ledger_function(
            "history/0013_one_outcome_per_id/ledger_create_transfers.sql",
            "1fe4d3b129495b723f4620e36e987c2e24a99261e6dc9335d7e858d163fa84a7",
        )
    )


def downgrade() -> None:
    op.execute(
        ledger_function(
            "history/0001_ledger/ledger_create_transfers.sql",
            "73e9a3b7244ab5f89780bb32fb6ac08780958a4f3f18fb346989e0bca42ba0df",
        )
    )
