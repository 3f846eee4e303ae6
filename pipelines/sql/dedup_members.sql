-- The candidates in LSH buckets (temporary table `bucketed`), numbered in the order of who is
-- kept in a cluster (`node` 0 first): validation, then trusted, then pool; earliest ingested
-- first, then earliest in its source file, then id. `decided`: already rejected as a near
-- duplicate. Kept as a temporary table: buckets and decisions refer to candidates by node.
CREATE TEMP TABLE members AS
SELECT candidate_id, role, decided,
       (row_number() OVER (ORDER BY keep_order, first_ingested, first_row, candidate_id) - 1)::BIGINT
           AS node
FROM (
    SELECT m.candidate_id, any_value(c.role) AS role,
           CASE any_value(c.role) WHEN 'validation' THEN 0 WHEN 'trusted' THEN 1 ELSE 2 END
               AS keep_order,
           min(c.ingested_at) AS first_ingested, min(c.row) AS first_row,
           bool_or(d.candidate_id IS NOT NULL) AS decided
    FROM (SELECT DISTINCT candidate_id FROM bucketed) m
    JOIN candidates c USING (candidate_id)
    LEFT JOIN (
        SELECT DISTINCT candidate_id FROM decisions WHERE reason = 'near_duplicate'
    ) d ON d.candidate_id = m.candidate_id
    GROUP BY m.candidate_id
)
