-- One line per finished round: the bar, its decisions, and the model it trained.
SELECT r.round, r.model_id AS scored_by, round(r.bar, 4) AS bar, r.n_scored, r.n_accept,
       r.n_reject, r.n_hard, r.n_queued, r.new_model_id, round(r.val_bpb, 4) AS val_bpb,
       round(epoch(r.finished_at) - epoch(r.started_at), 1) AS wall_s
FROM rounds r
ORDER BY r.round
