-- Hard prompt/response pairs queued for experts and not answered yet, with what their blind
-- pairwise task shows: the prompt, the candidate's response, the model's own response, and
-- the score gap behind the model's guess. A pair pushed before keeps the side and the model
-- response recorded in pair_tasks. Of one round ($round), or of every round when NULL.
WITH ps AS (
    SELECT * EXCLUDE (_rank) FROM (
        SELECT *, row_number() OVER (
            PARTITION BY candidate_id ORDER BY round DESC, scored_at DESC
        ) AS _rank
        FROM pair_scores
    ) WHERE _rank = 1
), pt AS (
    SELECT * EXCLUDE (_rank) FROM (
        SELECT *, row_number() OVER (
            PARTITION BY candidate_id ORDER BY pushed_at, round
        ) AS _rank
        FROM pair_tasks
    ) WHERE _rank = 1
)
SELECT l.candidate_id, coalesce(pt.round, l.round) AS round, c.prompt, c.text AS response,
       coalesce(pt.model_response, ps.model_response) AS model_response, ps.gap,
       coalesce(pt.model_id, ps.model_id) AS model_id, pt.candidate_side, l.priority
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
LEFT JOIN ps USING (candidate_id)
LEFT JOIN pt USING (candidate_id)
WHERE coalesce(c.kind, 'text') = 'pair' AND l.decision = 'hard' AND l.queued
  AND ($round IS NULL OR l.round = $round)
ORDER BY l.priority DESC NULLS LAST, l.candidate_id
