-- Pool prompt/response pairs a round (?) still has to score: no decision yet (exact and near
-- duplicates already have one), or a hard pair that was not sent to experts, and not
-- already scored in this round. Not sorted, like to_score.sql: shards are named by their ids.
SELECT c.candidate_id, c.prompt, c.text
FROM candidates c
LEFT JOIN latest_decisions l USING (candidate_id)
WHERE c.role = 'pool' AND coalesce(c.kind, 'text') = 'pair'
  AND (l.decision IS NULL OR (l.decision = 'hard' AND NOT coalesce(l.queued, false)))
  AND c.candidate_id NOT IN (SELECT candidate_id FROM pair_scores WHERE round = ?)
