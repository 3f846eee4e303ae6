-- Candidates (any role, any round) with no signature for dedup config $config yet, exact
-- duplicates left out (their kept copy stands for them).
SELECT c.candidate_id, c.text
FROM candidates c
WHERE c.candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')
  AND c.candidate_id NOT IN (SELECT candidate_id FROM minhash WHERE config = $config)
