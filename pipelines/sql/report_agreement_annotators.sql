-- Report figure 4 (left): each annotator's agreement with the experts' majority label on
-- the hard cases round $round sent to them, over candidates with at least two votes (the
-- annotator's own vote is part of the majority, so this overstates agreement when few
-- annotators answer each task).
WITH votes AS (
    SELECT a.candidate_id, a.annotator, a.choice
    FROM latest_annotations a
    WHERE a.choice IS NOT NULL
      AND a.candidate_id IN (SELECT candidate_id FROM decisions WHERE queued AND round = $round)
),
multi AS (SELECT candidate_id FROM votes GROUP BY candidate_id HAVING count(*) >= 2),
label AS (
    SELECT candidate_id, arg_max(decision, decided_at) AS label
    FROM decisions WHERE decided_by = 'expert' GROUP BY candidate_id
)
SELECT v.annotator, count(*) AS votes, avg((v.choice = l.label)::DOUBLE) AS agreement
FROM votes v JOIN multi USING (candidate_id) JOIN label l USING (candidate_id)
GROUP BY v.annotator
ORDER BY v.annotator
