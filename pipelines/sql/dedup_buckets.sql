-- LSH buckets holding two or more candidates, over every stored signature of one dedup
-- config ($config), exact duplicates left out: the global step of near-duplicate detection.
-- Band keys are salted per band (scoring.dedup.band_keys), so the key alone names a bucket.
-- First only the int64 keys are counted (a lean aggregate DuckDB can spill to disk), then
-- the ids of the few shared keys are collected: memory follows the duplicates, not the pool.
WITH keys AS (
    SELECT candidate_id, unnest(band_keys) AS key
    FROM minhash
    WHERE config = $config
      AND candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')
),
shared AS (
    SELECT key FROM keys GROUP BY key HAVING count(*) > 1
)
SELECT list(DISTINCT candidate_id) AS ids
FROM keys SEMI JOIN shared USING (key)
GROUP BY key
HAVING count(DISTINCT candidate_id) > 1
