-- Queued hard cases no expert has answered yet, with a gold answer read from the source's
-- other columns (meta) at the JSON path given (?), for the simulated expert. Plain texts only:
-- pairs have their own (pending_pair_gold).
SELECT l.candidate_id, json_extract_string(c.meta, ?) AS gold
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
WHERE l.decision = 'hard' AND l.queued AND coalesce(c.kind, 'text') = 'text'
ORDER BY l.candidate_id
