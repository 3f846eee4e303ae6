-- Hard cases sent to experts and still unanswered, with what the task shows; of one round
-- ($round), or of every round when $round is NULL. Plain texts only (pairs: queued_pairs).
SELECT l.candidate_id, c.text, s.quality, l.bar, s.learnability, s.loss_model, s.loss_ref,
       l.round, l.reason, l.priority
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
JOIN latest_scores s USING (candidate_id)
WHERE ($round IS NULL OR l.round = $round) AND l.decision = 'hard' AND l.queued
  AND coalesce(c.kind, 'text') = 'text'
ORDER BY l.priority DESC, l.candidate_id
