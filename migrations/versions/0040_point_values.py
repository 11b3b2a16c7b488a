"""The redemption value of a point in force from each instant
(``rewards.point_values``): one row from each program's start, one per
change. Existing programs get their current value from their start (no
change was possible before: the value was fixed at opening).

Revision ID: 0040_point_values
Revises: 0039_lot_operations
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0040_point_values"
down_revision: str | None = "0039_lot_operations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE point_values (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        effective_from TIMESTAMP WITH TIME ZONE NOT NULL,
        point_value_minor NUMERIC(18, 6) NOT NULL CHECK (point_value_minor > 0),
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_point_values PRIMARY KEY (id),
        CONSTRAINT uq_point_values_in_force UNIQUE (program_id, effective_from),
        CONSTRAINT fk_point_values_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id)
    )""")
    op.execute("""INSERT INTO point_values (id, program_id, effective_from, point_value_minor)
        SELECT gen_random_uuid(), id, started_at, point_value_minor FROM programs""")


def downgrade() -> None:
    op.execute("DROP TABLE point_values")
