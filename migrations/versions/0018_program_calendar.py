"""Programs count their calendar in a time zone, and have a start

``time_zone``: the IANA zone of every calendar rule of the program (tier and
threshold windows, the daily gift limit, month-based expiry); existing
programs keep counting in UTC. ``started_at``: when the program began, its
creation for the programs that exist; a program whose history is imported
starts earlier, and its first rule version may take effect from then.

Revision ID: 0018_program_calendar
Revises: 0017_ledger_account_balances
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_program_calendar"
down_revision: str | None = "0017_ledger_account_balances"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The zone's name is checked by the use cases against the IANA database
    # the server ships (core/calendar.py); SQL cannot, so only its length here.
    op.execute(
        """ALTER TABLE programs
        ADD COLUMN time_zone VARCHAR(64) NOT NULL DEFAULT 'UTC',
        ADD COLUMN started_at TIMESTAMPTZ"""
    )
    op.execute("UPDATE programs SET started_at = created_at")
    op.execute(
        "ALTER TABLE programs ALTER COLUMN started_at SET DEFAULT now(),"
        " ALTER COLUMN started_at SET NOT NULL"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE programs DROP COLUMN started_at, DROP COLUMN time_zone")
