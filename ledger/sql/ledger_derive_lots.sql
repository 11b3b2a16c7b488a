-- The backfill of lots: every lot account (code in ledger_lot_codes) with
-- posted credits and no lot yet gets its lots, movements and
-- lot_daily_movements from its history, replayed in timestamp order through
-- ledger_record_lots in chunks, each chunk's plain debits settled
-- (ledger_settle_lots) before the next: the same outcome as the posting
-- path's had it run from the start, every account left settled. A second
-- call finds no such account and does nothing.
-- Holds the advisory lock of every ledger with lot accounts (as the posting
-- function takes them, in ledger order) so that no batch posts meanwhile.
CREATE OR REPLACE FUNCTION ledger_derive_lots(
    OUT accounts bigint, OUT lots bigint, OUT movements bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    c_chunk constant integer := 8192;
    v_codes integer[];
    n bigint;
    first bigint := 0;
    recorded record;
    a_id uuid[]; a_debit uuid[]; a_credit uuid[]; a_amount bigint[]; a_ledger integer[];
    a_code integer[]; a_metadata jsonb[]; a_business_at timestamptz[]; a_day date[];
    a_zone text[]; a_ts bigint[]; a_debit_lot boolean[]; a_credit_lot boolean[];
    a_gift boolean[]; c_accounts uuid[]; c_newest timestamptz[];
BEGIN
    accounts := 0; lots := 0; movements := 0;
    SELECT coalesce(array_agg(c.code), '{}') INTO v_codes FROM ledger_lot_codes c;
    PERFORM pg_advisory_xact_lock(1279607879, q.ledger)
    FROM (SELECT DISTINCT a.ledger FROM accounts a WHERE a.code = ANY (v_codes)
          ORDER BY a.ledger) q;

    -- Accounts whose lots only wait to be settled are no history without lots.
    PERFORM ledger_settle_lots(ARRAY(
        SELECT a.id FROM accounts a
        WHERE a.code = ANY (v_codes)
          AND (a.debits_posted > a.lots_debited OR a.credits_posted > a.lots_credited)));

    DROP TABLE IF EXISTS ledger_derive_accounts;
    CREATE TEMP TABLE ledger_derive_accounts ON COMMIT DROP AS
    SELECT a.id FROM accounts a
    WHERE a.code = ANY (v_codes) AND a.credits_posted > 0
      AND a.id NOT IN (SELECT l.account_id FROM lots l);
    GET DIAGNOSTICS accounts = ROW_COUNT;
    IF accounts = 0 THEN
        DROP TABLE ledger_derive_accounts;
        RETURN;
    END IF;
    ALTER TABLE ledger_derive_accounts ADD PRIMARY KEY (id);
    -- Whatever a settlement found of them before (no lot to consume), their
    -- debits are replayed from the first.
    UPDATE accounts a SET lots_debited = 0, lots_credited = 0, lots_through = 0
    FROM ledger_derive_accounts d WHERE a.id = d.id;
    ANALYZE ledger_derive_accounts;

    DROP TABLE IF EXISTS ledger_derive_transfers;
    CREATE TEMP TABLE ledger_derive_transfers ON COMMIT DROP AS
    SELECT row_number() OVER (ORDER BY t."timestamp") AS k, t.id,
           t.debit_account_id AS debit, t.credit_account_id AS credit, t.amount, t.ledger,
           t.code, t.metadata, coalesce(t.effective_at, t.created_at) AS business_at,
           (coalesce(t.effective_at, t.created_at) AT TIME ZONE g.time_zone)::date AS day,
           g.time_zone AS zone, t."timestamp" AS ts, d.id IS NOT NULL AS debit_lot,
           c.id IS NOT NULL AS credit_lot, da.code = ANY (v_codes) AS gift
    FROM transfers t
    JOIN ledgers g ON g.id = t.ledger
    JOIN accounts da ON da.id = t.debit_account_id
    LEFT JOIN ledger_derive_accounts d ON d.id = t.debit_account_id
    LEFT JOIN ledger_derive_accounts c ON c.id = t.credit_account_id
    WHERE t.ledger <> 0 AND t.flags & 10 = 0 AND (d.id IS NOT NULL OR c.id IS NOT NULL);
    GET DIAGNOSTICS n = ROW_COUNT;
    CREATE INDEX ON ledger_derive_transfers (k);
    ANALYZE ledger_derive_transfers;

    WHILE first < n LOOP
        SELECT array_agg(s.id), array_agg(s.debit), array_agg(s.credit), array_agg(s.amount),
               array_agg(s.ledger), array_agg(s.code), array_agg(s.metadata),
               array_agg(s.business_at), array_agg(s.day), array_agg(s.zone), array_agg(s.ts),
               array_agg(s.debit_lot), array_agg(s.credit_lot), array_agg(s.gift)
        INTO a_id, a_debit, a_credit, a_amount, a_ledger, a_code, a_metadata, a_business_at,
             a_day, a_zone, a_ts, a_debit_lot, a_credit_lot, a_gift
        FROM (SELECT x.* FROM ledger_derive_transfers x
              WHERE x.k > first AND x.k <= first + c_chunk ORDER BY x.k) s;
        -- Every chunk starts settled: what sorts where is told by the open lots.
        SELECT coalesce(array_agg(q.id), '{}'), coalesce(array_agg(q.newest), '{}')
        INTO c_accounts, c_newest
        FROM (SELECT DISTINCT ON (l.account_id) l.account_id AS id, l.earned_at AS newest
              FROM lots l
              WHERE l.account_id = ANY (ARRAY(SELECT u.x FROM unnest(a_credit) u(x)))
                AND l.is_open
              ORDER BY l.account_id, l.earned_at DESC) q;
        SELECT * INTO recorded
        FROM ledger_record_lots(a_id, a_debit, a_credit, a_amount, a_ledger, a_code,
                                a_metadata, a_business_at, a_day, a_zone, a_ts, a_debit_lot,
                                a_credit_lot, a_gift, c_accounts,
                                array_fill(false, ARRAY[cardinality(c_accounts)]), c_newest);
        lots := lots + recorded.lots_created;
        movements := movements + recorded.movements;
        SELECT * INTO recorded
        FROM ledger_settle_lots(ARRAY(SELECT u.d FROM unnest(a_debit, a_debit_lot) u(d, lot)
                                      WHERE u.lot
                                      UNION
                                      SELECT u.c FROM unnest(a_credit, a_credit_lot) u(c, lot)
                                      WHERE u.lot),
                                a_ts[cardinality(a_ts)] + 1);
        lots := lots + recorded.lots;
        movements := movements + recorded.movements;
        first := first + c_chunk;
    END LOOP;
    -- Credits posted without the posting path's bookkeeping (before 0050, or
    -- as a replica) count in what a later credit must sort after.
    UPDATE accounts a
    SET lots_newest = greatest(a.lots_newest, x.newest,
                               (SELECT max(l.earned_at) FROM lots l
                                WHERE l.account_id = a.id AND l.is_open))
    FROM (SELECT t.credit, max(t.business_at) AS newest FROM ledger_derive_transfers t
          WHERE t.credit_lot GROUP BY t.credit) x
    WHERE a.id = x.credit;
    DROP TABLE ledger_derive_transfers;
    DROP TABLE ledger_derive_accounts;
END $$;
