"""What a round records about scoring: the thresholds, calibration, the bar on both scales."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.catalog import Catalog
from pipelines.flows import curation_round

pytestmark = pytest.mark.slow


def test_round_records_thresholds_calibration_and_anchored_bar(harness, tiny_home):
    catalog = Catalog(tiny_home)
    for _ in range(2):
        curation_round(home=str(tiny_home))
    rounds = catalog.query("SELECT * FROM rounds ORDER BY round").to_pylist()
    assert [r["round"] for r in rounds] == [1, 2]
    settings = json.loads(rounds[1]["settings"])
    # every routing threshold and the classifier's calibration settings, as used
    for key in ("bar_quantile", "margin", "min_sd", "learnt_margin", "budget", "scale"):
        assert key in settings["route"]
    assert settings["quality"]["calibration_method"] == "sigmoid"
    for r in rounds:
        for key in ("bar_anchor", "brier", "ece", "brier_raw", "ece_raw"):
            assert r[key] is not None and math.isfinite(r[key]), key
        assert 0.0 <= r["ece"] <= 1.0
    bars = catalog.query("SELECT * FROM bars ORDER BY round").to_pylist()
    # round 1 is the anchor's own round: both scales agree; round 2 is scored by the anchor
    assert bars[0]["anchor_round"] == 1 and bars[0]["bar_anchor"] == bars[0]["bar"]
    assert bars[1]["anchor_round"] == 1 and bars[1]["prev_round"] == 1
    assert bars[1]["bar_prev_samples"] is not None
    assert json.loads(bars[1]["calibration"])["method"] in ("sigmoid", "none")
    # per-candidate model signals the routing used
    scored = catalog.query(
        "SELECT quality_sd, already_learnt FROM scores WHERE rule_reason IS NULL"
    ).to_pylist()
    assert scored and all(s["quality_sd"] >= 0 for s in scored)
    assert all(s["already_learnt"] is not None for s in scored)
