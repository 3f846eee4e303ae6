-- Latest decision of every candidate, counted by who decided, what, and why.
SELECT decided_by, decision, reason, count(*) AS n
FROM latest_decisions
GROUP BY ALL
ORDER BY decided_by, decision, n DESC
