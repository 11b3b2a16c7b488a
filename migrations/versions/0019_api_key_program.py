"""API keys bound to one program: a key with a program acts in that program
only (its tenant); a key without one acts in every program, as before.

Revision ID: 0019_api_key_program
Revises: 0018_program_calendar
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_api_key_program"
down_revision: str | None = "0018_program_calendar"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE api_keys ADD COLUMN program_id UUID NULL REFERENCES programs (id)")
    # Listing a program's keys reads by it.
    op.execute("CREATE INDEX ix_api_keys_program_id ON api_keys (program_id)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_api_keys_program_id")
    op.execute("ALTER TABLE api_keys DROP COLUMN program_id")
