"""Tiers and threshold rewards.

Revision ID: 0006_tiers
Revises: 0005_point_holds
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_tiers"
down_revision: str | None = "0005_point_holds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """ALTER TABLE programs
        ADD COLUMN tier_basis VARCHAR(8) NOT NULL DEFAULT 'spend'
            CHECK (tier_basis IN ('spend', 'points')),
        ADD COLUMN tier_window VARCHAR(20) NOT NULL DEFAULT 'calendar_year'
            CHECK (tier_window IN ('calendar_year', 'rolling_12_months', 'anniversary')),
        ADD COLUMN tier_grace_days INTEGER NOT NULL DEFAULT 30
            CHECK (tier_grace_days BETWEEN 0 AND 365)""",
    """CREATE TABLE tiers (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        code VARCHAR(50) NOT NULL,
        name VARCHAR(100) NOT NULL,
        rank INTEGER NOT NULL CHECK (rank > 0),
        -- Qualifying spend (minor units) or points over the window.
        threshold BIGINT NOT NULL CHECK (threshold >= 0),
        perks JSONB NOT NULL DEFAULT '[]',
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT uq_tiers_code UNIQUE (program_id, code),
        CONSTRAINT uq_tiers_rank UNIQUE (program_id, rank)
    )""",
    """ALTER TABLE members
        ADD COLUMN tier_code VARCHAR(50),
        ADD COLUMN tier_since TIMESTAMPTZ,
        ADD COLUMN tier_reviewed_at TIMESTAMPTZ""",
    """CREATE TABLE threshold_rewards (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        code VARCHAR(50) NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        bonus_points BIGINT NOT NULL CHECK (bonus_points > 0),
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT uq_threshold_rewards_code UNIQUE (program_id, code)
    )""",
    """CREATE TABLE threshold_grants (
        id UUID PRIMARY KEY,
        threshold_id UUID NOT NULL REFERENCES threshold_rewards (id),
        member_id UUID NOT NULL REFERENCES members (id),
        window_start TIMESTAMPTZ NOT NULL,
        transfer_id UUID NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        -- Granted once per member and window, however many purchases race.
        CONSTRAINT uq_threshold_grants UNIQUE (threshold_id, member_id, window_start)
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS threshold_grants, threshold_rewards, tiers")
    op.execute(
        "ALTER TABLE members DROP COLUMN IF EXISTS tier_code,"
        " DROP COLUMN IF EXISTS tier_since, DROP COLUMN IF EXISTS tier_reviewed_at"
    )
    op.execute(
        "ALTER TABLE programs DROP COLUMN IF EXISTS tier_basis,"
        " DROP COLUMN IF EXISTS tier_window, DROP COLUMN IF EXISTS tier_grace_days"
    )
