-- Pool candidates a round (?) still has to score: no decision yet, or a hard case that was
-- not sent to experts (over budget), and not already scored in this round. Plain text only:
-- prompt/response pairs are scored against the model's own answer (pairs_to_score.sql).
-- Not sorted: a sort of every text to score holds or spills the whole pool (1M texts:
-- +340 MB RSS, 3x slower). Shards are named by their ids and a resumed round skips what
-- is already scored, so no order is needed.
SELECT c.candidate_id, c.text
FROM candidates c
LEFT JOIN latest_decisions l USING (candidate_id)
WHERE c.role = 'pool' AND coalesce(c.kind, 'text') = 'text'
  AND (l.decision IS NULL OR (l.decision = 'hard' AND NOT coalesce(l.queued, false)))
  AND c.candidate_id NOT IN (SELECT candidate_id FROM scores WHERE round = ?)
