"""A partner leaving the coalition: its last issuing and accepting days,
its valuation date, and its final statement with the figures it valued
(``partners.departure_models``).

Revision ID: 0028_partner_departures
Revises: 0027_partner_collection
Create Date: 2026-12-04

The issuance path finds a holder's departure by its unique key on
``partner_id`` (in the statement that resolves the contract in force).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028_partner_departures"
down_revision: str | None = "0027_partner_collection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE partner_departures (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        last_issuing_day DATE NOT NULL,
        last_accepting_day DATE NOT NULL,
        valuation_date DATE NOT NULL,
        issuing_ends_at TIMESTAMP WITH TIME ZONE NOT NULL,
        accepting_ends_at TIMESTAMP WITH TIME ZONE NOT NULL,
        valuation_at TIMESTAMP WITH TIME ZONE NOT NULL,
        reason VARCHAR(500),
        recorded_by VARCHAR(200) NOT NULL,
        recorded_at TIMESTAMP WITH TIME ZONE NOT NULL,
        final_statement_id UUID,
        points_issued BIGINT,
        points_captured BIGINT,
        points_refunded BIGINT,
        program_points_issued BIGINT,
        program_points_outstanding BIGINT,
        {AUDIT},
        CONSTRAINT pk_partner_departures PRIMARY KEY (id),
        CONSTRAINT uq_partner_departures_partner_id UNIQUE (partner_id),
        CONSTRAINT fk_partner_departures_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_partner_departures_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CONSTRAINT fk_partner_departures_final_statement_id_partner_statements
            FOREIGN KEY (final_statement_id) REFERENCES partner_statements (id),
        CHECK (valuation_date >= last_issuing_day AND valuation_date >= last_accepting_day),
        CHECK (valuation_at >= issuing_ends_at AND valuation_at >= accepting_ends_at),
        -- The figures are written together, with the final statement.
        CHECK ((final_statement_id IS NULL) = (program_points_outstanding IS NULL))
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE partner_departures")
