-- Derived views over the lake's tables. One statement per view; loaded by catalog.py.

-- One row per candidate: its most recent decision, with the candidate's source columns.
-- An expert's answer outranks any rule or model decision of the same candidate.
CREATE OR REPLACE VIEW latest_decisions AS
SELECT c.candidate_id, c.source_id, c.source, c.role, d.decision, d.reason, d.decided_by,
       d.round, d.model_id, d.bar, d.quality, d.priority, d.queued, d.duplicate_of,
       d.agreement, d.decided_at
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY candidate_id
        ORDER BY decided_by = 'expert' DESC, decided_at DESC, round DESC
    ) AS _rank
    FROM decisions
) d
JOIN candidates c USING (candidate_id)
WHERE d._rank = 1;

-- The latest score of each candidate (a candidate is scored again when a round revisits it).
CREATE OR REPLACE VIEW latest_scores AS
SELECT * EXCLUDE (_rank) FROM (
    SELECT *, row_number() OVER (
        PARTITION BY candidate_id ORDER BY round DESC, scored_at DESC
    ) AS _rank
    FROM scores
)
WHERE _rank = 1;

-- The latest version of each annotation (an expert may edit an answer after a pull).
CREATE OR REPLACE VIEW latest_annotations AS
SELECT * EXCLUDE (_rank) FROM (
    SELECT *, row_number() OVER (
        PARTITION BY annotation_id ORDER BY coalesce(updated_at, '') DESC, imported_at DESC
    ) AS _rank
    FROM annotations
)
WHERE _rank = 1;

-- The text each accepted candidate contributes to training: an expert's correction when
-- one exists (the most recent), else the ingested text. A pair (kind 'pair') trains on
-- `prompt` -> `text` (its response); an expert's rewrite of a pair is a candidate of its own.
CREATE OR REPLACE VIEW accepted_texts AS
SELECT l.candidate_id, l.round, l.decided_by,
       coalesce(fix.corrected_text, c.text) AS text,
       fix.corrected_text IS NOT NULL AS corrected,
       coalesce(c.kind, 'text') AS kind, c.prompt
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
LEFT JOIN (
    SELECT candidate_id, arg_max(corrected_text, imported_at) AS corrected_text
    FROM latest_annotations
    WHERE corrected_text IS NOT NULL AND choice = 'accept'
    GROUP BY candidate_id
) fix USING (candidate_id)
WHERE l.decision = 'accept' AND c.role = 'pool';

-- The latest model of each role.
CREATE OR REPLACE VIEW latest_models AS
SELECT * EXCLUDE (_rank) FROM (
    SELECT *, row_number() OVER (PARTITION BY role ORDER BY created_at DESC) AS _rank
    FROM models
)
WHERE _rank = 1;

-- Each annotator's agreement with the experts' consensus, over the candidates it decided.
CREATE OR REPLACE VIEW annotator_agreement AS
SELECT a.annotator, count(*) AS votes, avg((a.choice = l.decision)::DOUBLE) AS agreement
FROM latest_annotations a
JOIN latest_decisions l USING (candidate_id)
WHERE l.decided_by = 'expert' AND a.choice IS NOT NULL
GROUP BY a.annotator
ORDER BY a.annotator;

-- `datawall experiment`: validation bpb per arm at each point of the token budget, over seeds.
CREATE OR REPLACE VIEW experiment_curve_means AS
SELECT experiment_id, arm, tokens_seen, avg(val_bpb) AS val_bpb,
       coalesce(stddev_samp(val_bpb), 0.0) AS val_bpb_std, count(*) AS n_seeds
FROM experiment_curves
GROUP BY experiment_id, arm, tokens_seen;

-- Tokens-to-target: the tokens at which the curated arm's mean curve first reaches the full
-- pool's mean final bpb (linear interpolation between evaluations); NULL when it never does.
CREATE OR REPLACE VIEW experiment_tokens_to_target AS
WITH target AS (
    SELECT experiment_id, avg(final_val_bpb) AS target_bpb, max(budget_tokens) AS budget_tokens
    FROM experiment_runs WHERE arm = 'full' GROUP BY experiment_id
), curve AS (
    SELECT experiment_id, tokens_seen, val_bpb,
           lag(tokens_seen) OVER w AS prev_tokens, lag(val_bpb) OVER w AS prev_bpb
    FROM experiment_curve_means WHERE arm = 'curated'
    WINDOW w AS (PARTITION BY experiment_id ORDER BY tokens_seen)
), hit AS (
    SELECT c.experiment_id, min_by(
        CASE WHEN c.prev_bpb IS NULL OR c.prev_bpb <= c.val_bpb THEN c.tokens_seen::DOUBLE
             ELSE c.prev_tokens + (c.prev_bpb - t.target_bpb) / (c.prev_bpb - c.val_bpb)
                  * (c.tokens_seen - c.prev_tokens) END,
        c.tokens_seen) AS tokens
    FROM curve c JOIN target t USING (experiment_id)
    WHERE c.val_bpb <= t.target_bpb
    GROUP BY c.experiment_id
)
SELECT t.experiment_id, t.target_bpb, t.budget_tokens, h.tokens AS tokens_to_target,
       h.tokens / t.budget_tokens AS ratio
FROM target t LEFT JOIN hit h USING (experiment_id);

-- Per experiment and arm: final validation bpb over seeds (mean, spread), data and epochs.
CREATE OR REPLACE VIEW experiment_summary AS
SELECT experiment_id, arm, count(*) AS seeds, avg(n_docs) AS n_docs,
       avg(arm_tokens) AS arm_tokens, max(budget_tokens) AS budget_tokens,
       avg(tokens_seen) AS tokens_seen, avg(epochs) AS epochs, bool_or(capped) AS capped,
       avg(final_val_bpb) AS bpb_mean, coalesce(stddev_samp(final_val_bpb), 0.0) AS bpb_std,
       min(final_val_bpb) AS bpb_min, max(final_val_bpb) AS bpb_max
FROM experiment_runs
GROUP BY experiment_id, arm;
