"""Rewards on lots: cancellations of spends, reinstatements of expired
points and a program's sunset (``rewards.lot_models``).

Revision ID: 0039_lot_operations
Revises: 0038_period_close
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0039_lot_operations"
down_revision: str | None = "0038_period_close"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE spend_cancellations (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        member_id UUID NOT NULL,
        cancellation_id VARCHAR(200) NOT NULL,
        kind VARCHAR(16) NOT NULL CHECK (kind IN ('redemption', 'points_payment')),
        spend_id UUID NOT NULL,
        spent_transfer_id UUID NOT NULL,
        transfer_id UUID NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        reason VARCHAR(500) NOT NULL,{_AUDIT}
        CONSTRAINT pk_spend_cancellations PRIMARY KEY (id),
        CONSTRAINT uq_spend_cancellations_id UNIQUE (program_id, cancellation_id),
        CONSTRAINT uq_spend_cancellations_spend UNIQUE (kind, spend_id),
        CONSTRAINT fk_spend_cancellations_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_spend_cancellations_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id)
    )""")
    op.execute(f"""CREATE TABLE reinstatements (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        reference VARCHAR(200) NOT NULL,
        since TIMESTAMP WITH TIME ZONE NOT NULL,
        lot_expires_at TIMESTAMP WITH TIME ZONE,
        status VARCHAR(16) NOT NULL CHECK (status IN ('running', 'done')),
        points BIGINT NOT NULL DEFAULT 0 CHECK (points >= 0),
        expiries INTEGER NOT NULL DEFAULT 0 CHECK (expiries >= 0),
        finished_at TIMESTAMP WITH TIME ZONE,{_AUDIT}
        CONSTRAINT pk_reinstatements PRIMARY KEY (id),
        CONSTRAINT uq_reinstatements_reference UNIQUE (program_id, reference),
        CONSTRAINT fk_reinstatements_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id)
    )""")
    op.execute(f"""CREATE TABLE program_sunsets (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        sunset_at TIMESTAMP WITH TIME ZONE NOT NULL,
        notice_days INTEGER NOT NULL CHECK (notice_days > 0),
        reason VARCHAR(500) NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN ('scheduled', 'cancelled', 'completed')),
        cancelled_at TIMESTAMP WITH TIME ZONE,
        completed_at TIMESTAMP WITH TIME ZONE,
        points BIGINT NOT NULL DEFAULT 0 CHECK (points >= 0),
        wallets INTEGER NOT NULL DEFAULT 0 CHECK (wallets >= 0),{_AUDIT}
        CONSTRAINT pk_program_sunsets PRIMARY KEY (id),
        CONSTRAINT fk_program_sunsets_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id)
    )""")
    # One sunset stands per program (scheduled or done); cancelled ones stay
    # beside it as its history.
    op.execute(
        "CREATE UNIQUE INDEX uq_program_sunsets_standing ON program_sunsets (program_id)"
        " WHERE status <> 'cancelled'"
    )
    op.execute(
        "CREATE INDEX ix_program_sunsets_due ON program_sunsets (sunset_at)"
        " WHERE status = 'scheduled'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS program_sunsets")
    op.execute("DROP TABLE IF EXISTS reinstatements")
    op.execute("DROP TABLE IF EXISTS spend_cancellations")
