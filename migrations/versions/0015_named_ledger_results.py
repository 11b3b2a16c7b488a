"""The ledger functions name their results.

``ledger_create_accounts`` and ``ledger_create_transfers`` return positions
in ``ledger.schemas.CreateAccountResult`` and ``CreateTransferResult``. They
now declare each result once, as a constant named like the enum member, and
use only the names, so a test can check the numbers against the enums
(tests/ledger/test_result_numbers.py). Nothing else changes: replacing each
name by its number gives back revision 0014's texts.

A migration, not an edit of the earlier texts, so that a database already at
0014 ends with the same functions as a new one.

Revision ID: 0015_named_ledger_results
Revises: 0014_lone_transfer_fast_path
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0015_named_ledger_results"
down_revision: str | None = "0014_lone_transfer_fast_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        ledger_function(
            "ledger_create_accounts.sql",
            "1e21eacedb01823aa96f73e4f8e9574f7cfc60aa4e3580b35a156b9c4f832a85",
        )
    )
    op.execute(
        ledger_function(
            "history/0015_named_ledger_results/ledger_create_transfers.sql",
            "c7d14cd8d2c7fb628d0b52745899e4c0d3c3fdea32dd8b236a6be87a9a5e3cc4",
        )
    )


def downgrade() -> None:
    op.execute(
        ledger_function(
            "history/0001_ledger/ledger_create_accounts.sql",
            "11b39f2b2a5be900edc4c76bca25834eec49b33bdeed602fe9420b2f6da78f13",
        )
    )
    op.execute(
        ledger_function(
            "history/0014_lone_transfer_fast_path/ledger_create_transfers.sql",
            "5f69a3b4f6581d471bd9a1c4a6c210b1d35780f09ca777557bcd4b882ae4713e",
        )
    )
