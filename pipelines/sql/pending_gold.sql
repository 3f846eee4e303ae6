-- Queued hard cases no expert has answered yet, with a gold answer read from the source's
-- other columns (meta) at the JSON path given (?), for the simulated expert.
SELECT l.candidate_id, json_extract_string(c.meta, ?) AS gold
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
WHERE l.decision = 'hard' AND l.queued
ORDER BY l.candidate_id
