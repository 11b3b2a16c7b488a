"""The double-entry points ledger: ledgers, accounts, transfers.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-23

The posting logic lives in PL/pgSQL so that a whole batch of transfers is
validated, applied and committed in one database call: the caller never holds
row locks across a network round trip. The functions' texts are files under
``ledger/sql/`` (its README says which file is current).
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0001_ledger"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES = """
-- Transfers take timestamps in blocks of 8192, one block per batch.
CREATE SEQUENCE transfer_timestamp_seq AS bigint INCREMENT BY 8192;
CREATE SEQUENCE account_timestamp_seq AS bigint;

CREATE TABLE ledgers (
    id integer PRIMARY KEY CHECK (id > 0),
    name text NOT NULL UNIQUE,
    asset_scale smallint NOT NULL DEFAULT 0 CHECK (asset_scale BETWEEN 0 AND 18),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    ledger integer NOT NULL REFERENCES ledgers (id),
    code integer NOT NULL CHECK (code > 0),
    flags integer NOT NULL DEFAULT 0 CHECK (flags & ~3 = 0 AND flags & 3 <> 3),
    debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    metadata jsonb,
    "timestamp" bigint NOT NULL UNIQUE DEFAULT nextval('account_timestamp_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence: the batch function never lets these fail.
    CONSTRAINT debits_must_not_exceed_credits
        CHECK (flags & 1 = 0 OR debits_pending + debits_posted <= credits_posted),
    CONSTRAINT credits_must_not_exceed_debits
        CHECK (flags & 2 = 0 OR credits_pending + credits_posted <= debits_posted)
-- fillfactor leaves room for HOT updates of the balances.
) WITH (fillfactor = 80);
CREATE INDEX accounts_ledger_idx ON accounts (ledger, code);

-- Each row is one balanced movement: the debit entry and the credit entry.
-- No foreign keys: the batch function resolves every account under lock, and
-- a foreign key check per row would cost the hot path an index probe.
CREATE TABLE transfers (
    id uuid PRIMARY KEY,
    debit_account_id uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    ledger integer NOT NULL,
    code integer NOT NULL,
    flags integer NOT NULL,
    pending_id uuid,
    timeout integer NOT NULL DEFAULT 0,
    metadata jsonb,
    effective_at timestamptz,
    -- Unique by construction (see transfer_timestamp_seq); no unique index
    -- needed, and BRIN serves range scans since it grows with the table.
    "timestamp" bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX transfers_timestamp_brin ON transfers USING brin ("timestamp");
CREATE INDEX transfers_debit_idx ON transfers (debit_account_id, "timestamp");
CREATE INDEX transfers_credit_idx ON transfers (credit_account_id, "timestamp");
-- A pending transfer is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX transfers_pending_resolution_idx ON transfers (pending_id)
    WHERE pending_id IS NOT NULL;

-- Ids that failed stay failed: a retry returns the original failure.
CREATE TABLE transfer_rejections (
    id uuid PRIMARY KEY,
    result smallint NOT NULL,
    debit_account_id uuid,
    credit_account_id uuid,
    amount bigint NOT NULL,
    ledger integer,
    code integer,
    flags integer NOT NULL,
    pending_id uuid,
    timeout integer NOT NULL,
    metadata jsonb,
    effective_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Open pending transfers with a timeout; the sweeper voids them once due.
CREATE TABLE pending_expiries (
    transfer_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX pending_expiries_due_idx ON pending_expiries (expires_at);
"""

IMMUTABILITY = """
CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transfer_rejections_immutable BEFORE UPDATE OR DELETE ON transfer_rejections
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transfer_rejections_no_truncate BEFORE TRUNCATE ON transfer_rejections
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
-- Only the balance columns of an account ever change (and only by a transfer).
CREATE TRIGGER accounts_identity_immutable
    BEFORE UPDATE OF id, ledger, code, flags, metadata, "timestamp", created_at ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledgers_no_delete BEFORE UPDATE OF id OR DELETE ON ledgers
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
"""


def _statements(script: str) -> list[str]:
    """Split a script on the semicolons that end a line (asyncpg prepares each
    statement on its own)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements


def upgrade() -> None:
    for statement in _statements(TABLES):
        op.execute(statement)
    op.execute(
        ledger_function(
            "ledger_forbid_change.sql",
            "fddb21c34e48271a07d20de8de16ae3aa543168b5338e224793516a58a508689",
        )
    )
    for statement in _statements(IMMUTABILITY):
        op.execute(statement)
    op.execute(
        ledger_function(
            "history/0001_ledger/ledger_create_accounts.sql",
            "11b39f2b2a5be900edc4c76bca25834eec49b33bdeed602fe9420b2f6da78f13",
        )
    )
    op.execute(
        ledger_function(
            "history/0001_ledger/ledger_create_transfers.sql",
            "73e9a3b7244ab5f89780bb32fb6ac08780958a4f3f18fb346989e0bca42ba0df",
        )
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_create_transfers")
    op.execute("DROP FUNCTION IF EXISTS ledger_create_accounts")
    op.execute(
        "DROP TABLE IF EXISTS pending_expiries, transfer_rejections, transfers, accounts, ledgers"
    )
    op.execute("DROP FUNCTION IF EXISTS ledger_forbid_change")
    op.execute("DROP SEQUENCE IF EXISTS transfer_timestamp_seq, account_timestamp_seq")
