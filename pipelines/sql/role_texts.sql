-- Texts of one role (?), exact duplicates left out, in a stable order.
SELECT c.candidate_id, c.text
FROM candidates c
WHERE c.role = ?
  AND c.candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')
ORDER BY c.candidate_id
