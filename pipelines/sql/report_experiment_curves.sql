-- Report figure 6: validation bits per byte against tokens seen for each arm of the latest
-- experiment (`datawall experiment`): mean, min and max over seeds at each evaluation step.
WITH latest AS (
    SELECT experiment_id FROM experiment_runs ORDER BY created_at DESC, experiment_id DESC LIMIT 1
)
SELECT c.experiment_id, c.arm, c.step, avg(c.tokens_seen) AS tokens_seen,
       avg(c.val_bpb) AS val_bpb_mean, min(c.val_bpb) AS val_bpb_min,
       max(c.val_bpb) AS val_bpb_max, count(*) AS seeds
FROM experiment_curves c JOIN latest USING (experiment_id)
GROUP BY c.experiment_id, c.arm, c.step
ORDER BY list_position(['curated', 'random', 'full', 'heuristic'], arm), arm, step
