import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from scipy.special import ndtr

from scoring.bar import BarSummary, model_level_bar, summarise_bar
from scoring.config import RouteConfig
from scoring.loss import order_gain, shuffle_words
from scoring.route import DECISIONS, OUTPUT_SCHEMA, ROUTE_REASONS, already_learnt, route

BAR = 0.5
# probability scale, binary-exact edges: band is [0.25, 0.75)
CFG = RouteConfig(margin=0.25, budget=2, scale="probability")


def frame(quality, learnability=None, rule_reason=None, ids=None):
    n = len(quality)
    return pa.table(
        {
            "candidate_id": ids or [f"c{i:02d}" for i in range(n)],
            "rule_reason": pa.array(rule_reason or [None] * n, pa.string()),
            "quality": pa.array(quality, pa.float64()),
            "learnability": pa.array(learnability or [0.0] * n, pa.float64()),
        }
    )


def test_every_branch():
    out = route(
        frame(
            quality=[0.9, 0.9, 0.1, 0.5, 0.6],
            rule_reason=["mojibake", None, None, None, None],
            learnability=[0.0, 0.0, 0.0, 1.0, 0.0],
        ),
        BAR,
        dataclasses.replace(CFG, budget=1),
    ).to_pydict()
    assert out["candidate_id"] == ["c00", "c01", "c02", "c03", "c04"]
    assert out["decision"] == ["reject", "accept", "reject", "hard", "hard"]
    assert out["reason"] == ["mojibake", "above_bar", "below_bar", "near_bar", "over_budget"]
    assert out["queued"] == [False, False, False, True, False]
    assert out["priority"][:3] == [None, None, None]
    assert out["priority"][3] == pytest.approx(1.0 * (0.05 + 1.0))
    # uncertainty = 2 Phi(-|d| / (min_sd * margin)), min_sd = 0.5
    assert out["priority"][4] == pytest.approx(2 * ndtr(-0.1 / 0.125) * 0.05)


def test_margin_edges():
    q = [0.75, np.nextafter(0.75, 0), 0.25, np.nextafter(0.25, 0)]
    out = route(frame(q), BAR, dataclasses.replace(CFG, budget=10)).to_pydict()
    assert out["decision"] == ["accept", "hard", "hard", "reject"]
    assert out["reason"] == ["above_bar", "near_bar", "near_bar", "below_bar"]
    # uncertainty at the edge with no spread: 2 Phi(-2)
    assert out["priority"][2] == pytest.approx(2 * ndtr(-2.0) * 0.05)


def test_rule_reason_wins_over_quality():
    out = route(frame([0.99, 0.5], rule_reason=["too_short", "dedup"]), BAR, CFG).to_pydict()
    assert out["decision"] == ["reject", "reject"]
    assert out["reason"] == ["too_short", "dedup"]
    assert out["queued"] == [False, False]


def test_budget_cap_is_exact_and_ranks_by_priority():
    rng = np.random.default_rng(0)
    n = 200
    quality = rng.uniform(0.25, 0.75, n).tolist()  # all hard
    learn = rng.uniform(-1, 2, n).tolist()
    cfg = dataclasses.replace(CFG, budget=17)
    out = route(frame(quality, learn), BAR, cfg).to_pydict()
    queued = np.array(out["queued"])
    assert queued.sum() == 17
    assert set(out["decision"]) == {"hard"}
    prio = np.array(out["priority"])
    assert prio[queued].min() >= prio[~queued].max()
    uncert = 2 * ndtr(-np.abs(np.array(quality) - BAR) / 0.125)
    expected = uncert * (0.05 + np.maximum(learn, 0))
    np.testing.assert_allclose(prio, expected)
    assert [r for r, q in zip(out["reason"], queued, strict=True) if q] == ["near_bar"] * 17
    assert out["reason"].count("over_budget") == n - 17


def test_budget_zero_and_larger_than_pool():
    f = frame([0.5, 0.6, 0.4])
    assert (
        route(f, BAR, dataclasses.replace(CFG, budget=0)).column("queued").to_pylist()
        == [False] * 3
    )
    assert (
        route(f, BAR, dataclasses.replace(CFG, budget=99)).column("queued").to_pylist()
        == [True] * 3
    )


def test_zero_learnability_falls_back_to_uncertainty():
    out = route(frame([0.3, 0.5, 0.7]), BAR, dataclasses.replace(CFG, budget=1)).to_pydict()
    assert out["queued"] == [False, True, False]  # closest to the bar


def test_ties_broken_by_candidate_id_and_deterministic():
    ids = ["b", "d", "a", "c", "e"]
    f = frame([0.5] * 5, ids=ids)
    out = route(f, BAR, dataclasses.replace(CFG, budget=2))
    assert out.column("queued").to_pylist() == [True, False, True, False, False]
    assert out.column("candidate_id").to_pylist() == ids  # input order kept
    # same input in another row order gives the same decisions per candidate
    perm = [4, 2, 0, 3, 1]
    out2 = route(f.take(perm), BAR, dataclasses.replace(CFG, budget=2))
    assert out2.equals(out.take(perm))


def test_null_learnability_counts_as_zero_and_negative_is_clipped():
    f = frame([0.5, 0.5, 0.5], learnability=[None, -3.0, 0.0], ids=["a", "b", "c"])
    prio = route(f, BAR, CFG).column("priority").to_pylist()
    assert prio == pytest.approx([0.05, 0.05, 0.05])


def test_output_schema_and_value_sets():
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 1, 50).tolist()
    rules = [None if x > 0.2 else "too_short" for x in rng.uniform(0, 1, 50)]
    out = route(frame(q, rule_reason=rules), BAR, CFG)
    assert out.schema == OUTPUT_SCHEMA
    assert set(out.column("decision").to_pylist()) <= set(DECISIONS)
    assert set(out.column("reason").to_pylist()) <= set(ROUTE_REASONS) | {"too_short"}
    hard = np.array(out.column("decision").to_pylist()) == "hard"
    assert (np.array(out.column("priority").is_valid().to_pylist()) == hard).all()
    empty = route(frame([]), BAR, CFG)
    assert empty.num_rows == 0 and empty.schema == OUTPUT_SCHEMA


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="missing column.*learnability"):
        route(frame([0.5]).drop_columns(["learnability"]), BAR, CFG)
    with pytest.raises(ValueError, match="quality is null/NaN.*'c00'"):
        route(frame([float("nan")]), BAR, CFG)
    with pytest.raises(ValueError, match="bar must be a finite"):
        route(frame([0.5]), float("nan"), CFG)
    # a rule-rejected candidate needs no quality score
    out = route(frame([None], rule_reason=["too_short"]), BAR, CFG)
    assert out.column("decision").to_pylist() == ["reject"]


def test_route_config_validation():
    assert RouteConfig.from_dict(CFG.to_dict()) == CFG
    assert RouteConfig().bar_quantile == 0.9 and RouteConfig().budget == 50
    with pytest.raises(ValueError, match="margin"):
        RouteConfig(margin=0)
    with pytest.raises(ValueError, match="budget"):
        RouteConfig(budget=-1)
    with pytest.raises(ValueError, match="bar_quantile"):
        RouteConfig(bar_quantile=1.5)
    with pytest.raises(ValueError, match="unknown key.*budgt"):
        RouteConfig.from_dict({"budgt": 3})


def test_model_level_bar_and_summary():
    q = np.arange(101) / 100
    assert model_level_bar(q, 0.9) == pytest.approx(0.9)
    assert model_level_bar([0.2], 0.9) == 0.2
    s = summarise_bar(q, 0.8)
    assert isinstance(s, BarSummary)
    assert (s.quantile, s.n_samples) == (0.8, 101)
    assert (s.bar, s.mean, s.p50, s.p90) == pytest.approx((0.8, 0.5, 0.5, 0.9))
    assert s.to_dict()["n_samples"] == 101
    with pytest.raises(ValueError, match="empty"):
        model_level_bar([], 0.9)
    with pytest.raises(ValueError, match="NaN"):
        model_level_bar([0.1, float("nan")], 0.9)
    with pytest.raises(ValueError, match="quantile"):
        model_level_bar([0.1], 1.5)


def test_logit_scale_band_is_symmetric_in_log_odds():
    # bar 0.9 = log-odds 2.197; margin 1 → accept at >= 3.197 (p 0.9607), reject below 1.197
    # (p 0.7680). In probability units a 0.1 band around 0.9 would reach past 1.
    cfg = RouteConfig(margin=1.0, budget=10)
    assert cfg.scale == "logit"
    out = route(frame([0.97, 0.95, 0.80, 0.70, 0.9999999]), 0.9, cfg).to_pydict()
    assert out["decision"] == ["accept", "hard", "hard", "reject", "accept"]
    # the candidate nearest the bar (in log-odds) ranks first
    prio = dict(zip(out["candidate_id"], out["priority"], strict=True))
    assert prio["c01"] > prio["c02"]
    with pytest.raises(ValueError, match="scale"):
        RouteConfig(scale="linear")


def test_noise_with_high_loss_is_not_queued_above_learnable_text():
    # Noise: high loss under both models (learnability ~ 0), right on the bar. Learnable:
    # lower loss, but the current model is much worse on it than the reference.
    table = pa.table(
        {
            "candidate_id": ["noise-1", "noise-2", "learnable-1", "learnable-2"],
            "rule_reason": pa.array([None] * 4, pa.string()),
            "quality": [0.5, 0.52, 0.45, 0.55],
            "learnability": [0.02, -0.01, 0.6, 0.4],
            "loss_model": [7.5, 7.9, 2.6, 2.4],  # raw loss: noise is the "hardest"
        }
    )
    out = route(table, BAR, dataclasses.replace(CFG, budget=2)).to_pydict()
    queued = [c for c, q in zip(out["candidate_id"], out["queued"], strict=True) if q]
    assert queued == ["learnable-1", "learnable-2"]
    prio = dict(zip(out["candidate_id"], out["priority"], strict=True))
    assert min(prio["learnable-1"], prio["learnable-2"]) > max(prio["noise-1"], prio["noise-2"])


def test_ensemble_spread_raises_uncertainty_and_already_learnt_loses_its_gain():
    cfg = RouteConfig(margin=1.0, budget=0)  # logit scale
    table = pa.table(
        {
            "candidate_id": ["agreed", "disputed", "learnt"],
            "rule_reason": pa.array([None] * 3, pa.string()),
            "quality": [0.6, 0.6, 0.6],
            "learnability": [0.5, 0.5, 0.5],
            "quality_sd": [0.0, 2.0, None],
            "already_learnt": [False, False, True],
        }
    )
    prio = route(table, BAR, cfg).column("priority").to_pylist()
    d = np.log(0.6 / 0.4)
    assert prio[0] == pytest.approx(2 * ndtr(-d / 0.5) * 0.55)
    assert prio[1] == pytest.approx(2 * ndtr(-d / 2.0) * 0.55)
    assert prio[1] > prio[0]
    assert prio[2] == pytest.approx(2 * ndtr(-d / 0.5) * 0.05)  # gain is eps only


def test_already_learnt_signal():
    cfg = RouteConfig(learnt_margin=0.5)
    loss = np.array([1.0, 2.0, 3.0, np.nan])
    learn = np.array([0.0, -0.6, 0.3, np.nan])
    np.testing.assert_array_equal(
        already_learnt(loss, learn, sample_loss=1.5, cfg=cfg), [True, True, False, False]
    )


def test_incoherent_text_is_rejected_before_the_bar():
    table = pa.table(
        {
            "candidate_id": ["salad", "prose", "ruled", "unknown"],
            "rule_reason": pa.array([None, None, "too_short", None], pa.string()),
            "quality": [0.99, 0.99, 0.99, 0.99],
            "learnability": [0.0] * 4,
            "order_gain": [0.01, 0.15, 0.0, None],
        }
    )
    out = route(table, BAR, CFG, min_order_gain=0.05).to_pydict()
    assert out["decision"] == ["reject", "accept", "reject", "accept"]
    assert out["reason"] == ["incoherent", "above_bar", "too_short", "above_bar"]
    # without a threshold the signal is ignored
    assert route(table, BAR, CFG).column("reason").to_pylist()[0] == "above_bar"


def test_order_gain_is_the_loss_word_order_saves():
    prose = "the cat sat on the mat and the dog lay by the door of the old house"
    bigrams = set(zip(prose.split(), prose.split()[1:], strict=False))

    class BigramScorer:
        """Loss = share of adjacent word pairs never seen in the prose (a stand-in model)."""

        def bpb(self, texts, **kw):
            out = []
            for t in texts:
                pairs = list(zip(t.split(), t.split()[1:], strict=False))
                out.append(sum(p not in bigrams for p in pairs) / max(len(pairs), 1))
            return np.array(out)

    scorer = BigramScorer()
    salad = shuffle_words(prose)
    texts = [prose, salad]
    gain = order_gain(scorer, texts, scorer.bpb(texts))
    assert gain[0] > 0.5  # the real order is worth a lot
    assert abs(gain[1]) < gain[0]  # reshuffling salad changes little
    assert shuffle_words(prose) == salad  # seeded by the text: deterministic
    assert sorted(salad.split()) == sorted(prose.split())
