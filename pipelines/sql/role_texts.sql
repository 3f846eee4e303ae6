-- Texts of one role (?), exact and near duplicates left out, ordered by content so that the same
-- texts give the same training run wherever the workspace lives.
SELECT c.candidate_id, c.text
FROM candidates c
WHERE c.role = ?
  AND c.candidate_id NOT IN (
      SELECT candidate_id FROM decisions WHERE reason IN ('exact_duplicate', 'near_duplicate')
  )
ORDER BY c.content_hash, c.candidate_id
