"""Exchange of points between programs: agreements, their rate versions, and
members' conversions (``partners.exchange_models``).

Revision ID: 0025_program_exchanges
Revises: 0024_partner_webhooks
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025_program_exchanges"
down_revision: str | None = "0024_partner_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    # One agreement per pair of programs, whichever proposed it: the pair is
    # stored in id order, so (a, b) and (b, a) meet the same unique key.
    op.execute(f"""CREATE TABLE exchange_agreements (
        id UUID NOT NULL,
        program_a_id UUID NOT NULL,
        program_b_id UUID NOT NULL,
        proposed_by_program_id UUID NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN ('proposed', 'active')),
        accepted_at TIMESTAMP WITH TIME ZONE,
        {AUDIT},
        CONSTRAINT pk_exchange_agreements PRIMARY KEY (id),
        CONSTRAINT uq_exchange_agreements_pair UNIQUE (program_a_id, program_b_id),
        CONSTRAINT fk_exchange_agreements_program_a_id_programs
            FOREIGN KEY (program_a_id) REFERENCES programs (id),
        CONSTRAINT fk_exchange_agreements_program_b_id_programs
            FOREIGN KEY (program_b_id) REFERENCES programs (id),
        CHECK (program_a_id < program_b_id),
        CHECK (proposed_by_program_id IN (program_a_id, program_b_id)),
        CHECK ((status = 'active') = (accepted_at IS NOT NULL))
    )""")
    op.execute(
        "CREATE INDEX ix_exchange_agreements_program_b_id ON exchange_agreements (program_b_id)"
    )
    op.execute(f"""CREATE TABLE exchange_rate_versions (
        id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        status VARCHAR(16) NOT NULL CHECK (status IN ('proposed', 'accepted')),
        proposed_by_program_id UUID NOT NULL,
        proposed_by VARCHAR(200) NOT NULL,
        effective_from TIMESTAMP WITH TIME ZONE,
        in_force_from TIMESTAMP WITH TIME ZONE,
        accepted_by VARCHAR(200),
        terms JSONB NOT NULL CHECK (jsonb_typeof(terms) = 'object'),
        {AUDIT},
        CONSTRAINT pk_exchange_rate_versions PRIMARY KEY (id),
        CONSTRAINT uq_exchange_rate_versions_agreement_id UNIQUE (agreement_id, version),
        CONSTRAINT fk_exchange_rate_versions_agreement_id_exchange_agreements
            FOREIGN KEY (agreement_id) REFERENCES exchange_agreements (id),
        CONSTRAINT fk_exchange_rate_versions_proposed_by_program_id_programs
            FOREIGN KEY (proposed_by_program_id) REFERENCES programs (id),
        CHECK ((status = 'accepted') = (in_force_from IS NOT NULL)),
        CHECK ((status = 'accepted') = (accepted_by IS NOT NULL))
    )""")
    op.execute(
        "CREATE INDEX ix_exchange_rate_versions_in_force"
        " ON exchange_rate_versions (agreement_id, in_force_from DESC)"
        " WHERE status = 'accepted'"
    )
    op.execute(f"""CREATE TABLE exchanges (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        member_id UUID NOT NULL,
        to_program_id UUID NOT NULL,
        to_member_id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        rate_version INTEGER NOT NULL CHECK (rate_version > 0),
        idempotency_key VARCHAR(200) NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        received_points BIGINT NOT NULL CHECK (received_points > 0),
        give BIGINT NOT NULL CHECK (give > 0),
        receive BIGINT NOT NULL CHECK (receive > 0),
        out_transfer_id UUID NOT NULL,
        in_transfer_id UUID NOT NULL,
        occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
        {AUDIT},
        CONSTRAINT pk_exchanges PRIMARY KEY (id),
        CONSTRAINT uq_exchanges_key UNIQUE (member_id, idempotency_key),
        CONSTRAINT fk_exchanges_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_exchanges_member_id_members FOREIGN KEY (member_id) REFERENCES members (id),
        CONSTRAINT fk_exchanges_to_program_id_programs
            FOREIGN KEY (to_program_id) REFERENCES programs (id),
        CONSTRAINT fk_exchanges_to_member_id_members
            FOREIGN KEY (to_member_id) REFERENCES members (id),
        CONSTRAINT fk_exchanges_agreement_id_exchange_agreements
            FOREIGN KEY (agreement_id) REFERENCES exchange_agreements (id),
        CHECK (to_program_id <> program_id)
    )""")
    # The daily cap sums one member's conversions into one program over a
    # day; the member's list pages by id.
    op.execute(
        "CREATE INDEX ix_exchanges_member_day ON exchanges (member_id, to_program_id, occurred_at)"
    )
    op.execute("CREATE INDEX ix_exchanges_member_id ON exchanges (member_id, id)")


def downgrade() -> None:
    op.execute("DROP TABLE exchanges")
    op.execute("DROP TABLE exchange_rate_versions")
    op.execute("DROP TABLE exchange_agreements")
