-- Report figure 4 (right): agreement of the experts per round that sent the hard cases to
-- them (the round whose routing queued the candidate): candidates with an expert decision,
-- the mean share of votes for the majority label, and how many were unanimous.
WITH queued AS (
    SELECT candidate_id, min(round) AS round
    FROM decisions WHERE queued GROUP BY candidate_id
),
expert AS (
    SELECT candidate_id, arg_max(agreement, decided_at) AS agreement
    FROM decisions WHERE decided_by = 'expert' GROUP BY candidate_id
)
SELECT q.round, count(*) AS candidates, avg(e.agreement) AS mean_agreement,
       avg((e.agreement >= 1.0)::DOUBLE) AS unanimous
FROM expert e JOIN queued q USING (candidate_id)
GROUP BY q.round
ORDER BY q.round
