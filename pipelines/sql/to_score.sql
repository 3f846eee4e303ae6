-- Pool candidates a round (?) still has to score: no decision yet, or a hard case that was
-- not sent to experts (over budget), and not already scored in this round.
SELECT c.candidate_id, c.text
FROM candidates c
LEFT JOIN latest_decisions l USING (candidate_id)
WHERE c.role = 'pool'
  AND (l.decision IS NULL OR (l.decision = 'hard' AND NOT coalesce(l.queued, false)))
  AND c.candidate_id NOT IN (SELECT candidate_id FROM scores WHERE round = ?)
ORDER BY c.candidate_id
