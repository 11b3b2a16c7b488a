-- The lots of a set of posted movements, in timestamp order: the posting
-- function (ledger_create_transfers) calls it per batch, the backfill
-- (ledger_derive_lots) per chunk of history. The outcome is the one of
-- recording the movements one at a time, in order:
--   a credit of a lot account makes a lot (id = the transfer's), or, with
--     {"restores": "<debit id>"}, puts back what that debit consumed (in the
--     reverse order of consumption, capped by what earlier restorations gave
--     back; the rest makes a lot), or, from another lot account (a gift),
--     one lot per lot the debit side consumed (id md5(transfer || lot));
--   a debit consumes the lots named in {"lots": [...]}, then the oldest
--     (earned_at, "timestamp", id).
-- A plain movement of a queue writes nothing here: the lot a plain credit
-- makes is the transfer's own, and what a plain debit consumes is fixed by
-- its place in its account's queue (every credit after an unsettled debit
-- sorts after the lots made before it), so ledger_settle_lots writes both
-- later (accounts.lots_debited, lots_credited and lots_through say how far
-- an account is settled). An account is no queue in this call when it has
-- a directed debit, a restoration, a gift given or received, or a credit
-- after an unsettled debit (of an earlier call, or of this one) that sorts
-- before a lot made earlier (p_newest, or an earlier credit of the call):
-- it is settled up to
-- the call, then its movements of the call are recorded one at a time, and
-- it leaves the call settled.
-- Per row: p_debit_lot consume the debit account's lots; p_credit_lot record
-- on the credit account; p_gift the debit account keeps lots (a gift).
-- Per account of the call (p_accounts): p_waiting whether it has unsettled
-- debits before the call, p_newest accounts.lots_newest before it.
-- Malformed "lots", "restores" or "lot_expires_at" values are ignored.
CREATE OR REPLACE FUNCTION ledger_record_lots(
    p_id uuid[], p_debit uuid[], p_credit uuid[], p_amount bigint[], p_ledger integer[],
    p_code integer[], p_metadata jsonb[], p_business_at timestamptz[], p_day date[],
    p_zone text[], p_timestamp bigint[], p_debit_lot boolean[], p_credit_lot boolean[],
    p_gift boolean[], p_accounts uuid[], p_waiting boolean[], p_newest timestamptz[],
    OUT lots_created bigint, OUT movements bigint
)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    c_uuid constant text :=
        '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
    c_last constant integer := 2147483647;
    n integer := coalesce(cardinality(p_id), 0);
    complex uuid[] := '{}';
    has_debit boolean; has_credit boolean; has_gift boolean; has_special boolean;
    -- Every movement of the call, for lot_daily_movements: the moving row,
    -- the lot's origin, source and cohort, the points.
    g_i integer[] := '{}'; g_origin integer[] := '{}'; g_source uuid[] := '{}';
    g_cohort date[] := '{}'; g_points bigint[] := '{}';
    i integer; k bigint; moved bigint; settled record;
    directed uuid[]; restores uuid; restores_directed uuid[]; expires timestamptz;
BEGIN
    lots_created := 0; movements := 0;
    IF n = 0 THEN RETURN; END IF;
    PERFORM set_config('ledger.recording', 'on', true);
    has_debit := true = ANY (p_debit_lot);
    has_credit := true = ANY (p_credit_lot);
    has_gift := EXISTS (SELECT 1 FROM unnest(p_credit_lot, p_gift) u(c, g) WHERE u.c AND u.g);
    has_special := EXISTS (SELECT 1 FROM unnest(p_metadata) m WHERE m ? 'lots' OR m ? 'restores');

    -- The accounts that are no queue in this call.
    IF has_special OR has_gift OR (has_credit AND (has_debit OR true = ANY (p_waiting))) THEN
        WITH b AS (
            SELECT u.*,
                   u.debit_lot AND (jsonb_typeof(u.metadata -> 'lots') = 'array'
                                    OR (u.credit_lot AND u.gift)) AS directed,
                   u.credit_lot AND (u.gift OR coalesce((u.metadata ->> 'restores') ~ c_uuid,
                                                        false)) AS restoring
            FROM unnest(p_debit, p_credit, p_metadata, p_business_at, p_timestamp,
                        p_debit_lot, p_credit_lot, p_gift)
                 AS u(debit, credit, metadata, business_at, ts, debit_lot, credit_lot, gift)
        ), ev AS (
            SELECT b.debit AS account, b.ts, 'd' AS side, b.directed AS special,
                   NULL::timestamptz AS earned_at
            FROM b WHERE b.debit_lot
            UNION ALL
            SELECT b.credit, b.ts, 'c', b.restoring, b.business_at
            FROM b WHERE b.credit_lot
        ), per AS (
            SELECT ev.account, bool_or(ev.special) AS special
            FROM ev GROUP BY ev.account
        ), known AS (
            SELECT k.account, k.waiting, k.newest
            FROM unnest(p_accounts, p_waiting, p_newest) AS k(account, waiting, newest)
        ), late AS (
            -- Credits after an unsettled debit of their account.
            SELECT e.account, e.side, e.earned_at,
                   greatest(max(e.earned_at) FILTER (WHERE e.side = 'c') OVER w, k.newest)
                       AS before,
                   coalesce(bool_or(e.side = 'd') OVER w, false)
                       OR coalesce(k.waiting, false) AS debited
            FROM per p JOIN ev e ON e.account = p.account
            LEFT JOIN known k ON k.account = p.account
            WHERE NOT p.special
            WINDOW w AS (PARTITION BY e.account ORDER BY e.ts
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        )
        SELECT coalesce(array_agg(DISTINCT x.account), '{}') INTO complex
        FROM (
            SELECT per.account FROM per WHERE per.special
            UNION ALL
            SELECT late.account FROM late
            WHERE late.side = 'c' AND late.debited AND late.earned_at < late.before
        ) x;
    END IF;

    -- 1. The other accounts: settled up to the call, then one movement at a
    -- time, in order.
    IF cardinality(complex) > 0 THEN
        SELECT * INTO settled
        FROM ledger_settle_lots(complex, p_timestamp[1]);
        FOR i IN
            SELECT u.i FROM unnest(p_debit, p_credit, p_debit_lot, p_credit_lot)
                 WITH ORDINALITY AS u(debit, credit, debit_lot, credit_lot, i)
            WHERE (u.debit_lot AND u.debit = ANY (complex))
               OR (u.credit_lot AND u.credit = ANY (complex))
            ORDER BY u.i
        LOOP
            IF p_debit_lot[i] AND p_debit[i] = ANY (complex) THEN
                directed := CASE WHEN jsonb_typeof(p_metadata[i] -> 'lots') = 'array' THEN
                    ARRAY(SELECT e.v::uuid
                          FROM jsonb_array_elements_text(p_metadata[i] -> 'lots')
                               WITH ORDINALITY AS e(v, k)
                          WHERE e.v ~ c_uuid ORDER BY e.k)
                    ELSE '{}' END;
                WITH c AS (
                    SELECT l.id AS lot_id, l.remaining, l.origin_code, l.source_account_id,
                           l.cohort,
                           sum(l.remaining) OVER (
                               ORDER BY coalesce(array_position(directed, l.id), c_last),
                                        l.earned_at, l."timestamp", l.id) AS l_end
                    FROM lots l WHERE l.account_id = p_debit[i] AND l.is_open
                ), taken AS (
                    SELECT c.*, least(c.remaining, p_amount[i] - (c.l_end - c.remaining)) AS points
                    FROM c WHERE c.l_end - c.remaining < p_amount[i]
                ), spent AS (
                    UPDATE lots l SET remaining = l.remaining - t.points
                    FROM taken t WHERE l.id = t.lot_id
                ), moves AS (
                    INSERT INTO lot_movements (transfer_id, lot_id, points, business_at, day,
                                               "timestamp")
                    SELECT p_id[i], t.lot_id, -t.points, p_business_at[i], p_day[i],
                           p_timestamp[i]
                    FROM taken t
                )
                SELECT g_i || array_agg(i), g_origin || array_agg(t.origin_code),
                       g_source || array_agg(t.source_account_id),
                       g_cohort || array_agg(t.cohort), g_points || array_agg(-t.points)
                INTO g_i, g_origin, g_source, g_cohort, g_points
                FROM taken t;
            END IF;

            CONTINUE WHEN NOT (p_credit_lot[i] AND p_credit[i] = ANY (complex));
            moved := 0;
            restores := CASE WHEN (p_metadata[i] ->> 'restores') ~ c_uuid
                             THEN (p_metadata[i] ->> 'restores')::uuid END;
            IF restores IS NOT NULL THEN
                expires := NULL;
                IF p_metadata[i] ? 'lot_expires_at' THEN
                    BEGIN
                        expires := (p_metadata[i] ->> 'lot_expires_at')::timestamptz;
                    EXCEPTION WHEN others THEN
                        expires := NULL;
                    END;
                END IF;
                -- The restored debit's own order of consumption, reversed.
                SELECT CASE WHEN jsonb_typeof(t.metadata -> 'lots') = 'array' THEN
                           ARRAY(SELECT e.v::uuid
                                 FROM jsonb_array_elements_text(t.metadata -> 'lots')
                                      WITH ORDINALITY AS e(v, k)
                                 WHERE e.v ~ c_uuid ORDER BY e.k)
                       ELSE '{}' END
                INTO restores_directed
                FROM transfers t WHERE t.id = restores AND t.ledger <> 0;
                WITH consumed AS (
                    SELECT m.lot_id, -m.points AS points
                    FROM lot_movements m WHERE m.transfer_id = restores AND m.points < 0
                ), given AS (
                    SELECT m.lot_id, sum(m.points) AS points
                    FROM transfers r JOIN lot_movements m ON m.transfer_id = r.id
                    WHERE r.metadata ? 'restores'
                      AND lower(r.metadata ->> 'restores') = restores::text
                      AND r.id <> p_id[i] AND r.ledger <> 0 AND m.points > 0
                    GROUP BY m.lot_id
                ), c AS (
                    SELECT l.id AS lot_id, l.origin_code, l.source_account_id, l.cohort,
                           k.points - coalesce(g.points, 0) AS restorable,
                           sum(k.points - coalesce(g.points, 0)) OVER (
                               ORDER BY coalesce(array_position(restores_directed, l.id), c_last)
                                        DESC, l.earned_at DESC, l."timestamp" DESC, l.id DESC)
                               AS r_end
                    FROM consumed k
                    JOIN lots l ON l.id = k.lot_id AND l.account_id = p_credit[i]
                    LEFT JOIN given g ON g.lot_id = k.lot_id
                    WHERE k.points - coalesce(g.points, 0) > 0
                ), back AS (
                    SELECT c.*, least(c.restorable, p_amount[i] - (c.r_end - c.restorable))
                               AS points
                    FROM c WHERE c.r_end - c.restorable < p_amount[i]
                ), restored AS (
                    UPDATE lots l SET remaining = l.remaining + b.points,
                                      expires_at = coalesce(expires, l.expires_at)
                    FROM back b WHERE l.id = b.lot_id
                ), moves AS (
                    INSERT INTO lot_movements (transfer_id, lot_id, points, business_at, day,
                                               "timestamp")
                    SELECT p_id[i], b.lot_id, b.points, p_business_at[i], p_day[i],
                           p_timestamp[i]
                    FROM back b
                )
                SELECT g_i || array_agg(i), g_origin || array_agg(b.origin_code),
                       g_source || array_agg(b.source_account_id),
                       g_cohort || array_agg(b.cohort), g_points || array_agg(b.points),
                       coalesce(sum(b.points), 0)
                INTO g_i, g_origin, g_source, g_cohort, g_points, moved
                FROM back b;
            ELSIF p_gift[i] THEN
                WITH given AS (
                    SELECT md5(p_id[i]::text || m.lot_id::text)::uuid AS lot_id,
                           -m.points AS points, l.origin_code, l.source_account_id,
                           l.earned_at, l.cohort, l.expires_at, l."timestamp"
                    FROM lot_movements m JOIN lots l ON l.id = m.lot_id
                    WHERE m.transfer_id = p_id[i] AND m.points < 0
                ), made AS (
                    INSERT INTO lots (id, ledger, account_id, origin_code, source_account_id,
                                      amount, remaining, earned_at, cohort, expires_at,
                                      "timestamp")
                    SELECT g.lot_id, p_ledger[i], p_credit[i], g.origin_code,
                           g.source_account_id, g.points, g.points, g.earned_at, g.cohort,
                           g.expires_at, g."timestamp"
                    FROM given g
                ), moves AS (
                    INSERT INTO lot_movements (transfer_id, lot_id, points, business_at, day,
                                               "timestamp")
                    SELECT p_id[i], g.lot_id, g.points, p_business_at[i], p_day[i],
                           p_timestamp[i]
                    FROM given g
                )
                SELECT g_i || array_agg(i), g_origin || array_agg(g.origin_code),
                       g_source || array_agg(g.source_account_id),
                       g_cohort || array_agg(g.cohort), g_points || array_agg(g.points),
                       coalesce(sum(g.points), 0), count(*)
                INTO g_i, g_origin, g_source, g_cohort, g_points, moved, k
                FROM given g;
                lots_created := lots_created + k;
            END IF;

            -- What no earlier lot covers is a lot of its own.
            IF p_amount[i] > moved THEN
                INSERT INTO lots (id, ledger, account_id, origin_code, source_account_id,
                                  amount, remaining, earned_at, cohort, expires_at,
                                  "timestamp")
                VALUES (p_id[i], p_ledger[i], p_credit[i], p_code[i], p_debit[i],
                        p_amount[i] - moved, p_amount[i] - moved, p_business_at[i],
                        date_trunc('month', p_business_at[i] AT TIME ZONE p_zone[i])::date,
                        NULL, p_timestamp[i]);
                INSERT INTO lot_movements (transfer_id, lot_id, points, business_at, day,
                                           "timestamp")
                VALUES (p_id[i], p_id[i], p_amount[i] - moved, p_business_at[i], p_day[i],
                        p_timestamp[i]);
                g_i := g_i || i; g_origin := g_origin || p_code[i];
                g_source := g_source || p_debit[i];
                g_cohort := g_cohort
                    || date_trunc('month', p_business_at[i] AT TIME ZONE p_zone[i])::date;
                g_points := g_points || (p_amount[i] - moved);
                lots_created := lots_created + 1;
            END IF;
        END LOOP;
        -- Settled through the call. A gift's lots keep the earned_at of the
        -- lots they copy, which may be later than the gift: lots_newest is
        -- the newest earned_at of the account's lots, not only of its credits.
        UPDATE accounts a
        SET lots_debited = a.lots_debited + s.debited,
            lots_credited = a.lots_credited + s.credited,
            lots_through = greatest(a.lots_through, s.ts),
            lots_newest = greatest(a.lots_newest,
                                   (SELECT max(l.earned_at) FROM lots l
                                    WHERE l.account_id = a.id AND l.is_open))
        FROM (SELECT m.account, sum(m.debited) AS debited, sum(m.credited) AS credited,
                     max(m.ts) AS ts
              FROM (SELECT u.debit AS account, u.amount AS debited, 0 AS credited, u.ts
                    FROM unnest(p_debit, p_amount, p_timestamp, p_debit_lot)
                         AS u(debit, amount, ts, lot)
                    WHERE u.lot AND u.debit = ANY (complex)
                    UNION ALL
                    SELECT u.credit, 0, u.amount, u.ts
                    FROM unnest(p_credit, p_amount, p_timestamp, p_credit_lot)
                         AS u(credit, amount, ts, lot)
                    WHERE u.lot AND u.credit = ANY (complex)) m
              GROUP BY m.account) s
        WHERE a.id = s.account;
        lots_created := lots_created + settled.lots;
        movements := movements + settled.movements;
    END IF;

    -- 2. The day's sums of the movements recorded here, one upsert.
    IF cardinality(g_i) > 0 THEN
        INSERT INTO lot_daily_movements (ledger, day, code, origin_code, source_account_id,
                                         cohort, points)
        SELECT p_ledger[g.i], p_day[g.i], p_code[g.i], g.origin, g.source, g.cohort,
               sum(g.points)
        FROM unnest(g_i, g_origin, g_source, g_cohort, g_points)
             AS g(i, origin, source, cohort, points)
        GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (ledger, day, code, origin_code, source_account_id, cohort)
        DO UPDATE SET points = lot_daily_movements.points + excluded.points;
    END IF;
    movements := movements + cardinality(g_i);
    PERFORM set_config('ledger.recording', 'off', true);
END $$;
