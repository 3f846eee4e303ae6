-- Queued hard pairs no expert has answered yet, with the gold preference and the gold
-- rewrite read from the source's other columns (meta) at the JSON paths given, and the
-- side of the pairwise task that shows the candidate, for the simulated expert.
SELECT l.candidate_id, json_extract_string(c.meta, $gold) AS gold,
       json_extract_string(c.meta, $rewrite) AS gold_response, t.candidate_side
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
LEFT JOIN (
    SELECT candidate_id, arg_min(candidate_side, pushed_at) AS candidate_side
    FROM pair_tasks GROUP BY candidate_id
) t USING (candidate_id)
WHERE coalesce(c.kind, 'text') = 'pair' AND l.decision = 'hard' AND l.queued
ORDER BY l.candidate_id
