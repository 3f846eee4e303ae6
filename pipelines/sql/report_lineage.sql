-- Report figure 5: every registered model in order of creation, with its parent and
-- validation bits per byte (the reference model has no parent).
SELECT model_id, parent_id, role, round, val_bpb, steps, tokens_seen, train_docs, created_at
FROM models
ORDER BY created_at, model_id
