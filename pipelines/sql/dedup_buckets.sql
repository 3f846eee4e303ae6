-- LSH buckets holding two or more candidates, over every stored signature of one dedup
-- config ($config), exact duplicates left out: the global step of near-duplicate detection.
-- DuckDB aggregates out of core, so this scales past memory; only colliding ids come back.
WITH keys AS (
    SELECT candidate_id, unnest(band_keys) AS key, generate_subscripts(band_keys, 1) AS band
    FROM minhash
    WHERE config = $config
      AND candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')
)
SELECT list(DISTINCT candidate_id) AS ids
FROM keys
GROUP BY band, key
HAVING count(DISTINCT candidate_id) > 1
