-- Puts back in the right class the posted movements dated before their
-- account's last change of class (called by ledger_create_transfers, which
-- counted them in the account's class at posting, p_class): each movement
-- of p_points (signed: a debit is negative) at p_at belongs to the class in
-- force then and follows the account's later changes, so it moves, on its
-- own day, from p_class to the class before the first change after p_at,
-- and at each such change, on that change's day, to the change's class.
-- The last change's class is the account's: the moves net to zero from the
-- last change's day on. Written under the caller's ledger lock.
CREATE OR REPLACE FUNCTION ledger_correct_account_classes(
    p_accounts uuid[], p_points bigint[], p_at timestamptz[], p_class integer[]
) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO ledger_class_moves AS m (ledger, day, account_code, from_class, to_class,
                                         points)
    SELECT y.ledger, y.day, y.code, y.from_class, y.to_class, sum(y.points)
    FROM (
        -- On the movement's day: out of the class it was counted in.
        SELECT a.ledger, (u.at AT TIME ZONE g.time_zone)::date AS day, a.code,
               u.cls AS from_class, f.previous_class AS to_class, u.points
        FROM unnest(p_accounts, p_points, p_at, p_class) AS u(id, points, at, cls)
        JOIN accounts a ON a.id = u.id
        JOIN ledgers g ON g.id = a.ledger
        CROSS JOIN LATERAL (
            SELECT h.previous_class FROM account_class_changes h
            WHERE h.account_id = u.id AND h.valid_from > u.at
            ORDER BY h.valid_from, h.seq LIMIT 1
        ) f
        UNION ALL
        -- At each later change: along with the account's points.
        SELECT a.ledger, (h.valid_from AT TIME ZONE g.time_zone)::date, a.code,
               h.previous_class, h.account_class, u.points
        FROM unnest(p_accounts, p_points, p_at, p_class) AS u(id, points, at, cls)
        JOIN accounts a ON a.id = u.id
        JOIN ledgers g ON g.id = a.ledger
        JOIN account_class_changes h ON h.account_id = u.id AND h.valid_from > u.at
    ) y
    WHERE y.from_class <> y.to_class
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(y.points) <> 0
    ON CONFLICT ON CONSTRAINT ledger_class_moves_pkey
    DO UPDATE SET points = m.points + excluded.points;
END $$;
