-- Mean per-candidate agreement of expert annotations with their majority label.
SELECT avg(top / n) FROM (
    SELECT candidate_id, count(*) AS n, max(votes) AS top
    FROM (
        SELECT candidate_id, choice, count(*) OVER (PARTITION BY candidate_id, choice) AS votes
        FROM latest_annotations WHERE choice IS NOT NULL
    )
    GROUP BY candidate_id
)
