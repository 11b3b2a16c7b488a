-- Settles the lot accounts p_accounts: writes their plain movements after
-- accounts.lots_through (and before p_before, when given), and moves the
-- marks (lots_debited, lots_credited, lots_through) past them. Those
-- movements are plain (ledger_record_lots settles an account before any
-- other movement of it): each credit makes its own lot, and each debit then
-- takes, by cumulative sums, the overlap of its range of the account's
-- debits with the lots' ranges of their remaining, lots in order (every
-- credit after an unsettled debit sorts after the lots made before it): the
-- outcome of recording them one at a time at posting.
-- The caller holds the ledgers' locks (ledger_create_transfers, or
-- ledger_settle_account_lots / ledger_settle_ledger_lots).
-- Lots made after an account's last debit are no candidates; the 2 oldest
-- cover most debits (a debit takes one or two lots, every lot read is a heap
-- fetch), the 8 oldest nearly all the others, and all open lots are read only
-- for the accounts neither covers (a long-standing wallet has hundreds).
CREATE OR REPLACE FUNCTION ledger_settle_lots(
    p_accounts uuid[], p_before bigint DEFAULT NULL,
    OUT accounts bigint, OUT lots bigint, OUT movements bigint
)
-- Each account's movements are one range of transfers_debit_idx or
-- transfers_credit_idx: no sequential nor bitmap scan (a bitmap scan would
-- take the BRIN index of "timestamp", which answers for the whole table
-- when the marks are old, once per account under a generic plan).
LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off AS $$
DECLARE
    c_before constant bigint := coalesce(p_before, 9223372036854775807);
    v_accounts uuid[];
    v_through bigint[];
    k bigint;
BEGIN
    accounts := 0; lots := 0; movements := 0;
    IF coalesce(cardinality(p_accounts), 0) = 0 THEN RETURN; END IF;
    PERFORM set_config('ledger.recording', 'on', true);
    SELECT coalesce(array_agg(a.id), '{}'), array_agg(a.lots_through)
    INTO v_accounts, v_through
    FROM accounts a
    WHERE a.id = ANY (p_accounts)
      AND (a.debits_posted > a.lots_debited OR a.credits_posted > a.lots_credited)
      AND a.code IN (SELECT c.code FROM ledger_lot_codes c);
    IF cardinality(v_accounts) = 0 THEN RETURN; END IF;

    -- 1. The credits: one lot each, the transfer's own.
    WITH c AS (
        SELECT t.id, t.credit_account_id AS account, t.debit_account_id AS source, t.amount,
               t.ledger, t.code, coalesce(t.effective_at, t.created_at) AS business_at,
               g.time_zone AS zone, t."timestamp" AS ts
        FROM accounts a
        CROSS JOIN LATERAL (
            SELECT t.* FROM transfers t
            WHERE t.credit_account_id = a.id
              AND t."timestamp" > a.lots_through AND t."timestamp" < c_before
            ORDER BY t."timestamp"
        ) t
        JOIN ledgers g ON g.id = t.ledger
        WHERE a.id = ANY (v_accounts) AND a.credits_posted > a.lots_credited
          AND t.flags & 10 = 0 AND t.ledger <> 0
    ), made AS (
        INSERT INTO lots (id, ledger, account_id, origin_code, source_account_id, amount,
                          remaining, earned_at, cohort, expires_at, "timestamp")
        SELECT c.id, c.ledger, c.account, c.code, c.source, c.amount, c.amount, c.business_at,
               date_trunc('month', c.business_at AT TIME ZONE c.zone)::date, NULL, c.ts
        FROM c
    ), moves AS (
        INSERT INTO lot_movements (transfer_id, lot_id, points, business_at, day, "timestamp")
        SELECT c.id, c.id, c.amount, c.business_at, (c.business_at AT TIME ZONE c.zone)::date,
               c.ts
        FROM c
    ), daily AS (
        INSERT INTO lot_daily_movements (ledger, day, code, origin_code, source_account_id,
                                         cohort, points)
        SELECT c.ledger, (c.business_at AT TIME ZONE c.zone)::date, c.code, c.code, c.source,
               date_trunc('month', c.business_at AT TIME ZONE c.zone)::date, sum(c.amount)
        FROM c
        GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (ledger, day, code, origin_code, source_account_id, cohort)
        DO UPDATE SET points = lot_daily_movements.points + excluded.points
    ), marks AS (
        UPDATE accounts x SET lots_credited = x.lots_credited + s.amount,
                              lots_through = greatest(x.lots_through, s.ts)
        FROM (SELECT c.account, sum(c.amount) AS amount, max(c.ts) AS ts
              FROM c GROUP BY c.account) s
        WHERE x.id = s.account
    )
    SELECT count(*) INTO lots FROM c;
    movements := lots;

    -- 2. The debits, by cumulative sums, after the marks as they were (the
    -- credits just moved them).
    WITH a0 AS (
        SELECT a.id AS account, m.through AS lots_through
        FROM unnest(v_accounts, v_through) AS m(account, through)
        JOIN accounts a ON a.id = m.account
        WHERE a.debits_posted > a.lots_debited
    ), d AS (
        SELECT t.id, a0.account, t.amount, t.ledger, t.code,
               coalesce(t.effective_at, t.created_at) AS business_at,
               (coalesce(t.effective_at, t.created_at) AT TIME ZONE g.time_zone)::date
                   AS day,
               t."timestamp" AS ts,
               sum(t.amount) OVER (PARTITION BY a0.account ORDER BY t."timestamp")
                   AS d_end
        FROM a0
        CROSS JOIN LATERAL (
            SELECT t.* FROM transfers t
            WHERE t.debit_account_id = a0.account
              AND t."timestamp" > a0.lots_through AND t."timestamp" < c_before
            ORDER BY t."timestamp"
        ) t
        JOIN ledgers g ON g.id = t.ledger
        WHERE t.flags & 10 = 0 AND t.ledger <> 0
    ), a AS (
        SELECT d.account, max(d.ts) AS last_ts, max(d.d_end) AS total
        FROM d GROUP BY d.account
    ), first_lots AS (
        SELECT a.account, a.total, l.*
        FROM a CROSS JOIN LATERAL (
            SELECT l.id AS lot_id, l.ctid AS lot_ctid, l.remaining, l.earned_at,
                   l."timestamp" AS lot_ts, l.origin_code, l.source_account_id, l.cohort
            FROM lots l
            WHERE l.account_id = a.account AND l.is_open AND l."timestamp" < a.last_ts
            ORDER BY l.earned_at, l."timestamp", l.id
            LIMIT 2
        ) l
    ), covered AS (
        SELECT f.account FROM first_lots f GROUP BY f.account, f.total
        HAVING count(*) < 2 OR sum(f.remaining) >= f.total
    ), more_lots AS (
        SELECT a.account, a.total, l.*
        FROM a CROSS JOIN LATERAL (
            SELECT l.id AS lot_id, l.ctid AS lot_ctid, l.remaining, l.earned_at,
                   l."timestamp" AS lot_ts, l.origin_code, l.source_account_id, l.cohort
            FROM lots l
            WHERE l.account_id = a.account AND l.is_open AND l."timestamp" < a.last_ts
            ORDER BY l.earned_at, l."timestamp", l.id
            LIMIT 8
        ) l
        WHERE a.account NOT IN (SELECT account FROM covered)
    ), covered_more AS (
        SELECT f.account FROM more_lots f GROUP BY f.account, f.total
        HAVING count(*) < 8 OR sum(f.remaining) >= f.total
    ), candidates AS (
        SELECT f.* FROM first_lots f WHERE f.account IN (SELECT account FROM covered)
        UNION ALL
        SELECT f.* FROM more_lots f WHERE f.account IN (SELECT account FROM covered_more)
        UNION ALL
        SELECT a.account, a.total, l.*
        FROM a CROSS JOIN LATERAL (
            SELECT l.id AS lot_id, l.ctid AS lot_ctid, l.remaining, l.earned_at,
                   l."timestamp" AS lot_ts, l.origin_code, l.source_account_id, l.cohort
            FROM lots l
            WHERE l.account_id = a.account AND l.is_open AND l."timestamp" < a.last_ts
        ) l
        WHERE a.account NOT IN (SELECT account FROM covered)
          AND a.account NOT IN (SELECT account FROM covered_more)
    ), c AS (
        SELECT x.*, sum(x.remaining) OVER (
                   PARTITION BY x.account ORDER BY x.earned_at, x.lot_ts, x.lot_id) AS l_end
        FROM candidates x
    ), taken AS (
        SELECT d.id, d.ledger, d.code, d.business_at, d.day, d.ts, c.lot_id, c.lot_ctid, c.origin_code,
               c.source_account_id, c.cohort,
               least(d.d_end, c.l_end) - greatest(d.d_end - d.amount, c.l_end - c.remaining)
                   AS points
        FROM d JOIN c ON c.account = d.account
                     AND c.l_end - c.remaining < d.d_end AND c.l_end > d.d_end - d.amount
    ), spent AS (
        -- By the version the candidates read (no writer meanwhile: the
        -- ledger's lock), not by a second look-up of the key.
        UPDATE lots l SET remaining = l.remaining - s.points
        FROM (SELECT t.lot_ctid, sum(t.points) AS points FROM taken t GROUP BY t.lot_ctid) s
        WHERE l.ctid = s.lot_ctid
    ), moves AS (
        INSERT INTO lot_movements (transfer_id, lot_id, points, business_at, day,
                                   "timestamp")
        SELECT t.id, t.lot_id, -t.points, t.business_at, t.day, t.ts FROM taken t
    ), daily AS (
        INSERT INTO lot_daily_movements (ledger, day, code, origin_code, source_account_id,
                                         cohort, points)
        SELECT t.ledger, t.day, t.code, t.origin_code, t.source_account_id,
               t.cohort, -sum(t.points)
        FROM taken t
        GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (ledger, day, code, origin_code, source_account_id, cohort)
        DO UPDATE SET points = lot_daily_movements.points + excluded.points
    ), marks AS (
        UPDATE accounts x SET lots_debited = x.lots_debited + s.amount,
                              lots_through = greatest(x.lots_through, s.ts)
        FROM (SELECT d.account, sum(d.amount) AS amount, max(d.ts) AS ts
              FROM d GROUP BY d.account) s
        WHERE x.id = s.account
        RETURNING x.id
    )
    SELECT (SELECT count(*) FROM taken) INTO k;
    movements := movements + k;
    accounts := cardinality(v_accounts);
END $$;
