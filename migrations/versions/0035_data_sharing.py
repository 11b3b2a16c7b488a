"""Data-sharing agreements, member consent by field, the disclosure log
(``partners.data_sharing.models``).

An agreement is between two partners of one program; it is in force only
once both opted in (``active``), and ``revoked``/``expired`` are final.
Consent is one row per member and field. The log is one row per member (or
record) per disclosure, written with the disclosure; it is read per
agreement (both partners) and per member (the member API). It has no
foreign keys: it is append-only and outlives what it names, and a key check
per line (each locking the agreement's or a member's row) would cost the
logged read a third of its speed; its values come from the rows the
disclosing statement read in the same transaction.

Revision ID: 0035_data_sharing
Revises: 0034_market_development_funds
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0035_data_sharing"
down_revision: str | None = "0034_market_development_funds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE data_sharing_agreements (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        proposer_partner_id UUID NOT NULL,
        counterparty_partner_id UUID NOT NULL,
        purpose TEXT NOT NULL CHECK (length(purpose) BETWEEN 1 AND 2000),
        direction VARCHAR(32) NOT NULL CHECK (direction IN
            ('proposer_to_counterparty', 'counterparty_to_proposer', 'both')),
        fields JSONB NOT NULL CHECK (jsonb_typeof(fields) = 'array'),
        min_group_size INTEGER NOT NULL DEFAULT 50 CHECK (min_group_size >= 1),
        status VARCHAR(16) NOT NULL
            CHECK (status IN ('proposed', 'active', 'revoked', 'expired')),
        proposer_opted_in_at TIMESTAMP WITH TIME ZONE,
        counterparty_opted_in_at TIMESTAMP WITH TIME ZONE,
        expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
        revoked_at TIMESTAMP WITH TIME ZONE,
        revoked_by_partner_id UUID,
        key_epoch INTEGER NOT NULL DEFAULT 1 CHECK (key_epoch >= 1),
        {AUDIT},
        CONSTRAINT pk_data_sharing_agreements PRIMARY KEY (id),
        CONSTRAINT fk_data_sharing_agreements_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_data_sharing_agreements_proposer_partner_id_partners
            FOREIGN KEY (proposer_partner_id) REFERENCES partners (id),
        CONSTRAINT fk_data_sharing_agreements_counterparty_partner_id_partners
            FOREIGN KEY (counterparty_partner_id) REFERENCES partners (id),
        CONSTRAINT fk_data_sharing_agreements_revoked_by_partner_id_partners
            FOREIGN KEY (revoked_by_partner_id) REFERENCES partners (id),
        CONSTRAINT ck_data_sharing_agreements_two_parties
            CHECK (proposer_partner_id <> counterparty_partner_id),
        CONSTRAINT ck_data_sharing_agreements_active
            CHECK (status <> 'active'
                   OR (proposer_opted_in_at IS NOT NULL AND counterparty_opted_in_at IS NOT NULL)),
        CONSTRAINT ck_data_sharing_agreements_revoked
            CHECK ((status = 'revoked')
                   = (revoked_at IS NOT NULL AND revoked_by_partner_id IS NOT NULL))
    )""")
    op.execute(
        "CREATE INDEX ix_data_sharing_agreements_proposer"
        " ON data_sharing_agreements (proposer_partner_id, id)"
    )
    op.execute(
        "CREATE INDEX ix_data_sharing_agreements_counterparty"
        " ON data_sharing_agreements (counterparty_partner_id, id)"
    )
    op.execute(
        "CREATE INDEX ix_data_sharing_agreements_expiry ON data_sharing_agreements (expires_at)"
        " WHERE status IN ('proposed', 'active')"
    )
    op.execute(f"""CREATE TABLE data_sharing_consents (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        member_id UUID NOT NULL,
        field VARCHAR(32) NOT NULL,
        granted_at TIMESTAMP WITH TIME ZONE NOT NULL,
        withdrawn_at TIMESTAMP WITH TIME ZONE,
        {AUDIT},
        CONSTRAINT pk_data_sharing_consents PRIMARY KEY (id),
        CONSTRAINT uq_data_sharing_consents_member_id UNIQUE (member_id, field),
        CONSTRAINT fk_data_sharing_consents_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_data_sharing_consents_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id)
    )""")
    op.execute(f"""CREATE TABLE data_disclosures (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        from_partner_id UUID NOT NULL,
        to_partner_id UUID NOT NULL,
        member_id UUID,
        record_ref VARCHAR(200),
        fields JSONB NOT NULL CHECK (jsonb_typeof(fields) = 'array'),
        channel VARCHAR(16) NOT NULL CHECK (channel IN ('api', 'webhook', 'export', 'overlap')),
        reference VARCHAR(200),
        disclosed_at TIMESTAMP WITH TIME ZONE NOT NULL,
        {AUDIT},
        CONSTRAINT pk_data_disclosures PRIMARY KEY (id),
        CONSTRAINT ck_data_disclosures_subject
            CHECK (member_id IS NOT NULL OR record_ref IS NOT NULL),
        CONSTRAINT ck_data_disclosures_two_parties CHECK (from_partner_id <> to_partner_id)
    )""")
    op.execute(
        "CREATE INDEX ix_data_disclosures_agreement_id ON data_disclosures (agreement_id, id)"
    )
    op.execute("CREATE INDEX ix_data_disclosures_member_id ON data_disclosures (member_id, id)")
    op.execute("""CREATE TABLE data_sharing_deliveries (
        delivery_id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        cancelled_at TIMESTAMP WITH TIME ZONE,
        cancelled_reason VARCHAR(32) CHECK (cancelled_reason IN ('revoked', 'expired')),
        CONSTRAINT pk_data_sharing_deliveries PRIMARY KEY (delivery_id),
        CONSTRAINT fk_data_sharing_deliveries_delivery_id_webhook_deliveries
            FOREIGN KEY (delivery_id) REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        CONSTRAINT fk_data_sharing_deliveries_agreement_id_data_sharing_agreements
            FOREIGN KEY (agreement_id) REFERENCES data_sharing_agreements (id)
    )""")
    op.execute(
        "CREATE INDEX ix_data_sharing_deliveries_agreement_id"
        " ON data_sharing_deliveries (agreement_id)"
    )


def downgrade() -> None:
    for table in (
        "data_sharing_deliveries",
        "data_disclosures",
        "data_sharing_consents",
        "data_sharing_agreements",
    ):
        op.execute(f"DROP TABLE {table}")
