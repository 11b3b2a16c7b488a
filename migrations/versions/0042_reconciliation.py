"""Reconciliation runs and the differences they found.

Revision ID: 0042_reconciliation
Revises: 0041_revenue_deferral
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0042_reconciliation"
down_revision: str | None = "0041_revenue_deferral"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
