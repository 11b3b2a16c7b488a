"""Period close: the ledger refuses a transfer whose business time falls in a closed period.

Revision ID: 0038_period_close
Revises: 0037_ledger_lots
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0038_period_close"
down_revision: str | None = "0037_ledger_lots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
