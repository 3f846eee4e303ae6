-- Report figure 2: quality of round $round's scored candidates, by the round's routing
-- decision, and of the model's own samples, binned on the scale the bar is applied on
-- (log-odds when route.scale = 'logit'). bar_x / band_lo / band_hi are the bar and the
-- hard band (bar ± margin) on that scale; the bins span the data and the bar.
WITH params AS (
    SELECT b.bar, b.margin, b.quantile,
           coalesce(json_extract_string(r.settings, '$.route.scale'), 'logit') AS scale
    FROM bars b LEFT JOIN rounds r USING (round)
    WHERE b.round = $round
),
routed AS (  -- the round's own routing; expert answers come later and are not scores
    SELECT candidate_id, arg_max(decision, decided_at) AS decision
    FROM decisions
    WHERE round = $round AND decided_by <> 'expert'
    GROUP BY candidate_id
),
points AS (
    SELECT coalesce(d.decision, 'undecided') AS grp, s.quality
    FROM scores s LEFT JOIN routed d USING (candidate_id)
    WHERE s.round = $round AND s.quality IS NOT NULL AND isfinite(s.quality)
    UNION ALL
    SELECT 'model sample' AS grp, quality
    FROM samples
    WHERE round = $round AND quality IS NOT NULL AND isfinite(quality)
),
scaled AS (
    SELECT grp,
           CASE WHEN p.scale = 'logit'
                THEN ln(greatest(least(quality, 1 - 1e-6), 1e-6)
                        / (1 - greatest(least(quality, 1 - 1e-6), 1e-6)))
                ELSE quality END AS x,
           CASE WHEN p.scale = 'logit'
                THEN ln(greatest(least(p.bar, 1 - 1e-6), 1e-6)
                        / (1 - greatest(least(p.bar, 1 - 1e-6), 1e-6)))
                ELSE p.bar END AS bar_x,
           p.margin, p.scale, p.quantile
    FROM points, params p
),
edges AS (
    SELECT least(min(x), any_value(bar_x)) AS lo, greatest(max(x), any_value(bar_x)) AS hi
    FROM scaled
),
binned AS (
    SELECT grp, least(floor((x - e.lo) / ((e.hi - e.lo + 1e-9) / 30)), 29)::INTEGER AS bin,
           e.lo, (e.hi - e.lo + 1e-9) / 30 AS width, bar_x, margin, scale, quantile
    FROM scaled, edges e
)
SELECT grp, bin, lo + bin * width AS x_lo, lo + (bin + 1) * width AS x_hi, count(*) AS n,
       any_value(bar_x) AS bar_x, any_value(bar_x) - any_value(margin) AS band_lo,
       any_value(bar_x) + any_value(margin) AS band_hi, any_value(scale) AS scale,
       any_value(quantile) AS quantile
FROM binned
GROUP BY grp, bin, lo, width
ORDER BY grp, bin
