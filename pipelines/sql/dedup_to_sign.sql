-- Candidates (any role, any round) with no signature for dedup config $config yet, exact
-- duplicates left out (their kept copy stands for them). A pair is signed on its prompt, a
-- newline and its response: two questions with the same short answer are not duplicates.
SELECT c.candidate_id,
       CASE WHEN coalesce(c.kind, 'text') = 'pair' THEN c.prompt || chr(10) || c.text
            ELSE c.text END AS text
FROM candidates c
WHERE c.candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')
  AND c.candidate_id NOT IN (SELECT candidate_id FROM minhash WHERE config = $config)
