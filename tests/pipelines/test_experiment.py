"""`datawall experiment`: four arms at one token budget, epochs capped, resume, SQL summary."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pipelines.catalog import SCHEMAS, Catalog
from pipelines.cli import app
from pipelines.experiment import experiment, plan_run, run_key
from pipelines.experiment_arms import ARMS, ExperimentError, arm_data, random_sample
from pipelines.ingest import ingest
from pipelines.settings import Settings, save_settings

TOKENS = 4096  # 16 steps of 4 x 64 tokens
EPOCH_CAP = 0.2  # the curated arm (and random, its size) caps; the whole pool does not


# A one-layer, 32-wide model and a few steps for the loop (as tests/pipelines/conftest.py's
# tiny settings), one round, two seeds, four evaluations per run.
SETTINGS = {
    "model.d_model": 32,
    "model.n_layers": 1,
    "model.d_state": 8,
    "model.headdim": 16,
    "train.steps": 12,
    "train.batch_size": 4,
    "train.seq_len": 64,
    "train.warmup_steps": 2,
    "train.checkpoint_every": 6,
    "route.n_samples": 24,
    "route.sample_bytes": 96,
    "route.budget": 5,
    "route.margin": 30.0,  # every candidate past the rules is hard: the experts decide
    "quality.cv_folds": 3,
    "quality.n_features": 4096,
    "experiment.rounds": 1,
    "experiment.seeds": 2,
    "experiment.eval_points": 4,
}


def make_home(home: Path, sources: dict[str, Path]) -> Path:
    catalog = Catalog(home).init()
    save_settings(home, Settings().with_overrides(SETTINGS))
    for role in ("trusted", "validation", "pool"):
        ingest(catalog, str(sources[role]), role=role, id_field="id")
    return home


def run(home: Path, sources: dict[str, Path], **kw):
    return experiment(
        pool=str(sources["pool"]),
        validation=str(sources["validation"]),
        trusted=str(sources["trusted"]),
        home=str(home),
        id_field="id",
        oracle_field="gold",
        budget=40,
        tokens=TOKENS,
        epoch_cap=EPOCH_CAP,
        **kw,
    )


@pytest.fixture(scope="module")
def done(harness, tmp_path_factory, demo_sources):
    """A finished experiment on the tiny demo corpus: one round, two seeds."""
    home = make_home(tmp_path_factory.mktemp("exp") / "home", demo_sources)
    result = run(home, demo_sources)
    return home, result


def runs(catalog: Catalog, exp_id: str) -> list[dict]:
    return catalog.query(
        "SELECT * FROM experiment_runs WHERE experiment_id = ? ORDER BY arm, seed", [exp_id]
    ).to_pylist()


def test_four_arms_train_at_one_budget_with_epochs_counted_and_capped(done):
    home, result = done
    catalog = Catalog(home)
    rows = runs(catalog, result["experiment_id"])
    assert sorted((r["arm"], r["seed"]) for r in rows) == sorted(
        (a, s) for a in ARMS for s in (0, 1)
    )
    assert {r["budget_tokens"] for r in rows} == {TOKENS}
    by_arm = {(r["arm"], r["seed"]): r for r in rows}
    for r in rows:
        assert r["epochs"] == pytest.approx(r["tokens_seen"] / r["arm_tokens"])
        if r["capped"]:  # stopped at the cap, short of the budget
            assert r["tokens_seen"] < TOKENS
            assert r["tokens_seen"] <= EPOCH_CAP * r["arm_tokens"]
            assert r["epochs"] > EPOCH_CAP - 256 / r["arm_tokens"]  # within one step
        else:
            assert r["tokens_seen"] == TOKENS and r["epochs"] <= EPOCH_CAP
    # the small arms (curated, random of the same size) cap; the whole pool does not
    assert by_arm[("curated", 0)]["capped"] and by_arm[("random", 0)]["capped"]
    assert not by_arm[("full", 0)]["capped"]
    assert by_arm[("full", 0)]["n_docs"] > by_arm[("heuristic", 0)]["n_docs"]
    assert by_arm[("heuristic", 0)]["n_docs"] > by_arm[("curated", 0)]["n_docs"]
    # random: the curated arm's tokens, a different sample per seed
    for seed in (0, 1):
        curated, rand = by_arm[("curated", seed)], by_arm[("random", seed)]
        assert curated["arm_tokens"] <= rand["arm_tokens"] < curated["arm_tokens"] + 3000
    # every run has a validation curve ending at its final bpb
    curves = catalog.query(
        "SELECT arm, seed, max_by(val_bpb, step) AS last, count(*) AS n FROM experiment_curves "
        "WHERE experiment_id = ? GROUP BY ALL",
        [result["experiment_id"]],
    ).to_pylist()
    assert len(curves) == len(rows)
    for c in curves:
        assert c["n"] >= 2
        assert c["last"] == pytest.approx(by_arm[(c["arm"], c["seed"])]["final_val_bpb"])


def test_arms_hold_pool_text_only_and_the_oracle_answered_the_hard_cases(done):
    home, result = done
    catalog = Catalog(home)
    manifest = json.loads(
        (home / "experiments" / result["experiment_id"] / "arms.json").read_text()
    )
    ids = sorted({i for v in manifest.values() for i in v})
    roles = catalog.query(
        "SELECT DISTINCT role FROM candidates WHERE list_contains(?, candidate_id)", [ids]
    ).column("role")
    assert roles.to_pylist() == ["pool"]  # never validation (nor trusted)
    assert manifest["random-s0"] != manifest["random-s1"]
    experts = catalog.scalar("SELECT count(*) FROM decisions WHERE decided_by = 'expert'")
    pending = catalog.scalar(
        "SELECT count(*) FROM latest_decisions WHERE decision = 'hard' AND queued"
    )
    assert experts > 0 and pending == 0
    # the curated arm is what the loop accepted, experts' accepts included
    accepted = catalog.query("SELECT candidate_id FROM accepted_texts").column("candidate_id")
    assert sorted(manifest["curated"]) == sorted(accepted.to_pylist())
    expert_accepts = catalog.query(
        "SELECT candidate_id FROM latest_decisions WHERE decided_by = 'expert' "
        "AND decision = 'accept'"
    ).column("candidate_id")
    assert set(expert_accepts.to_pylist()) <= set(manifest["curated"])


def test_sql_summary_matches_the_runs(done):
    home, result = done
    catalog = Catalog(home)
    rows = runs(catalog, result["experiment_id"])
    summary = {r["arm"]: r for r in result["summary"].to_pylist()}
    assert list(summary) == list(ARMS)
    for arm in ARMS:
        bpb = np.array([r["final_val_bpb"] for r in rows if r["arm"] == arm])
        s = summary[arm]
        assert s["seeds"] == 2
        assert s["bpb_mean"] == pytest.approx(bpb.mean())
        assert s["bpb_std"] == pytest.approx(bpb.std(ddof=1))
        assert (s["bpb_min"], s["bpb_max"]) == pytest.approx((bpb.min(), bpb.max()))
    full = np.mean([r["final_val_bpb"] for r in rows if r["arm"] == "full"])
    assert summary["curated"]["full_final_bpb"] == pytest.approx(full)
    # `datawall sql` sees the same views
    out = CliRunner().invoke(
        app, ["sql", "SELECT arm, seeds FROM experiment_summary ORDER BY arm", "--home", str(home)]
    )
    assert out.exit_code == 0 and "heuristic" in out.output


def test_rerun_skips_finished_runs_and_restarts_a_killed_one(done, demo_sources):
    home, result = done
    catalog = Catalog(home)
    exp_id = result["experiment_id"]
    before = {run_key(exp_id, r["arm"], r["seed"]): r for r in runs(catalog, exp_id)}
    again = run(home, demo_sources)
    assert again["experiment_id"] == exp_id and again["trained"] == 0
    assert catalog.current_round() == 2  # no further round

    # "kill" full/seed 1: its run row and final checkpoint are gone, as if it died mid-way
    key = run_key(exp_id, "full", 1)
    (catalog.table_dir("experiment_runs") / f"{key}.parquet").unlink()
    (catalog.table_dir("experiment_curves") / f"{key}.parquet").unlink()
    shutil.rmtree(home / "experiments" / exp_id / "full-s1")
    third = run(home, demo_sources)
    assert third["trained"] == 1
    after = runs(catalog, exp_id)
    assert len(after) == len(before) == 8  # nothing duplicated
    redone = next(r for r in after if run_key(exp_id, r["arm"], r["seed"]) == key)
    assert redone["final_val_bpb"] == pytest.approx(before[key]["final_val_bpb"], abs=1e-6)
    n_curve = catalog.scalar(
        "SELECT count(*) FROM experiment_curves WHERE experiment_id = ? AND arm = 'full' "
        "AND seed = 1",
        [exp_id],
    )
    assert n_curve == 4  # steps 4, 8 and 12 (eval_every = 16 // 4) and the final 16, once each


# -- units ----------------------------------------------------------------------------------
def _write_hand_made(catalog: Catalog, exp_id: str, curated: list[list[tuple[int, float]]]):
    stamp = datetime.now(UTC)
    runs_rows, curve_rows = [], []
    for seed, final in enumerate((2.0, 2.2)):
        runs_rows.append(
            {
                "experiment_id": exp_id,
                "arm": "full",
                "seed": seed,
                "n_docs": 10,
                "arm_tokens": 1000,
                "budget_tokens": 400,
                "tokens_seen": 400,
                "epochs": 0.4,
                "capped": False,
                "final_val_bpb": final,
                "model_path": "",
                "settings": "{}",
                "created_at": stamp,
            }
        )
    for seed, points in enumerate(curated):
        for step, (tokens, bpb) in enumerate(points, start=1):
            curve_rows.append(
                {
                    "experiment_id": exp_id,
                    "arm": "curated",
                    "seed": seed,
                    "step": step,
                    "tokens_seen": tokens,
                    "val_bpb": bpb,
                }
            )
    schema = SCHEMAS["experiment_runs"]
    catalog.write("experiment_runs", pa.Table.from_pylist(runs_rows, schema), f"{exp_id}-runs")
    curves = pa.Table.from_pylist(curve_rows, SCHEMAS["experiment_curves"])
    catalog.write("experiment_curves", curves, f"{exp_id}-curves")


def test_tokens_to_target_interpolates_the_mean_curated_curve(tmp_path):
    catalog = Catalog(tmp_path).init()
    # full's mean final bpb: 2.1. Curated mean: 3.1 at 100 tokens, 1.9 at 200, 1.5 at 300
    _write_hand_made(
        catalog, "hit", [[(100, 3.0), (200, 1.8), (300, 1.4)], [(100, 3.2), (200, 2.0), (300, 1.6)]]
    )
    # never reaches 2.1; the second evaluation is below 2.1 for one seed only
    _write_hand_made(catalog, "miss", [[(100, 3.0), (200, 2.05)], [(100, 3.2), (200, 2.35)]])
    # already below the target at the first evaluation: that evaluation's tokens
    _write_hand_made(catalog, "early", [[(100, 1.0), (200, 0.9)], [(100, 1.0), (200, 0.9)]])
    rows = {
        r["experiment_id"]: r
        for r in catalog.query("SELECT * FROM experiment_tokens_to_target").to_pylist()
    }
    assert rows["hit"]["target_bpb"] == pytest.approx(2.1)
    assert rows["hit"]["tokens_to_target"] == pytest.approx(100 + 100 * (3.1 - 2.1) / (3.1 - 1.9))
    assert rows["hit"]["ratio"] == pytest.approx(rows["hit"]["tokens_to_target"] / 400)
    assert rows["miss"]["tokens_to_target"] is None and rows["miss"]["ratio"] is None
    assert rows["early"]["tokens_to_target"] == pytest.approx(100)


def test_plan_counts_steps_and_caps_epochs():
    plan = plan_run(10_000, 100_000, 4.0, 256, eval_points=5)
    assert (plan.steps, plan.capped, plan.budget_tokens) == (39, False, 39 * 256)
    assert plan.eval_every == 7
    small = plan_run(10_000, 1_000, 4.0, 256, eval_points=5)  # 4 passes = 4,000 tokens
    assert small.capped and small.steps == 15 and small.steps * 256 <= 4_000
    assert small.eval_every == plan.eval_every  # the same evaluation grid as the other arms
    with pytest.raises(ExperimentError, match="must be > 0"):
        plan_run(0, 1_000, 4.0, 256, 5)
    with pytest.raises(ExperimentError, match="less than one step"):
        plan_run(100, 1_000, 4.0, 256, 5)


def test_random_sample_reaches_the_target_tokens_and_depends_on_the_seed():
    ids = [f"c{i:03d}" for i in range(200)]
    tokens = {c: 10 + i for i, c in enumerate(ids)}
    a, b = random_sample(ids, tokens, 1_000, 0), random_sample(ids, tokens, 1_000, 1)
    for s in (a, b):
        total = sum(tokens[c] for c in s)
        assert 1_000 <= total < 1_000 + 210 and s == sorted(s)
    assert a != b and a == random_sample(ids, tokens, 1_000, 0)


def test_empty_arm_and_bad_options_are_clear_errors(tmp_path, demo_sources):
    with pytest.raises(ExperimentError, match="arm 'curated' is empty"):
        arm_data(Catalog(tmp_path), {"curated": []}, "curated", 0)
    runner = CliRunner()
    args = ["experiment", "--pool", str(demo_sources["pool"])]
    args += ["--validation", str(demo_sources["validation"])]
    args += ["--trusted", str(demo_sources["trusted"]), "--home", str(tmp_path / "h")]
    out = runner.invoke(app, [*args, "--tokens", "0"])
    assert out.exit_code == 2 and "--tokens must be > 0" in out.output


def test_unknown_oracle_field_is_refused_before_any_round(harness, tmp_path, demo_sources):
    home = make_home(tmp_path / "home", demo_sources)
    with pytest.raises(ExperimentError, match="oracle field 'verdict'"):
        experiment(
            pool=str(demo_sources["pool"]),
            validation=str(demo_sources["validation"]),
            trusted=str(demo_sources["trusted"]),
            home=str(home),
            id_field="id",
            oracle_field="verdict",
        )
    assert Catalog(home).current_round() == 1


def test_cli_prints_the_summary_of_a_finished_experiment(done, demo_sources):
    home, result = done
    args = ["experiment", "--home", str(home), "--id-field", "id", "--oracle-field", "gold"]
    for role in ("pool", "validation", "trusted"):
        args += [f"--{role}", str(demo_sources[role])]
    args += ["--budget", "40", "--tokens", str(TOKENS), "--epoch-cap", str(EPOCH_CAP)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert result["experiment_id"] in out.output  # the same experiment: nothing trained again
    assert "heuristic" in out.output and "curated vs random" in out.output
    assert "full pool's final bpb" in out.output
    assert len(runs(Catalog(home), result["experiment_id"])) == 8
