"""Points expiry policy of a program.

Revision ID: 0008_expiry
Revises: 0007_behaviour_events
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_expiry"
down_revision: str | None = "0007_behaviour_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""ALTER TABLE programs
        ADD COLUMN expiry_policy VARCHAR(12) NOT NULL DEFAULT 'none'
            CHECK (expiry_policy IN ('none', 'fixed', 'inactivity')),
        ADD COLUMN expiry_months INTEGER NOT NULL DEFAULT 24
            CHECK (expiry_months BETWEEN 1 AND 120)""")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE programs DROP COLUMN IF EXISTS expiry_policy,"
        " DROP COLUMN IF EXISTS expiry_months"
    )
