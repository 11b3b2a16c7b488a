"""Member segments, saved, counted and exported (``partners.segments.models``).

Revision ID: 0043_segments
Revises: 0042_reconciliation
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0043_segments"
down_revision: str | None = "0042_reconciliation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """CREATE TABLE segments (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        name VARCHAR(100) NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
        description VARCHAR(500),
        definition JSONB NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
        offered_to_partners BOOLEAN NOT NULL,
        created_by VARCHAR(300) NOT NULL,
        updated_by VARCHAR(300) NOT NULL,
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_segments PRIMARY KEY (id),
        CONSTRAINT uq_segments_program_id UNIQUE (program_id, name),
        CONSTRAINT fk_segments_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id)
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS segments")
