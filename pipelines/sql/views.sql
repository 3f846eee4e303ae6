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
-- one exists (the most recent), else the ingested text.
CREATE OR REPLACE VIEW accepted_texts AS
SELECT l.candidate_id, l.round, l.decided_by,
       coalesce(fix.corrected_text, c.text) AS text,
       fix.corrected_text IS NOT NULL AS corrected
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
