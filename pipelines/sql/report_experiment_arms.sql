-- Report figure 6 (table): final validation bits per byte of each arm of the latest
-- experiment, mean ± std over seeds, and the tokens each arm's mean curve needed to reach
-- the full arm's final loss (NULL: not reached).
WITH latest AS (
    SELECT experiment_id FROM experiment_runs ORDER BY created_at DESC, experiment_id DESC LIMIT 1
),
runs AS (SELECT r.* FROM experiment_runs r JOIN latest USING (experiment_id)),
final AS (
    SELECT arm, count(*) AS seeds, avg(final_val_bpb) AS final_bpb_mean,
           coalesce(stddev_samp(final_val_bpb), 0) AS final_bpb_std,
           avg(n_docs) AS n_docs, avg(tokens_seen) AS tokens_seen, avg(epochs) AS epochs,
           bool_or(capped) AS capped
    FROM runs GROUP BY arm
),
target AS (SELECT final_bpb_mean AS target FROM final WHERE arm = 'full'),
curve AS (
    SELECT c.arm, c.step, avg(c.tokens_seen) AS tokens_seen, avg(c.val_bpb) AS val_bpb
    FROM experiment_curves c JOIN latest USING (experiment_id)
    GROUP BY c.arm, c.step
),
reach AS (
    SELECT c.arm, min(c.tokens_seen) AS tokens_to_target
    FROM curve c, target t WHERE c.val_bpb <= t.target GROUP BY c.arm
)
SELECT f.arm, f.seeds, f.final_bpb_mean, f.final_bpb_std, t.target AS full_final_bpb,
       r.tokens_to_target, f.n_docs, f.tokens_seen, f.epochs, f.capped
FROM final f LEFT JOIN target t ON true LEFT JOIN reach r USING (arm)
ORDER BY list_position(['curated', 'random', 'full', 'heuristic'], f.arm), f.arm
