-- Report figure 1: the decisions made in round $round, by who decided, what, and why.
-- A candidate counts once per decider (its latest decision of that kind in the round).
SELECT decided_by, decision, reason, count(DISTINCT candidate_id) AS n
FROM decisions
WHERE round = $round
GROUP BY ALL
ORDER BY decision, n DESC, reason
