-- Per round: hard cases sent to experts, answered, and still waiting.
SELECT q.round,
       count(*) AS queued,
       count(*) FILTER (WHERE l.decided_by = 'expert') AS answered,
       count(*) FILTER (WHERE l.decided_by <> 'expert') AS waiting,
       (SELECT count(*) FROM latest_annotations a WHERE a.round >= q.round) AS annotations_since
FROM (SELECT DISTINCT candidate_id, round FROM decisions WHERE queued) q
JOIN latest_decisions l USING (candidate_id)
GROUP BY q.round
ORDER BY q.round
