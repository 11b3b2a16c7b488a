"""Overlap matching of two partners' lists: the keys of each agreement's
epochs, the uploads as keyed hashes, the runs, the count queries weighed
by the difference-attack budget, the cached PSI setup messages
(``partners.data_sharing.overlap_models``).

Revision ID: 0036_overlap_matching
Revises: 0035_data_sharing
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036_overlap_matching"
down_revision: str | None = "0035_data_sharing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE overlap_keys (
        id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        key_epoch INTEGER NOT NULL CHECK (key_epoch > 0),
        hmac_key BYTEA NOT NULL CHECK (octet_length(hmac_key) = 32),
        psi_key BYTEA NOT NULL,{_AUDIT}
        CONSTRAINT pk_overlap_keys PRIMARY KEY (id),
        CONSTRAINT uq_overlap_keys_agreement_id UNIQUE (agreement_id, key_epoch),
        CONSTRAINT fk_overlap_keys_agreement_id_data_sharing_agreements
            FOREIGN KEY (agreement_id) REFERENCES data_sharing_agreements (id)
    )""")
    op.execute(f"""CREATE TABLE overlap_uploads (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        key_epoch INTEGER NOT NULL,
        identifier_kind VARCHAR(16) NOT NULL
            CHECK (identifier_kind IN ('email', 'phone', 'domain')),
        hashed_by VARCHAR(16) NOT NULL CHECK (hashed_by IN ('platform', 'partner')),
        records INTEGER NOT NULL CHECK (records >= 0),
        unmatchable INTEGER NOT NULL CHECK (unmatchable >= 0 AND unmatchable <= records),
        segments JSONB NOT NULL,
        fingerprint BYTEA NOT NULL CHECK (octet_length(fingerprint) = 32),{_AUDIT}
        CONSTRAINT pk_overlap_uploads PRIMARY KEY (id),
        CONSTRAINT fk_overlap_uploads_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_overlap_uploads_agreement_id_data_sharing_agreements
            FOREIGN KEY (agreement_id) REFERENCES data_sharing_agreements (id),
        CONSTRAINT fk_overlap_uploads_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE INDEX ix_overlap_uploads_agreement_id"
        " ON overlap_uploads (agreement_id, partner_id, id)"
    )
    op.execute("""CREATE TABLE overlap_upload_chunks (
        upload_id UUID NOT NULL,
        chunk_no INTEGER NOT NULL CHECK (chunk_no >= 0),
        digests BYTEA NOT NULL CHECK (octet_length(digests) % 32 = 0),
        segment_codes BYTEA NOT NULL,
        CONSTRAINT pk_overlap_upload_chunks PRIMARY KEY (upload_id, chunk_no),
        CONSTRAINT fk_overlap_upload_chunks_upload_id_overlap_uploads
            FOREIGN KEY (upload_id) REFERENCES overlap_uploads (id),
        CONSTRAINT ck_overlap_upload_chunks_aligned
            CHECK (octet_length(segment_codes) * 16 = octet_length(digests))
    )""")
    op.execute("""CREATE TABLE overlap_record_fields (
        upload_id UUID NOT NULL,
        position INTEGER NOT NULL CHECK (position >= 0),
        fields JSONB NOT NULL,
        CONSTRAINT pk_overlap_record_fields PRIMARY KEY (upload_id, position),
        CONSTRAINT fk_overlap_record_fields_upload_id_overlap_uploads
            FOREIGN KEY (upload_id) REFERENCES overlap_uploads (id)
    )""")
    op.execute(f"""CREATE TABLE overlap_runs (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        own_upload_id UUID NOT NULL,
        other_upload_id UUID NOT NULL,
        key_epoch INTEGER NOT NULL,
        mode VARCHAR(16) NOT NULL CHECK (mode IN ('keyed_hash', 'psi')),
        result_kind VARCHAR(16) NOT NULL CHECK (result_kind IN ('overlaps', 'counts')),
        segment_filter JSONB,
        min_group_size INTEGER NOT NULL,
        matched INTEGER NOT NULL CHECK (matched >= 0),
        shown JSONB NOT NULL,
        own_positions JSONB,
        other_positions JSONB,{_AUDIT}
        CONSTRAINT pk_overlap_runs PRIMARY KEY (id),
        CONSTRAINT fk_overlap_runs_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_overlap_runs_agreement_id_data_sharing_agreements
            FOREIGN KEY (agreement_id) REFERENCES data_sharing_agreements (id),
        CONSTRAINT fk_overlap_runs_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CONSTRAINT fk_overlap_runs_own_upload_id_overlap_uploads
            FOREIGN KEY (own_upload_id) REFERENCES overlap_uploads (id),
        CONSTRAINT fk_overlap_runs_other_upload_id_overlap_uploads
            FOREIGN KEY (other_upload_id) REFERENCES overlap_uploads (id)
    )""")
    op.execute(
        "CREATE INDEX ix_overlap_runs_agreement_id ON overlap_runs (agreement_id, partner_id, id)"
    )
    op.execute(f"""CREATE TABLE overlap_count_queries (
        id UUID NOT NULL,
        agreement_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        run_id UUID NOT NULL,
        key_epoch INTEGER NOT NULL,
        own_upload_id UUID NOT NULL,
        other_upload_id UUID NOT NULL,
        segment_filter JSONB,
        own_population INTEGER NOT NULL,
        other_population INTEGER NOT NULL,{_AUDIT}
        CONSTRAINT pk_overlap_count_queries PRIMARY KEY (id),
        CONSTRAINT fk_overlap_count_queries_agreement_id_data_sharing_agreements
            FOREIGN KEY (agreement_id) REFERENCES data_sharing_agreements (id),
        CONSTRAINT fk_overlap_count_queries_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CONSTRAINT fk_overlap_count_queries_run_id_overlap_runs
            FOREIGN KEY (run_id) REFERENCES overlap_runs (id),
        CONSTRAINT fk_overlap_count_queries_own_upload_id_overlap_uploads
            FOREIGN KEY (own_upload_id) REFERENCES overlap_uploads (id),
        CONSTRAINT fk_overlap_count_queries_other_upload_id_overlap_uploads
            FOREIGN KEY (other_upload_id) REFERENCES overlap_uploads (id)
    )""")
    op.execute(
        "CREATE INDEX ix_overlap_count_queries_agreement_id"
        " ON overlap_count_queries (agreement_id, key_epoch)"
    )
    op.execute("""CREATE TABLE overlap_psi_setups (
        upload_id UUID NOT NULL,
        key_epoch INTEGER NOT NULL,
        agreement_id UUID NOT NULL,
        setup BYTEA NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_overlap_psi_setups PRIMARY KEY (upload_id, key_epoch),
        CONSTRAINT fk_overlap_psi_setups_upload_id_overlap_uploads
            FOREIGN KEY (upload_id) REFERENCES overlap_uploads (id),
        CONSTRAINT fk_overlap_psi_setups_agreement_id_data_sharing_agreements
            FOREIGN KEY (agreement_id) REFERENCES data_sharing_agreements (id)
    )""")


def downgrade() -> None:
    for table in (
        "overlap_psi_setups",
        "overlap_count_queries",
        "overlap_runs",
        "overlap_record_fields",
        "overlap_upload_chunks",
        "overlap_uploads",
        "overlap_keys",
    ):
        op.execute(f"DROP TABLE {table}")
