-- One experiment (?): the per-arm summary with the tokens-to-target on every row.
SELECT s.arm, s.seeds, s.n_docs::BIGINT AS n_docs, s.arm_tokens::BIGINT AS arm_tokens,
       s.budget_tokens, s.tokens_seen::BIGINT AS tokens_seen, round(s.epochs, 2) AS epochs,
       s.capped, s.bpb_mean, s.bpb_std, s.bpb_min, s.bpb_max,
       t.target_bpb AS full_final_bpb, t.tokens_to_target, t.ratio AS tokens_to_target_ratio
FROM experiment_summary s
LEFT JOIN experiment_tokens_to_target t USING (experiment_id)
WHERE s.experiment_id = ?
ORDER BY list_position(['curated', 'random', 'full', 'heuristic'], s.arm), s.arm
