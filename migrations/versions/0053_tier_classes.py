"""Members' tiers as the ledger's account classes (liability by tier from
aggregates).

- ``tiers.ledger_class``: the tier's number among the ledger's account
  classes (0 is none), from the sequence ``tier_ledger_classes``, unique
  across programs and kept for good: a tier is never deleted, nor does its
  code or number change (trigger ``tiers_keep_ledger_class``), so a class
  always maps back to its tier.
- Every change of a member's tier moves the wallet to the new tier's class
  (``ledger_set_account_classes``) from the instant the history of tiers
  records (``member_tier_changes.valid_from``), so that the ledger's class
  aggregates follow the same history as ``rewards.tier_history``. The
  history row is written at once, as in 0047; the ledger call waits for
  the commit: the changes are queued in ``tier_classes_due`` and a deferred
  constraint trigger makes one call for all of the transaction's changes.
  At once, the call would take the ledger's posting lock inside the
  caller's transaction, and a purchase that moves a tier and then posts
  through the ledger's writer (another connection, which commits first:
  ``rewards.purchase_recording`` without ``atomic``) would wait for itself.
- A member created with a tier is in its class from the beginning of time
  (``-infinity``): with no history row, the history counts the member in
  the current tier at every instant.
- Backfill: every member's current tier (or none), at the migration, in
  one call; then ``ledgers.classes_since`` for every ledger that already has
  a wallet, since its aggregates count every wallet in class 0 before
  (finance reads the days before it from the history of tiers).

Revision ID: 0053_tier_classes
Revises: 0052_account_classes
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0053_tier_classes"
down_revision: str | None = "0052_account_classes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIERS = [
    # Not owned by the column (no serial): the models declare its default.
    "CREATE SEQUENCE tier_ledger_classes AS integer MINVALUE 1",
    "ALTER TABLE tiers ADD COLUMN ledger_class integer",
    # In the order the tiers were defined.
    """UPDATE tiers t SET ledger_class = n.ledger_class
    FROM (SELECT o.id, nextval('tier_ledger_classes') AS ledger_class
          FROM (SELECT id FROM tiers ORDER BY created_at, id) o) n
    WHERE t.id = n.id""",
    """ALTER TABLE tiers
        ALTER COLUMN ledger_class SET DEFAULT nextval('tier_ledger_classes'),
        ALTER COLUMN ledger_class SET NOT NULL,
        ADD CONSTRAINT ck_tiers_ledger_class CHECK (ledger_class > 0),
        ADD CONSTRAINT uq_tiers_ledger_class UNIQUE (ledger_class)""",
    """CREATE FUNCTION tiers_keep_ledger_class() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'a tier is kept for good: its ledger class maps back to it'
            USING ERRCODE = 'restrict_violation';
    END
    $$""",
    """CREATE TRIGGER tiers_keep_ledger_class
        BEFORE DELETE OR UPDATE OF program_id, code, ledger_class ON tiers
        FOR EACH ROW EXECUTE FUNCTION tiers_keep_ledger_class()""",
]

# Rows live only inside the transaction that queued them: its commit takes
# them all (assign_tier_classes).
QUEUE = [
    """CREATE TABLE tier_classes_due (
        id BIGSERIAL,
        wallet_account_id UUID NOT NULL,
        ledger_class INTEGER NOT NULL,
        valid_from TIMESTAMP WITH TIME ZONE NOT NULL,
        CONSTRAINT pk_tier_classes_due PRIMARY KEY (id)
    )""",
    # At the commit. The first of the transaction's events takes every
    # change queued (its own rows are all this transaction sees: each
    # commit empties the queue of its own) and the others find theirs gone,
    # by key. A member's second change in the transaction goes in a further
    # call, so each call moves an account once, in the order of its changes.
    # Lock order: the member's row first (a purchase locks it in
    # rewards.purchase_repository.read_batch, the downgrade job in
    # rewards.tiers.evaluate_tiers, an update by updating it), then, here,
    # the ledger's posting lock, as a purchase that posts in its own
    # transaction takes them; nothing that holds the posting lock waits for
    # a member's row.
    # One call, in the order queued: the function applies an account's
    # changes in order and takes every ledger's lock at once, in ledger
    # order (one call per ledger or per pass could take a lower ledger after
    # a higher one and deadlock with a batch of both). A wallet the ledger
    # does not hold (no account: a member made without one) has no class
    # to move. Never SET CONSTRAINTS ... IMMEDIATE for this trigger: it
    # would take the posting lock inside the caller's transaction, which
    # the deferral exists to avoid.
    """CREATE FUNCTION assign_tier_classes() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        wallets uuid[];
        classes integer[];
        instants timestamptz[];
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM tier_classes_due WHERE id = NEW.id) THEN
            RETURN NULL;
        END IF;
        WITH taken AS (DELETE FROM tier_classes_due RETURNING *)
        SELECT array_agg(t.wallet_account_id ORDER BY t.id),
            array_agg(t.ledger_class ORDER BY t.id), array_agg(t.valid_from ORDER BY t.id)
        INTO wallets, classes, instants
        FROM taken t WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.wallet_account_id);
        IF wallets IS NOT NULL THEN
            PERFORM ledger_set_account_classes(wallets, classes, instants);
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE CONSTRAINT TRIGGER tier_classes_due_assign
        AFTER INSERT ON tier_classes_due DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION assign_tier_classes()""",
]

# 0047's function, and after the history row, the wallet's class queued
# from the same instant: the tier's class, 0 for no tier (or a code the
# ladder does not have).
RECORD_TIER_CHANGE = """CREATE OR REPLACE FUNCTION record_member_tier_change()
    RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        since timestamptz := CASE WHEN NEW.tier_since IS DISTINCT FROM OLD.tier_since
            THEN coalesce(NEW.tier_since, now()) ELSE now() END;
        latest timestamptz;
        effective timestamptz;
    BEGIN
        SELECT max(valid_from) INTO latest FROM member_tier_changes WHERE member_id = NEW.id;
        effective := greatest(since, coalesce(latest, since));
        INSERT INTO member_tier_changes
            (id, program_id, member_id, tier_code, previous_tier_code, valid_from, created_at,
            updated_at)
        -- clock_timestamp: two changes in one transaction keep their order.
        VALUES (gen_random_uuid(), NEW.program_id, NEW.id, NEW.tier_code, OLD.tier_code,
            effective, clock_timestamp(), clock_timestamp());
        INSERT INTO tier_classes_due (wallet_account_id, ledger_class, valid_from)
        VALUES (NEW.wallet_account_id, coalesce((SELECT t.ledger_class FROM tiers t
            WHERE t.program_id = NEW.program_id AND t.code = NEW.tier_code), 0), effective);
        RETURN NULL;
    END
    $$"""

# 0047's text, which the downgrade puts back.
RECORD_TIER_CHANGE_0047 = """CREATE OR REPLACE FUNCTION record_member_tier_change()
    RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        since timestamptz := CASE WHEN NEW.tier_since IS DISTINCT FROM OLD.tier_since
            THEN coalesce(NEW.tier_since, now()) ELSE now() END;
        latest timestamptz;
    BEGIN
        SELECT max(valid_from) INTO latest FROM member_tier_changes WHERE member_id = NEW.id;
        INSERT INTO member_tier_changes
            (id, program_id, member_id, tier_code, previous_tier_code, valid_from, created_at,
            updated_at)
        -- clock_timestamp: two changes in one transaction keep their order.
        VALUES (gen_random_uuid(), NEW.program_id, NEW.id, NEW.tier_code, OLD.tier_code,
            greatest(since, coalesce(latest, since)), clock_timestamp(), clock_timestamp());
        RETURN NULL;
    END
    $$"""

NEW_MEMBERS = [
    """CREATE FUNCTION record_new_member_tier() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO tier_classes_due (wallet_account_id, ledger_class, valid_from)
        VALUES (NEW.wallet_account_id, coalesce((SELECT t.ledger_class FROM tiers t
            WHERE t.program_id = NEW.program_id AND t.code = NEW.tier_code), 0), '-infinity');
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER members_record_new_tier
        AFTER INSERT ON members
        FOR EACH ROW WHEN (NEW.tier_code IS NOT NULL)
        EXECUTE FUNCTION record_new_member_tier()""",
]

# Each member's current tier, one call, now (NULL: under the
# ledger's lock, from the balance, with no scan of transfers); then the
# instant from which the aggregates answer, for every ledger that has a
# wallet: after the calls, so that every move they made (on the day of its
# instant) is counted on every day that ends after it. A ledger with a
# wallet but no points yet is marked too: a backdated movement may still
# bring it points dated before now.
BACKFILL = [
    # Every member's wallet, with a tier or not (a wallet left in a class by
    # an earlier upgrade goes back to 0 when its member lost the tier since),
    # in one call: the ledgers' locks in ledger order.
    """SELECT ledger_set_account_classes(
        array_agg(m.wallet_account_id ORDER BY m.wallet_account_id),
        array_agg(coalesce(t.ledger_class, 0) ORDER BY m.wallet_account_id),
        array_agg(NULL::timestamptz ORDER BY m.wallet_account_id))
    FROM members m
    JOIN accounts a ON a.id = m.wallet_account_id
    LEFT JOIN tiers t ON t.program_id = m.program_id AND t.code = m.tier_code
    HAVING count(*) > 0""",
    """UPDATE ledgers g SET classes_since = clock_timestamp()
    WHERE EXISTS (SELECT 1 FROM accounts a
        WHERE a.ledger = g.id AND a.code IN (SELECT code FROM ledger_lot_codes))""",
]


def upgrade() -> None:
    for statement in (*TIERS, *QUEUE, RECORD_TIER_CHANGE, *NEW_MEMBERS, *BACKFILL):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER members_record_new_tier ON members")
    op.execute("DROP FUNCTION record_new_member_tier()")
    op.execute(RECORD_TIER_CHANGE_0047)
    op.execute("DROP TABLE tier_classes_due")
    op.execute("DROP FUNCTION assign_tier_classes()")
    op.execute("DROP TRIGGER tiers_keep_ledger_class ON tiers")
    op.execute("DROP FUNCTION tiers_keep_ledger_class()")
    op.execute("ALTER TABLE tiers DROP COLUMN ledger_class")
    op.execute("DROP SEQUENCE tier_ledger_classes")
