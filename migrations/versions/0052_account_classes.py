"""Account classes: the ledger's aggregates by a grouping of accounts.

An account's class (``accounts.account_class``, 0: none) is what its owner
groups it by, such as a member's tier; ``ledger_set_account_classes``
changes it from an instant on and moves the account's points between the
classes' aggregates (``ledger_class_moves``), and the posting path counts
each movement in its account's class (``ledger_daily_totals`` gains
``debit_class`` and ``credit_class``), putting back in the class in force
then a movement dated before its account's last change
(``ledger_correct_account_classes``). So every class's points at the end of
any day are one sum over days (``ledger/classes.py``), as the other daily
aggregates are. ``account_class_changes`` keeps each account's changes.

Existing accounts start in class 0 and ``ledgers.classes_since`` stays NULL
(the aggregates answer for every day): an owner assigning classes to a
ledger with history sets it, since before that instant the aggregates count
every account in class 0.

Revision ID: 0052_account_classes
Revises: 0051_revenue_fee_currencies
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0052_account_classes"
down_revision: str | None = "0051_revenue_fee_currencies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What this revision applies, with the pins, in order.
UPGRADE = (
    (
        "ledger_set_account_classes.sql",
        "ba814b010ca2b2f5fc9721691f0c39f8e30969ddb334c585cb9cdc958203a310",
    ),
    (
        "ledger_correct_account_classes.sql",
        "cec21288967549ee39a544aa4955f15b69447ebb9e68f028379b83b003c3f0d9",
    ),
    (
        "ledger_create_transfers.sql",
        "d2668474a18d0cd9716eb13fc23f988f5cee09d9e00605495772d39f106c612c",
    ),
)

#: What the downgrade puts back: 0050's posting function.
DOWNGRADE = (
    (
        "history/0050_lots_settled_later/ledger_create_transfers.sql",
        "a30eaeb046f794da42a495ceac6f49ea8fe8aef9f7e083c6e4fd623a4a299c7a",
    ),
)

_IMMUTABLE = "FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()"
_NO_TRUNCATE = "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
_GUARDED = "FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_recorded()"
_TOTALS_KEY = "ledger, day, code, debit_account_code, credit_account_code"

TABLES = (
    "ALTER TABLE accounts ADD COLUMN account_class integer NOT NULL DEFAULT 0"
    " CONSTRAINT accounts_class_not_negative CHECK (account_class >= 0),"
    " ADD COLUMN class_since timestamptz",
    "ALTER TABLE ledgers ADD COLUMN classes_since timestamptz",
    "ALTER TABLE ledger_daily_totals ADD COLUMN debit_class integer NOT NULL DEFAULT 0,"
    " ADD COLUMN credit_class integer NOT NULL DEFAULT 0",
    "ALTER TABLE ledger_daily_totals DROP CONSTRAINT ledger_daily_totals_pkey",
    "ALTER TABLE ledger_daily_totals ADD CONSTRAINT ledger_daily_totals_pkey"
    f" PRIMARY KEY ({_TOTALS_KEY}, debit_class, credit_class)",
    """CREATE TABLE account_class_changes (
        account_id uuid NOT NULL,
        ledger integer NOT NULL,
        valid_from timestamptz NOT NULL,
        account_class integer NOT NULL,
        previous_class integer NOT NULL,
        -- Two changes at one instant keep their order.
        seq bigint GENERATED ALWAYS AS IDENTITY,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account_id, valid_from, seq)
    )""",
    # The sums are numeric, as the daily totals' are.
    """CREATE TABLE ledger_class_moves (
        ledger integer NOT NULL,
        day date NOT NULL,
        account_code integer NOT NULL,
        from_class integer NOT NULL,
        to_class integer NOT NULL,
        points numeric NOT NULL,
        CONSTRAINT ledger_class_moves_pkey
            PRIMARY KEY (ledger, day, account_code, from_class, to_class)
    )""",
)

TRIGGERS = (
    "DROP TRIGGER ledger_daily_totals_key_immutable ON ledger_daily_totals",
    "CREATE TRIGGER ledger_daily_totals_key_immutable BEFORE UPDATE OF"
    f" {_TOTALS_KEY}, debit_class, credit_class ON ledger_daily_totals {_IMMUTABLE}",
    "CREATE TRIGGER account_class_changes_immutable BEFORE UPDATE OR DELETE"
    f" ON account_class_changes {_IMMUTABLE}",
    f"CREATE TRIGGER account_class_changes_no_truncate BEFORE TRUNCATE ON account_class_changes"
    f" {_NO_TRUNCATE}",
    "CREATE TRIGGER account_class_changes_recorded BEFORE INSERT ON account_class_changes"
    f" {_GUARDED}",
    "CREATE TRIGGER ledger_class_moves_key_immutable BEFORE UPDATE OF ledger, day,"
    f" account_code, from_class, to_class ON ledger_class_moves {_IMMUTABLE}",
    f"CREATE TRIGGER ledger_class_moves_no_delete BEFORE DELETE ON ledger_class_moves {_IMMUTABLE}",
    f"CREATE TRIGGER ledger_class_moves_no_truncate BEFORE TRUNCATE ON ledger_class_moves"
    f" {_NO_TRUNCATE}",
    "CREATE TRIGGER ledger_class_moves_recorded BEFORE INSERT OR UPDATE ON ledger_class_moves"
    f" {_GUARDED}",
    # A class moves only with its points: by ledger_set_account_classes.
    "CREATE TRIGGER accounts_class_recorded BEFORE UPDATE OF account_class, class_since"
    f" ON accounts {_GUARDED}",
)


def upgrade() -> None:
    for statement in (*TABLES, *TRIGGERS):
        op.execute(statement)
    for path, sha256 in UPGRADE:
        op.execute(ledger_function(path, sha256))


def downgrade() -> None:
    for path, sha256 in DOWNGRADE:
        op.execute(ledger_function(path, sha256))
    op.execute(
        "DROP FUNCTION ledger_correct_account_classes(uuid[], bigint[], timestamptz[], integer[])"
    )
    op.execute("DROP FUNCTION ledger_set_account_classes(uuid[], integer[], timestamptz[])")
    op.execute("DROP TRIGGER accounts_class_recorded ON accounts")
    op.execute("DROP TABLE ledger_class_moves, account_class_changes")
    # The totals summed over classes again, under their former key.
    op.execute("SELECT set_config('ledger.recording', 'on', true)")
    op.execute("DROP TRIGGER ledger_daily_totals_no_delete ON ledger_daily_totals")
    op.execute(
        "CREATE TEMPORARY TABLE merged_daily_totals ON COMMIT DROP AS"
        f" SELECT {_TOTALS_KEY}, sum(amount) AS amount, sum(transfers) AS transfers"
        f" FROM ledger_daily_totals GROUP BY {_TOTALS_KEY}"
    )
    op.execute("DELETE FROM ledger_daily_totals")
    op.execute("DROP TRIGGER ledger_daily_totals_key_immutable ON ledger_daily_totals")
    op.execute("ALTER TABLE ledger_daily_totals DROP CONSTRAINT ledger_daily_totals_pkey")
    op.execute("ALTER TABLE ledger_daily_totals DROP COLUMN debit_class, DROP COLUMN credit_class")
    op.execute(
        "ALTER TABLE ledger_daily_totals ADD CONSTRAINT ledger_daily_totals_pkey"
        f" PRIMARY KEY ({_TOTALS_KEY})"
    )
    op.execute(
        f"INSERT INTO ledger_daily_totals ({_TOTALS_KEY}, amount, transfers)"
        f" SELECT {_TOTALS_KEY}, amount, transfers FROM merged_daily_totals"
    )
    op.execute("SELECT set_config('ledger.recording', 'off', true)")
    op.execute(
        f"CREATE TRIGGER ledger_daily_totals_key_immutable BEFORE UPDATE OF {_TOTALS_KEY}"
        f" ON ledger_daily_totals {_IMMUTABLE}"
    )
    op.execute(
        f"CREATE TRIGGER ledger_daily_totals_no_delete BEFORE DELETE ON ledger_daily_totals"
        f" {_IMMUTABLE}"
    )
    op.execute("ALTER TABLE ledgers DROP COLUMN classes_since")
    op.execute(
        "ALTER TABLE accounts DROP CONSTRAINT accounts_class_not_negative,"
        " DROP COLUMN account_class, DROP COLUMN class_since"
    )
