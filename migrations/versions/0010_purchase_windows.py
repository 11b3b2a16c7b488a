"""Purchases by member and time: the qualifying window of a member is one
index range, however many purchases the program holds.

Revision ID: 0010_purchase_windows
Revises: 0009_stripe_inbox
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_purchase_windows"
down_revision: str | None = "0009_stripe_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_purchases_member_time ON purchases (member_id, occurred_at)")
    op.execute("DROP INDEX ix_purchases_member_id")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_purchases_member_id ON purchases (member_id)")
    op.execute("DROP INDEX ix_purchases_member_time")
