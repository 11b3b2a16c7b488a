"""A lone plain transfer is posted without the set-based stages.

With few callers the writer's batches hold one transfer, and the batch
function's set-based stages (unnest, joins, aggregates over arrays of one)
cost the server several times what a plain function posting one transfer
does. A batch of exactly one plain transfer (not linked, not pending, not a
post or a void) now takes scalar statements at the top of the function, with
the same rules, order of checks and result codes as the general path (replay
answers, the stateless checks, limits, overflow, the ledger-0 id reservation
of 0013); anything else falls through to the general path unchanged.

Revision ID: 0014_lone_transfer_fast_path
Revises: 0013_one_outcome_per_id
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0014_lone_transfer_fast_path"
down_revision: str | None = "0013_one_outcome_per_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        ledger_function(
            "history/0014_lone_transfer_fast_path/ledger_create_transfers.sql",
            "5f69a3b4f6581d471bd9a1c4a6c210b1d35780f09ca777557bcd4b882ae4713e",
        )
    )


def downgrade() -> None:
    op.execute(
        ledger_function(
            "history/0013_one_outcome_per_id/ledger_create_transfers.sql",
            "1fe4d3b129495b723f4620e36e987c2e24a99261e6dc9335d7e858d163fa84a7",
        )
    )
