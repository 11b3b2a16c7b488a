"""Lots (the credits each wallet debit consumed) and the daily aggregates
that the posting path keeps (ledger).

- ``ledgers.time_zone``: the zone of the ledger's accounting days, set from
  each program's ``time_zone`` for the programs' ledgers (a later change of
  the program's zone does not move the ledger's days).
- ``ledger_lot_codes`` (code 10, the member wallet), ``lots``,
  ``lot_movements``, ``ledger_daily_totals``, ``lot_daily_movements``,
  written by the statement-level trigger ``transfers_record_movements``
  (``ledger/sql/history/0037_ledger_lots/ledger_record_movements.sql``;
  0045 drops it and records them in ``ledger_create_transfers``) in the
  posting's transaction; append-only, and ``lots`` change only in ``remaining`` and
  ``expires_at``, by the posting path (``ledger_guard_recorded``).
- The past: ``ledger_daily_totals`` summed from the transfers, and every
  wallet's lots derived from its history (``ledger_derive_lots``, which
  ``coalition ledger derive-lots`` also runs).

Revision ID: 0037_ledger_lots
Revises: 0036_overlap_matching
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0037_ledger_lots"
down_revision: str | None = "0036_overlap_matching"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The files this revision applies, with their pins, in order.
FUNCTIONS = (
    (
        "history/0037_ledger_lots/ledger_guard_recorded.sql",
        "78dfa64cfcd9455912528131999b5b83e5c031e4707a013ed405e5a6ec983774",
    ),
    (
        "history/0037_ledger_lots/ledger_record_lots.sql",
        "bc3882af991b5a5a46e368c33ab833dd9f89ba215ac5a0d04274b73a48b70930",
    ),
    (
        "history/0037_ledger_lots/ledger_record_movements.sql",
        "0912e6f498fa21a6b751ec5cb02f198188d4324fbd15048971d625d8858b2ef3",
    ),
    (
        "history/0037_ledger_lots/ledger_derive_lots.sql",
        "ea062f35891c2fedc185bb7b50aa3d6a980fa3b16f07247dfdbda8e047c0d451",
    ),
)

TABLES = (
    # The accounting day of a ledger: validated by PostgreSQL's own zones,
    # since an unknown zone would fail every posting of the ledger.
    "ALTER TABLE ledgers ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC'"
    " CONSTRAINT ledgers_time_zone_known CHECK (now() AT TIME ZONE time_zone IS NOT NULL)",
    "UPDATE ledgers g SET time_zone = p.time_zone FROM programs p WHERE p.ledger_id = g.id",
    "CREATE TABLE ledger_lot_codes (code integer PRIMARY KEY CHECK (code > 0))",
    "INSERT INTO ledger_lot_codes (code) VALUES (10)",
    """CREATE TABLE lots (
        id uuid PRIMARY KEY,
        ledger integer NOT NULL,
        account_id uuid NOT NULL,
        origin_code integer NOT NULL,
        source_account_id uuid NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        remaining bigint NOT NULL,
        earned_at timestamptz NOT NULL,
        cohort date NOT NULL,
        expires_at timestamptz,
        "timestamp" bigint NOT NULL,
        -- The open-lots index's predicate: a column of its own, so that a
        -- consumption that leaves points in the lot changes no indexed
        -- value and is a HOT update (on the page's free space: fillfactor).
        is_open boolean GENERATED ALWAYS AS (remaining > 0) STORED,
        CONSTRAINT lots_remaining_within_amount CHECK (remaining BETWEEN 0 AND amount)
    ) WITH (fillfactor = 70)""",
    # The consumption order; id last so that equal lots still have one order.
    'CREATE INDEX lots_open_idx ON lots (account_id, earned_at, "timestamp", id) WHERE is_open',
    """CREATE TABLE lot_movements (
        transfer_id uuid NOT NULL,
        lot_id uuid NOT NULL,
        points bigint NOT NULL,
        business_at timestamptz NOT NULL,
        day date NOT NULL,
        "timestamp" bigint NOT NULL,
        PRIMARY KEY (transfer_id, lot_id)
    )""",
    # No second index by lot: every read of movements finds them by the moving
    # transfer (the key) or scans a ledger's; an index by lot would cost each
    # movement of the hot path a second index entry.
    """CREATE TABLE ledger_daily_totals (
        ledger integer NOT NULL,
        day date NOT NULL,
        code integer NOT NULL,
        debit_account_code integer NOT NULL,
        credit_account_code integer NOT NULL,
        amount numeric NOT NULL,
        transfers bigint NOT NULL,
        PRIMARY KEY (ledger, day, code, debit_account_code, credit_account_code)
    )""",
    """CREATE TABLE lot_daily_movements (
        ledger integer NOT NULL,
        day date NOT NULL,
        code integer NOT NULL,
        origin_code integer NOT NULL,
        source_account_id uuid NOT NULL,
        cohort date NOT NULL,
        points numeric NOT NULL,
        PRIMARY KEY (ledger, day, code, origin_code, source_account_id, cohort)
    )""",
    # The sums are numeric: amounts are bigints per account, so a day's sum
    # over many accounts can pass 2^63 (a posting must never fail on it).
    # The earlier restorations of a debit (their cap), found by the debit's id.
    "CREATE INDEX transfers_restores_idx ON transfers (lower(metadata ->> 'restores'))"
    " WHERE metadata ? 'restores'",
)

_IMMUTABLE = "FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()"
_NO_TRUNCATE = "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
_GUARDED = "FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_recorded()"

TRIGGERS = (
    f"CREATE TRIGGER ledger_lot_codes_immutable BEFORE UPDATE OR DELETE ON ledger_lot_codes"
    f" {_IMMUTABLE}",
    f"CREATE TRIGGER ledger_lot_codes_no_truncate BEFORE TRUNCATE ON ledger_lot_codes"
    f" {_NO_TRUNCATE}",
    # A lot changes only in remaining and expires_at.
    "CREATE TRIGGER lots_identity_immutable BEFORE UPDATE OF id, ledger, account_id,"
    ' origin_code, source_account_id, amount, earned_at, cohort, "timestamp" ON lots'
    f" {_IMMUTABLE}",
    f"CREATE TRIGGER lots_no_delete BEFORE DELETE ON lots {_IMMUTABLE}",
    f"CREATE TRIGGER lots_no_truncate BEFORE TRUNCATE ON lots {_NO_TRUNCATE}",
    f"CREATE TRIGGER lots_recorded BEFORE INSERT OR UPDATE ON lots {_GUARDED}",
    f"CREATE TRIGGER lot_movements_immutable BEFORE UPDATE OR DELETE ON lot_movements {_IMMUTABLE}",
    f"CREATE TRIGGER lot_movements_no_truncate BEFORE TRUNCATE ON lot_movements {_NO_TRUNCATE}",
    f"CREATE TRIGGER lot_movements_recorded BEFORE INSERT ON lot_movements {_GUARDED}",
    *(
        statement
        for table, key in (
            (
                "ledger_daily_totals",
                "ledger, day, code, debit_account_code, credit_account_code",
            ),
            (
                "lot_daily_movements",
                "ledger, day, code, origin_code, source_account_id, cohort",
            ),
        )
        for statement in (
            f"CREATE TRIGGER {table}_key_immutable BEFORE UPDATE OF {key} ON {table} {_IMMUTABLE}",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} {_IMMUTABLE}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} {_NO_TRUNCATE}",
            f"CREATE TRIGGER {table}_recorded BEFORE INSERT OR UPDATE ON {table} {_GUARDED}",
        )
    ),
    "CREATE TRIGGER transfers_record_movements AFTER INSERT ON transfers"
    " REFERENCING NEW TABLE AS new_transfers"
    " FOR EACH STATEMENT EXECUTE FUNCTION ledger_record_movements()",
)

#: The past's daily totals, as the trigger would have summed them.
PAST_TOTALS = """
INSERT INTO ledger_daily_totals (ledger, day, code, debit_account_code, credit_account_code,
                                 amount, transfers)
SELECT t.ledger, (coalesce(t.effective_at, t.created_at) AT TIME ZONE g.time_zone)::date,
       t.code, da.code, ca.code, sum(t.amount), count(*)
FROM transfers t
JOIN ledgers g ON g.id = t.ledger
JOIN accounts da ON da.id = t.debit_account_id
JOIN accounts ca ON ca.id = t.credit_account_id
WHERE t.ledger <> 0 AND t.flags & 10 = 0
GROUP BY 1, 2, 3, 4, 5
"""


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)
    for path, sha256 in FUNCTIONS:
        op.execute(ledger_function(path, sha256))
    for statement in TRIGGERS:
        op.execute(statement)
    op.execute("SELECT set_config('ledger.recording', 'on', true)")
    op.execute(PAST_TOTALS)
    op.execute("SELECT set_config('ledger.recording', 'off', true)")
    op.execute("SELECT * FROM ledger_derive_lots()")


def downgrade() -> None:
    op.execute("DROP TRIGGER transfers_record_movements ON transfers")
    op.execute(
        "DROP TABLE lot_daily_movements, ledger_daily_totals, lot_movements, lots, ledger_lot_codes"
    )
    op.execute("DROP INDEX transfers_restores_idx")
    for function in ("ledger_derive_lots", "ledger_record_movements", "ledger_record_lots"):
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP FUNCTION ledger_guard_recorded")
    op.execute("ALTER TABLE ledgers DROP COLUMN time_zone")
