-- ledger_create_accounts as revision 0001_ledger defined it,
-- until 0015_named_ledger_results. Never edit it: ledger/sql/README.md says why.
-- Result codes: 0 ok, 1 exists, 2 exists_with_different_fields,
-- 3 id_must_not_be_zero, 4 flags_are_mutually_exclusive, 5 ledger_not_found.
CREATE OR REPLACE FUNCTION ledger_create_accounts(
    p_id uuid[], p_ledger integer[], p_code integer[], p_flags integer[], p_metadata jsonb[]
) RETURNS smallint[] LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
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
            WHEN q.id = '00000000-0000-0000-0000-000000000000' THEN 3
            WHEN q.flags & 3 = 3 THEN 4
            WHEN q.first_i = q.i AND q.id = ANY (coalesce(v_inserted, '{}')) THEN 0
            WHEN a.id IS NULL THEN 5
            WHEN a.ledger = q.ledger AND a.code = q.code AND a.flags = q.flags
                 AND coalesce(a.metadata, '{}') = coalesce(q.metadata, '{}') THEN 1
            ELSE 2
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
