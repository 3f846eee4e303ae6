"""Consensus labels, agreement, corrected-text choice and per-annotator agreement."""

import pytest

from annotation.consensus import annotator_agreement, consensus
from annotation.queue import AnnotationRecord


def rec(cid, annotator, choice, corrected=None, rationale=None, updated=None, cancelled=False):
    return AnnotationRecord(
        task_id=None,
        candidate_id=cid,
        annotation_id=f"{cid}-{annotator}",
        annotator=annotator,
        choice=choice,
        corrected_text=corrected,
        rationale=rationale,
        was_cancelled=cancelled,
        lead_time=None,
        created_at=None,
        updated_at=updated,
    )


RECORDS = [
    # c1: 2 accept vs 1 reject; corrections among the majority: "B" twice? no, once each.
    rec("c1", "ann", "accept", corrected="A", updated="2024-01-02T00:00:00Z"),
    rec("c1", "bob", "accept", corrected="B", updated="2024-01-03T00:00:00Z", rationale="ok"),
    rec("c1", "cat", "reject", corrected="C", rationale="boilerplate"),
    # c2: tie → still hard
    rec("c2", "ann", "accept"),
    rec("c2", "bob", "reject"),
    # c3: unanimous reject; the cancelled one does not count
    rec("c3", "ann", "reject"),
    rec("c3", "bob", "reject"),
    rec("c3", "cat", "reject"),
    rec("c3", "dan", "accept", cancelled=True),
    # c4: single vote, one with no decision
    rec("c4", "cat", "accept", corrected="X"),
    rec("c4", "ann", None, rationale="unsure"),
    # c5: most common correction wins over the newest
    rec("c5", "ann", "accept", corrected="old", updated="2024-01-01T00:00:00Z"),
    rec("c5", "bob", "accept", corrected="old", updated="2024-01-01T00:00:00Z"),
    rec("c5", "cat", "accept", corrected="new", updated="2024-06-01T00:00:00Z"),
]


def test_consensus_hand_made_case():
    by_id = {c.candidate_id: c for c in consensus(RECORDS)}
    assert list(by_id) == ["c1", "c2", "c3", "c4", "c5"]

    c1 = by_id["c1"]
    assert (c1.label, c1.n_annotations, c1.n_votes) == ("accept", 3, 3)
    assert c1.agreement == pytest.approx(2 / 3)
    assert c1.corrected_text == "B"  # tie between A and B → the latest; C is a dissenter's
    assert c1.rationales == ("ok", "boilerplate")
    assert c1.annotators == ("ann", "bob", "cat")

    c2 = by_id["c2"]
    assert c2.label is None and c2.agreement == 0.5 and c2.corrected_text is None

    c3 = by_id["c3"]
    assert (c3.label, c3.n_annotations, c3.agreement) == ("reject", 3, 1.0)

    c4 = by_id["c4"]
    assert (c4.label, c4.n_annotations, c4.n_votes, c4.agreement) == ("accept", 2, 1, 1.0)
    assert c4.corrected_text == "X" and c4.rationales == ("unsure",)

    assert by_id["c5"].corrected_text == "old"


def test_tie_on_corrections_without_timestamps_goes_to_the_later_record():
    (c,) = consensus(
        [rec("c", "a", "accept", corrected="P"), rec("c", "b", "accept", corrected="Q")]
    )
    assert c.corrected_text == "Q"


def test_no_votes():
    (c,) = consensus([rec("c", "a", None)])
    assert (c.label, c.n_votes, c.agreement) == (None, 0, 0.0)


def test_annotator_agreement_hand_made_case():
    agreement = annotator_agreement(RECORDS, consensus(RECORDS))
    # Counted: c1 (accept), c3 (reject), c5 (accept); c2 has no label, c4 a single vote.
    # ann: c1 ✓ c3 ✓ c5 ✓ → 1.0; bob: c1 ✓ c3 ✓ c5 ✓ → 1.0; cat: c1 ✗ c3 ✓ c5 ✓ → 2/3.
    assert agreement == pytest.approx({"ann": 1.0, "bob": 1.0, "cat": 2 / 3})
    with_single = annotator_agreement(RECORDS, consensus(RECORDS), min_votes=1)
    assert with_single["cat"] == pytest.approx(3 / 4)  # c4 now counts
