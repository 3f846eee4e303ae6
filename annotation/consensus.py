"""Consensus over several annotators per candidate, and each annotator's agreement with it.

Per candidate (non-cancelled records only):
1. Votes are the records with a choice; ``label`` is the choice with the most votes, or None
   on a tie or without votes (the candidate stays hard).
2. ``agreement`` = votes for the top choice / all votes (0.5 on a two-way tie, 1.0 unanimous).
3. ``corrected_text``: among annotators who voted for ``label``, the most common correction;
   a tie goes to the text whose latest annotation (``updated_at``, else ``created_at``) is newest.
4. ``rationales``: every non-empty rationale, majority or not (dissent explains hard cases).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from annotation.queue import AnnotationRecord


@dataclass(frozen=True)
class Consensus:
    candidate_id: str
    label: str | None
    n_annotations: int
    n_votes: int
    agreement: float
    corrected_text: str | None
    rationales: tuple[str, ...]
    annotators: tuple[str, ...]


def consensus(records: Iterable[AnnotationRecord]) -> list[Consensus]:
    """One :class:`Consensus` per candidate, in order of first appearance."""
    by_candidate: dict[str, list[tuple[int, AnnotationRecord]]] = defaultdict(list)
    for order, rec in enumerate(records):
        if not rec.was_cancelled:
            by_candidate[rec.candidate_id].append((order, rec))
    return [_one(cid, recs) for cid, recs in by_candidate.items()]


def _one(candidate_id: str, recs: list[tuple[int, AnnotationRecord]]) -> Consensus:
    votes = Counter(r.choice for _, r in recs if r.choice is not None)
    n_votes = sum(votes.values())
    label, agreement = None, 0.0
    if votes:
        ranked = votes.most_common()
        agreement = ranked[0][1] / n_votes
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            label = ranked[0][0]
    corrected = None
    if label is not None:
        corrected = _pick_correction([(o, r) for o, r in recs if r.choice == label])
    return Consensus(
        candidate_id=candidate_id,
        label=label,
        n_annotations=len(recs),
        n_votes=n_votes,
        agreement=agreement,
        corrected_text=corrected,
        rationales=tuple(r.rationale for _, r in recs if r.rationale),
        annotators=tuple(dict.fromkeys(r.annotator for _, r in recs)),
    )


def _pick_correction(recs: list[tuple[int, AnnotationRecord]]) -> str | None:
    counts: Counter[str] = Counter()
    latest: dict[str, tuple[datetime, int]] = {}
    for order, rec in recs:
        if rec.corrected_text is None:
            continue
        counts[rec.corrected_text] += 1
        key = (_timestamp(rec), order)
        latest[rec.corrected_text] = max(latest.get(rec.corrected_text, key), key)
    if not counts:
        return None
    top = max(counts.values())
    return max((t for t, c in counts.items() if c == top), key=lambda t: latest[t])


def _timestamp(rec: AnnotationRecord) -> datetime:
    """``updated_at`` (else ``created_at``); naive means UTC; none or unparsable → the oldest."""
    for value in (rec.updated_at, rec.created_at):
        if value:
            try:
                ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def annotator_agreement(
    records: Iterable[AnnotationRecord],
    consensus: Iterable[Consensus],
    *,
    min_votes: int = 2,
) -> dict[str, float]:
    """Per annotator: share of their votes that match the consensus label.

    Counts only candidates with a label and at least ``min_votes`` votes (with one vote the
    annotator agrees with themself). The annotator's own vote is part of the consensus, so
    with few annotators per task this overstates agreement. Annotators with no counted votes
    are left out.
    """
    labels = {c.candidate_id: c.label for c in consensus if c.label and c.n_votes >= min_votes}
    agree: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for rec in records:
        if rec.was_cancelled or rec.choice is None or rec.candidate_id not in labels:
            continue
        total[rec.annotator] += 1
        agree[rec.annotator] += rec.choice == labels[rec.candidate_id]
    return {a: agree[a] / n for a, n in sorted(total.items())}
