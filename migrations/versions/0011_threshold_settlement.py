"""Threshold rewards are held pending until the crossing purchase's return
window ends, then posted if the window's net spend still reaches the
threshold, or voided (a return took the member back under it).

Revision ID: 0011_threshold_settlement
Revises: 0010_purchase_windows
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_threshold_settlement"
down_revision: str | None = "0010_purchase_windows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""ALTER TABLE threshold_grants
        ADD COLUMN window_end TIMESTAMPTZ,
        ADD COLUMN matures_at TIMESTAMPTZ,
        ADD COLUMN settled_at TIMESTAMPTZ,
        ADD COLUMN voided BOOLEAN NOT NULL DEFAULT false""")
    # Grants made before this were posted at once: they are settled.
    op.execute("UPDATE threshold_grants SET matures_at = created_at, settled_at = created_at")
    op.execute("ALTER TABLE threshold_grants ALTER COLUMN matures_at SET NOT NULL")
    # Once per member and window among the grants that stand: a voided one
    # leaves room for a later crossing.
    op.execute("ALTER TABLE threshold_grants DROP CONSTRAINT uq_threshold_grants")
    op.execute("""CREATE UNIQUE INDEX uq_threshold_grants_standing
        ON threshold_grants (threshold_id, member_id, window_start) WHERE NOT voided""")
    op.execute("""CREATE INDEX ix_threshold_grants_due ON threshold_grants (matures_at)
        WHERE settled_at IS NULL""")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_threshold_grants_due")
    op.execute("DROP INDEX IF EXISTS uq_threshold_grants_standing")
    op.execute("DELETE FROM threshold_grants WHERE voided")
    op.execute("""ALTER TABLE threshold_grants ADD CONSTRAINT uq_threshold_grants
        UNIQUE (threshold_id, member_id, window_start)""")
    op.execute("""ALTER TABLE threshold_grants DROP COLUMN window_end,
        DROP COLUMN matures_at, DROP COLUMN settled_at, DROP COLUMN voided""")
