-- Settles every lot account of a ledger, under its lock: the accounts
-- moved since the ledger's mark (ledgers.lots_settled_through, a
-- transfer timestamp), found from the tail of transfers after it. With
-- p_if_waiting (a read inside a caller's transaction, which would hold the
-- lock until that transaction ends) the tail is read first without the
-- lock, and the lock taken only when an account of it waits.
CREATE OR REPLACE FUNCTION ledger_settle_ledger_lots(
    p_ledger integer, p_if_waiting boolean DEFAULT false,
    OUT accounts bigint, OUT lots bigint, OUT movements bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    v_mark bigint;
    v_last bigint;
    v_accounts uuid[];
    v_locked boolean := NOT p_if_waiting;
BEGIN
    accounts := 0; lots := 0; movements := 0;
    -- The tail's pages summarised now (only those not yet: a few since the
    -- last run), so that the BRIN index answers for the tail alone.
    PERFORM brin_summarize_new_values('transfers_timestamp_brin');
    LOOP
        IF v_locked THEN
            PERFORM pg_advisory_xact_lock(1279607879, p_ledger);
        END IF;
        SELECT l.lots_settled_through INTO v_mark FROM ledgers l WHERE l.id = p_ledger;
        IF NOT FOUND THEN RETURN; END IF;
        WITH tail AS (
            SELECT t.debit_account_id, t.credit_account_id, t."timestamp" AS ts
            FROM transfers t WHERE t."timestamp" > v_mark AND t.ledger = p_ledger
        )
        SELECT (SELECT max(tail.ts) FROM tail),
               ARRAY(SELECT a.id FROM accounts a
                     WHERE a.id IN (SELECT tail.debit_account_id FROM tail
                                    UNION SELECT tail.credit_account_id FROM tail)
                       AND (a.debits_posted > a.lots_debited
                            OR a.credits_posted > a.lots_credited)
                       AND a.code IN (SELECT c.code FROM ledger_lot_codes c))
        INTO v_last, v_accounts;
        EXIT WHEN v_locked;
        IF cardinality(v_accounts) = 0 THEN RETURN; END IF;
        v_locked := true;
    END LOOP;
    IF v_last IS NULL THEN RETURN; END IF;
    SELECT s.accounts, s.lots, s.movements INTO accounts, lots, movements
    FROM ledger_settle_lots(v_accounts) s;
    UPDATE ledgers SET lots_settled_through = v_last WHERE id = p_ledger;
END $$;
