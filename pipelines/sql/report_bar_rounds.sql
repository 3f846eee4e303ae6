-- Report figure 3: the bar of every finished round, as stored: on the round's own classifier
-- (bar), on the fixed anchor scale comparable across rounds (bar_anchor), and the previous
-- round's samples under this round's classifier (bar_prev_samples).
SELECT b.round, b.model_id, b.bar, b.bar_anchor, b.bar_prev_samples, b.quantile,
       b.n_samples, b.sample_quality_mean
FROM bars b
WHERE b.round IN (SELECT round FROM rounds)
ORDER BY b.round
