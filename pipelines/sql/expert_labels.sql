-- Texts with an expert's final word, for the quality classifier: (text, decision). Plain
-- texts only: a pair rejected because the model answers better is not junk text.
SELECT coalesce(a.corrected_text, c.text) AS text, l.decision
FROM latest_decisions l
JOIN candidates c USING (candidate_id)
LEFT JOIN (
    SELECT candidate_id, arg_max(corrected_text, imported_at) AS corrected_text
    FROM latest_annotations WHERE corrected_text IS NOT NULL AND choice = 'accept'
    GROUP BY candidate_id
) a USING (candidate_id)
WHERE l.decided_by = 'expert' AND l.decision IN ('accept', 'reject')
  AND coalesce(c.kind, 'text') = 'text'
ORDER BY c.candidate_id
