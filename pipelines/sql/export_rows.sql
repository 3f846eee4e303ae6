-- Accepted candidates with their provenance: the rows every export format writes. A pair
-- (kind = 'pair') has its prompt beside the response in text.
SELECT a.candidate_id, a.text, a.corrected, coalesce(a.kind, 'text') AS kind, a.prompt,
       c.source, c.source_id,
       l.round, l.decided_by, l.reason, s.model_id, l.bar,
       s.quality, s.loss_model, s.loss_ref, s.learnability
FROM accepted_texts a
JOIN candidates c USING (candidate_id)
JOIN latest_decisions l USING (candidate_id)
LEFT JOIN latest_scores s USING (candidate_id)
