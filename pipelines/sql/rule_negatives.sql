-- Pool texts rejected by a heuristic rule in earlier rounds: extra negatives for the classifier.
SELECT c.text
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
WHERE l.decided_by = 'rule' AND l.decision = 'reject' AND l.reason <> 'exact_duplicate'
ORDER BY hash(c.candidate_id)
LIMIT ?
