-- Report figure 6 (table): final validation bits per byte of each arm of the latest
-- experiment, mean ± std over seeds, and tokens-to-target: the tokens the curated arm's
-- mean curve needs to reach the full arm's final loss (view experiment_tokens_to_target;
-- NULL: not reached), with its ratio to the shared budget.
WITH latest AS (
    SELECT experiment_id FROM experiment_runs ORDER BY created_at DESC, experiment_id DESC LIMIT 1
)
SELECT s.experiment_id, s.arm, s.seeds, s.bpb_mean AS final_bpb_mean,
       s.bpb_std AS final_bpb_std, s.bpb_min AS final_bpb_min, s.bpb_max AS final_bpb_max,
       t.target_bpb AS full_final_bpb,
       CASE WHEN s.arm = 'curated' THEN t.tokens_to_target END AS tokens_to_target,
       CASE WHEN s.arm = 'curated' THEN t.ratio END AS ratio_to_budget,
       s.n_docs, s.budget_tokens, s.tokens_seen, s.epochs, s.capped
FROM experiment_summary s
JOIN latest USING (experiment_id)
LEFT JOIN experiment_tokens_to_target t USING (experiment_id)
ORDER BY list_position(['curated', 'random', 'full', 'heuristic'], s.arm), s.arm
