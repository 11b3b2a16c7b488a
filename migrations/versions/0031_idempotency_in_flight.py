"""The partner API's Idempotency-Key claimed by a row, not an advisory lock
(``partners.idempotency_keys``): a request writes its key's row, in flight
(no status yet), with a claim id and a lease, in one statement of its own,
and fills in the answer once it has one. No connection is held while the
request runs.

Existing rows are stored answers: they keep their values.

Revision ID: 0031_idempotency_in_flight
Revises: 0030_partner_payment_methods
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0031_idempotency_in_flight"
down_revision: str | None = "0030_partner_payment_methods"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""ALTER TABLE idempotency_keys
        ALTER COLUMN status_code DROP NOT NULL,
        ALTER COLUMN response_headers DROP NOT NULL,
        ALTER COLUMN response_body DROP NOT NULL,
        ADD COLUMN claim_id UUID,
        ADD COLUMN claimed_until TIMESTAMP WITH TIME ZONE,
        ADD CONSTRAINT ck_idempotency_keys_answer_or_claim CHECK (
            (status_code IS NOT NULL AND response_headers IS NOT NULL
             AND response_body IS NOT NULL)
            OR (status_code IS NULL AND claim_id IS NOT NULL AND claimed_until IS NOT NULL)
        )""")


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE status_code IS NULL")
    op.execute("""ALTER TABLE idempotency_keys
        DROP CONSTRAINT ck_idempotency_keys_answer_or_claim,
        DROP COLUMN claimed_until,
        DROP COLUMN claim_id,
        ALTER COLUMN response_body SET NOT NULL,
        ALTER COLUMN response_headers SET NOT NULL,
        ALTER COLUMN status_code SET NOT NULL""")
