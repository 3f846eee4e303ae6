-- (key, candidate_id) of every LSH bucket holding two or more candidates, over every stored
-- signature of one dedup config ($config), exact duplicates left out: the global step of
-- near-duplicate detection, kept as a temporary table for the queries that follow.
-- Band keys are salted per band (scoring.dedup.band_keys), so the key alone names a bucket.
-- First only the int64 keys are counted (a lean aggregate DuckDB can spill to disk), then
-- the ids of the few shared keys are collected: memory follows the duplicates, not the pool.
CREATE TEMP TABLE bucketed AS
WITH keys AS (
    SELECT candidate_id, unnest(band_keys) AS key
    FROM minhash
    WHERE config = $config
      AND candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')
),
shared AS (
    SELECT key FROM keys GROUP BY key HAVING count(*) > 1
),
members AS (
    SELECT DISTINCT key, candidate_id FROM keys SEMI JOIN shared USING (key)
)
SELECT key, candidate_id
FROM members
WHERE key IN (SELECT key FROM members GROUP BY key HAVING count(*) > 1)
