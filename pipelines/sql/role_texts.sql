-- Texts of one role (?), exact and near duplicates left out, ordered by content so that the same
-- texts give the same training run wherever the workspace lives. A pair's `text` is its
-- response and `prompt` its prompt (kind 'pair'); plain text has kind 'text'.
SELECT c.candidate_id, c.text, coalesce(c.kind, 'text') AS kind, c.prompt
FROM candidates c
WHERE c.role = ?
  AND c.candidate_id NOT IN (
      SELECT candidate_id FROM decisions WHERE reason IN ('exact_duplicate', 'near_duplicate')
  )
ORDER BY c.content_hash, c.candidate_id
