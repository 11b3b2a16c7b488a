-- Opens a batch of accounts in one call; each one's outcome in order. An id
-- repeated in the batch is opened once and answers as a replay after that.
CREATE OR REPLACE FUNCTION ledger_create_accounts(
    p_id uuid[], p_ledger integer[], p_code integer[], p_flags integer[], p_metadata jsonb[]
) RETURNS smallint[] LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    -- Results: positions in ledger.schemas.CreateAccountResult, named as its
    -- members (tests/ledger/test_result_numbers.py holds the two together).
    result_ok constant smallint := 0;
    result_exists constant smallint := 1;
    result_exists_with_different_fields constant smallint := 2;
    result_id_must_not_be_zero constant smallint := 3;
    result_flags_are_mutually_exclusive constant smallint := 4;
    result_ledger_not_found constant smallint := 5;
    v_inserted uuid[];
    v_results smallint[];
BEGIN
    WITH ins AS (
        INSERT INTO accounts (id, ledger, code, flags, metadata, "timestamp")
        SELECT q.id, q.ledger, q.code, q.flags, q.metadata, nextval('account_timestamp_seq')
        FROM (
            SELECT u.*, min(u.i) OVER (PARTITION BY u.id) AS first_i
            FROM unnest(p_id, p_ledger, p_code, p_flags, p_metadata)
                 WITH ORDINALITY AS u(id, ledger, code, flags, metadata, i)
        ) q
        WHERE q.first_i = q.i
          AND q.id <> '00000000-0000-0000-0000-000000000000'
          AND q.flags & 3 <> 3
          AND EXISTS (SELECT 1 FROM ledgers l WHERE l.id = q.ledger)
        ORDER BY q.i
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    SELECT array_agg(id) INTO v_inserted FROM ins;

    -- A new statement, so a row another transaction committed meanwhile is seen.
    SELECT array_agg(
        CASE
            WHEN q.id = '00000000-0000-0000-0000-000000000000' THEN result_id_must_not_be_zero
            WHEN q.flags & 3 = 3 THEN result_flags_are_mutually_exclusive
            WHEN q.first_i = q.i AND q.id = ANY (coalesce(v_inserted, '{}')) THEN result_ok
            WHEN a.id IS NULL THEN result_ledger_not_found
            WHEN a.ledger = q.ledger AND a.code = q.code AND a.flags = q.flags
                 AND coalesce(a.metadata, '{}') = coalesce(q.metadata, '{}') THEN result_exists
            ELSE result_exists_with_different_fields
        END ORDER BY q.i)
    INTO v_results
    FROM (
        SELECT u.*, min(u.i) OVER (PARTITION BY u.id) AS first_i
        FROM unnest(p_id, p_ledger, p_code, p_flags, p_metadata)
             WITH ORDINALITY AS u(id, ledger, code, flags, metadata, i)
    ) q
    LEFT JOIN accounts a ON a.id = q.id;

    RETURN coalesce(v_results, '{}');
END $$;
