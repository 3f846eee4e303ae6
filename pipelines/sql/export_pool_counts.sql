-- Latest decisions of every pool candidate, counted per source, decision and decider.
SELECT source, decision, decided_by, count(*) AS n
FROM latest_decisions
WHERE role = 'pool'
GROUP BY ALL
ORDER BY source, decision, decided_by
