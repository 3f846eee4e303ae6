-- For one ingest batch (its content hashes registered as `batch_hashes`): the stored copy
-- each hash keeps (the earliest one not rejected as an exact duplicate) and its role.
SELECT c.content_hash, min_by(c.candidate_id, c.ingested_at) AS candidate_id,
       min_by(c.role, c.ingested_at) AS role
FROM candidates c
SEMI JOIN batch_hashes b USING (content_hash)
WHERE c.candidate_id NOT IN (
    SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate'
)
GROUP BY c.content_hash
