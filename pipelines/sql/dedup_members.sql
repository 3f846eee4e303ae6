-- Role, ingest time and signature of the candidates in LSH buckets (registered as `members`),
-- ordered by who is kept in a cluster: validation, then trusted, then pool; earliest ingested
-- first, then earliest in its source file, then id.
SELECT m.candidate_id, any_value(c.role) AS role, any_value(s.signature) AS signature,
       bool_or(d.candidate_id IS NOT NULL) AS decided
FROM members m
JOIN candidates c USING (candidate_id)
JOIN minhash s ON s.candidate_id = m.candidate_id AND s.config = $config
LEFT JOIN (
    SELECT DISTINCT candidate_id FROM decisions WHERE reason = 'near_duplicate'
) d ON d.candidate_id = m.candidate_id
GROUP BY m.candidate_id
ORDER BY CASE any_value(c.role) WHEN 'validation' THEN 0 WHEN 'trusted' THEN 1 ELSE 2 END,
         min(c.ingested_at), min(c.row), m.candidate_id
