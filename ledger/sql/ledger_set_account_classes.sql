-- Changes the class of accounts (accounts.account_class: a grouping their
-- owner assigns, such as a member's tier; 0 is none) from an instant on,
-- and moves what each holds between the classes' aggregates, so that the
-- daily totals by class plus ledger_class_moves give every class's points
-- at the end of any day (ledger/classes.py reads them).
--
-- The change of an account from class A to B at instant c (p_at; NULL:
-- now, under the lock) moves, from A to B:
--   * on c's day, its posted balance by business time at c;
--   * on its own day, each posted movement dated after c (a change dated in
--     the past: those were counted in A, the class when they posted).
-- c is never before the account's previous change (it is taken as that
-- instant then) nor inside a closed period (taken as just after it: closed
-- days keep their figures). A movement posted later but dated before c is
-- put back by ledger_correct_account_classes, called by the posting path.
-- Changes of one account in one call apply in order; a class equal to the
-- account's is no change. Returns how many accounts changed.
--
-- Under each touched ledger's posting lock (the advisory lock of
-- ledger_create_transfers), taken in ledger order: no batch of the ledger
-- runs between the balance read here and the class written. The moves are
-- summed per key and written once at the end: an upsert per account would
-- update one row many times in one transaction (its version chain grows
-- with every update: quadratic for a large call).
CREATE OR REPLACE FUNCTION ledger_set_account_classes(
    p_accounts uuid[], p_classes integer[], p_at timestamptz[]
) RETURNS integer
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_changed integer := 0;
    v record;
    v_at timestamptz;
    v_day date;
    acct record;
    -- the call's moves, one element per (account, day)
    m_ledger integer[] := '{}'; m_day date[] := '{}'; m_code integer[] := '{}';
    m_from integer[] := '{}'; m_to integer[] := '{}'; m_points numeric[] := '{}';
    x record;
BEGIN
    IF cardinality(p_accounts) IS DISTINCT FROM cardinality(p_classes)
       OR cardinality(p_accounts) IS DISTINCT FROM cardinality(p_at) THEN
        RAISE EXCEPTION 'ledger_set_account_classes: arrays of unequal length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(cardinality(p_accounts), 0) = 0 THEN
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_accounts, p_classes) u(id, cls)
               WHERE u.id IS NULL OR u.cls IS NULL OR u.cls < 0) THEN
        RAISE EXCEPTION 'ledger_set_account_classes: an account or class is missing or negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(1279607879, l.ledger)
    FROM (SELECT DISTINCT a.ledger FROM accounts a WHERE a.id = ANY (p_accounts) ORDER BY 1) l;
    PERFORM set_config('ledger.recording', 'on', true);
    FOR v IN
        SELECT u.id, u.cls, u.at, u.i
        FROM unnest(p_accounts, p_classes, p_at) WITH ORDINALITY AS u(id, cls, at, i)
        ORDER BY u.i
    LOOP
        SELECT a.ledger, a.code, a.account_class, a.class_since,
               a.credits_posted - a.debits_posted AS net, g.time_zone, g.closed_through
        INTO acct
        FROM accounts a JOIN ledgers g ON g.id = a.ledger
        WHERE a.id = v.id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger_set_account_classes: no account %', v.id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        CONTINUE WHEN acct.account_class = v.cls;
        v_at := coalesce(v.at, clock_timestamp());
        v_at := greatest(v_at, acct.class_since, acct.closed_through + interval '1 microsecond');
        v_day := (v_at AT TIME ZONE acct.time_zone)::date;
        IF v.at IS NULL THEN
            -- Now, under the lock: nothing posted is dated after it.
            IF acct.net <> 0 THEN
                m_ledger := m_ledger || acct.ledger; m_day := m_day || v_day;
                m_code := m_code || acct.code; m_from := m_from || acct.account_class;
                m_to := m_to || v.cls; m_points := m_points || acct.net::numeric;
            END IF;
        ELSE
            FOR x IN
                SELECT y.day, sum(y.points) AS points
                FROM (
                    SELECT CASE WHEN coalesce(t.effective_at, t.created_at) <= v_at THEN v_day
                                ELSE (coalesce(t.effective_at, t.created_at)
                                      AT TIME ZONE acct.time_zone)::date END AS day,
                           CASE WHEN t.credit_account_id = v.id THEN t.amount
                                ELSE -t.amount END AS points
                    FROM transfers t
                    WHERE (t.credit_account_id = v.id OR t.debit_account_id = v.id)
                      AND t.ledger <> 0 AND t.flags & 10 = 0
                ) y
                GROUP BY y.day
                HAVING sum(y.points) <> 0
            LOOP
                m_ledger := m_ledger || acct.ledger; m_day := m_day || x.day;
                m_code := m_code || acct.code; m_from := m_from || acct.account_class;
                m_to := m_to || v.cls; m_points := m_points || x.points;
            END LOOP;
        END IF;
        INSERT INTO account_class_changes (account_id, ledger, valid_from, account_class,
                                           previous_class)
        VALUES (v.id, acct.ledger, v_at, v.cls, acct.account_class);
        UPDATE accounts SET account_class = v.cls, class_since = v_at WHERE id = v.id;
        v_changed := v_changed + 1;
    END LOOP;
    INSERT INTO ledger_class_moves AS m (ledger, day, account_code, from_class, to_class,
                                         points)
    SELECT u.ledger, u.day, u.code, u.from_class, u.to_class, sum(u.points)
    FROM unnest(m_ledger, m_day, m_code, m_from, m_to, m_points)
         AS u(ledger, day, code, from_class, to_class, points)
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(u.points) <> 0
    ON CONFLICT ON CONSTRAINT ledger_class_moves_pkey
    DO UPDATE SET points = m.points + excluded.points;
    PERFORM set_config('ledger.recording', 'off', true);
    RETURN v_changed;
END $$;
