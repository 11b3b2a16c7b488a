"""More lot operations: the end of earning before a program's sunset.

``program_sunsets.earning_ends_at``: from this instant the program credits
no new earning (purchases, bonuses, bought points, partners' issuance...),
while its members still redeem until ``sunset_at`` (``rewards.sunset``).
Sunsets scheduled before this revision keep earning open until their
``sunset_at``, as it was when they were announced; a new one ends earning
at its announcement by default.

Revision ID: 0048_lot_operations_more
Revises: 0047_finance_history
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0048_lot_operations_more"
down_revision: str | None = "0047_finance_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE program_sunsets ADD COLUMN earning_ends_at TIMESTAMP WITH TIME ZONE")
    # Sunsets announced before this revision let earning run to the sunset,
    # as they did then: only new ones end it at once by default.
    op.execute("UPDATE program_sunsets SET earning_ends_at = sunset_at")
    op.execute("ALTER TABLE program_sunsets ALTER COLUMN earning_ends_at SET NOT NULL")
    op.execute(
        "ALTER TABLE program_sunsets ADD CONSTRAINT ck_program_sunsets_earning_ends"
        " CHECK (earning_ends_at <= sunset_at)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE program_sunsets DROP COLUMN IF EXISTS earning_ends_at")
