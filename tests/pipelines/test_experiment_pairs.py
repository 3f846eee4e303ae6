"""Pairs in the model registry and `datawall experiment`: accepted pairs vs all pairs at equal
tokens, measured on the validation responses' bits per byte.

The catalog rows other steps would write (pair candidates, routing decisions) are written
directly here, so these tests do not depend on pair ingest, scoring or Label Studio."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pipelines import modelling
from pipelines.annotate_pairs import REWRITE_SOURCE
from pipelines.catalog import SCHEMAS, Catalog
from pipelines.experiment import train_arms
from pipelines.experiment_arms import (
    ARMS,
    arm_data,
    count_tokens,
    experiment_kind,
    select_arm_ids,
    validation_examples,
)
from pipelines.settings import Settings, save_settings
from trainer.checkpoint import load_model, read_config
from trainer.data import Pair, render_prefix
from trainer.evaluate import corpus_bits
from trainer.train import data_fingerprint

SETTINGS = {
    "model.d_model": 32,
    "model.n_layers": 1,
    "model.d_state": 8,
    "model.headdim": 16,
    "train.steps": 4,
    "train.batch_size": 4,
    "train.seq_len": 64,
    "train.warmup_steps": 1,
    "train.checkpoint_every": 0,
    "experiment.seeds": 1,
    "experiment.eval_points": 2,
    "experiment.epoch_cap": 1.0,
}
STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def good(i: int) -> Pair:
    return Pair(f"What does function_{i} return?", f"It returns the number {i} plus one.")


def bad(i: int) -> Pair:
    return Pair(f"What does helper_{i} do?", "dunno lol " * (1 + i % 3))


def write_candidates(
    catalog: Catalog, role: str, examples: list, key: str, source: str | None = None
) -> list[str]:
    rows = []
    for i, e in enumerate(examples):
        is_pair = isinstance(e, Pair)
        text = e.response if is_pair else e
        content = json.dumps([e.prompt, text] if is_pair else text)
        digest = hashlib.sha256(content.encode()).hexdigest()
        rows.append(
            {
                "candidate_id": f"{role}-{key}-{i:03d}",
                "content_hash": digest,
                "source": source or f"{key}.jsonl",
                "source_id": str(i),
                "row": i,
                "role": role,
                "text": text,
                "n_chars": len(text),
                "meta": "{}",
                "ingest_id": key,
                "round": 1,
                "ingested_at": STAMP,
                "kind": "pair" if is_pair else "text",
                "prompt": e.prompt if is_pair else None,
            }
        )
    catalog.write("candidates", pa.Table.from_pylist(rows, SCHEMAS["candidates"]), key)
    return [r["candidate_id"] for r in rows]


def write_decisions(catalog: Catalog, decided: dict[str, str], key: str) -> None:
    rows = [
        {
            "candidate_id": cid,
            "round": 1,
            "decision": decision,
            "reason": "above_model_response" if decision == "accept" else "below_model_response",
            "decided_by": "model",
            "model_id": "m",
            "bar": 0.5,
            "quality": 0.5,
            "priority": None,
            "queued": False,
            "duplicate_of": None,
            "agreement": None,
            "decided_at": STAMP,
        }
        for cid, decision in decided.items()
    ]
    catalog.write("decisions", pa.Table.from_pylist(rows, SCHEMAS["decisions"]), key)


VAL_PAIRS = [good(100 + i) for i in range(4)]
REWRITE = Pair(bad(0).prompt, "It does the thing helper_0 was written for.")
TEXTS = [f"Plain text number {i} about the standard library." for i in range(6)]


def make_pair_home(home):
    """A workspace with trusted/validation/pool pairs (and a few texts beside them), half
    of the pool's pairs accepted, half rejected, one expert rewrite."""
    catalog = Catalog(home).init()
    save_settings(catalog.home, Settings().with_overrides(SETTINGS))
    write_candidates(catalog, "trusted", [good(200 + i) for i in range(6)] + TEXTS[:2], "trusted")
    write_candidates(catalog, "validation", VAL_PAIRS + TEXTS[2:3], "validation")
    good_ids = write_candidates(catalog, "pool", [good(i) for i in range(10)], "pool-good")
    bad_ids = write_candidates(catalog, "pool", [bad(i) for i in range(10)], "pool-bad")
    text_ids = write_candidates(catalog, "pool", TEXTS[3:], "pool-text")
    decided = dict.fromkeys(good_ids, "accept") | dict.fromkeys(bad_ids, "reject")
    # an expert's rewrite of a bad answer: a new accepted pool pair, in curated only
    (rewrite_id,) = write_candidates(catalog, "pool", [REWRITE], "rewrites", REWRITE_SOURCE)
    decided[rewrite_id] = "accept"
    write_decisions(catalog, decided | dict.fromkeys(text_ids, "accept"), "round-1")
    return catalog


@pytest.fixture
def pair_home(tmp_path):
    return make_pair_home(tmp_path / "home")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The pair workspace with the four arms of experiment ``exp-pairs`` trained."""
    catalog = make_pair_home(tmp_path_factory.mktemp("pairs") / "home")
    settings = Settings().with_overrides(SETTINGS)
    return catalog, train_arms(catalog, settings, "exp-pairs", [0])


def test_pair_tokens_count_prefix_response_and_specials():
    p = Pair("Why?", "Because é.")
    assert count_tokens([p]) == len(render_prefix("Why?").encode()) + len("Because é.".encode()) + 2
    assert count_tokens(["ab", p]) == 4 + count_tokens([p])


def test_arms_of_a_pair_pool_hold_its_pairs_only(pair_home):
    catalog = pair_home
    assert experiment_kind(catalog) == "pair"
    ids = select_arm_ids(catalog, [0], "pair")
    assert len(ids["curated"]) == 11 and sum("pool-good" in i for i in ids["curated"]) == 10
    assert any("rewrites" in i for i in ids["curated"])  # the expert's rewrite: curated only
    assert len(ids["full"]) == 20 and len(ids["heuristic"]) == 20  # no rule rejects here
    assert not any("rewrites" in i for k in ("full", "heuristic", "random-s0") for i in ids[k])
    # random: pool pairs with at least the accepted pairs' tokens, counted with prefixes
    random = arm_data(catalog, ids, "random", 0)
    curated = arm_data(catalog, ids, "curated", 0)
    assert all(isinstance(p, Pair) for p in random.texts + curated.texts)
    assert curated.tokens == count_tokens([good(i) for i in range(10)] + [REWRITE])
    assert curated.tokens <= random.tokens < curated.tokens + max(count_tokens([p]) for p in
                                                                    random.texts)  # fmt: skip
    text_ids = select_arm_ids(catalog, [0], "text")  # the texts beside them: a text experiment
    assert all("pool-text" in i for v in text_ids.values() for i in v)
    assert sorted(validation_examples(catalog, "pair")) == sorted(VAL_PAIRS)
    assert validation_examples(catalog, "text") == TEXTS[2:3]


def test_accepted_vs_all_pairs_train_at_equal_tokens_on_response_bpb(trained):
    catalog, done = trained
    rows = {r["arm"]: r for r in done}
    assert set(rows) == set(ARMS)
    assert {r["kind"] for r in rows.values()} == {"pair"}
    # no arm is capped at the default budget: accepted and all pairs see the same tokens
    assert len({r["tokens_seen"] for r in rows.values()}) == 1
    assert not any(r["capped"] for r in rows.values())
    assert rows["curated"]["n_docs"] == 11 and rows["full"]["n_docs"] == 20
    ids = json.loads((catalog.home / "experiments" / "exp-pairs" / "arms.json").read_text())
    for arm in ("curated", "full"):
        path = rows[arm]["model_path"]
        config = read_config(path)
        want = [good(i) for i in range(10)]
        want += [bad(i) for i in range(10)] if arm == "full" else [REWRITE]
        examples = arm_data(catalog, ids, arm, 0).texts
        assert sorted(examples) == sorted(want)
        # trained on the arm's pairs as pairs (the prompts are in the run's fingerprint)
        assert config["data_fingerprint"] == data_fingerprint(examples)
        # the run's bpb is the validation responses' bpb given their prompts
        model, _ = load_model(path)
        bits = corpus_bits(model, validation_examples(catalog, "pair"), 64, 4)
        assert rows[arm]["final_val_bpb"] == pytest.approx(bits.response_bpb, rel=1e-6)
        assert config["val_response_bpb"] == pytest.approx(bits.response_bpb, rel=1e-6)
    curve = catalog.query(
        "SELECT arm, max_by(val_bpb, step) AS last FROM experiment_curves "
        "WHERE experiment_id = 'exp-pairs' GROUP BY arm"
    ).to_pylist()
    for c in curve:
        assert c["last"] == pytest.approx(rows[c["arm"]]["final_val_bpb"])
    kinds = catalog.query("SELECT DISTINCT kind FROM experiment_runs").column("kind")
    assert kinds.to_pylist() == ["pair"]


def test_reference_and_round_models_train_on_pairs_and_register_response_bpb(pair_home):
    catalog = pair_home
    settings = Settings().with_overrides(SETTINGS)
    trusted = modelling.trusted_examples(catalog)
    assert sum(isinstance(e, Pair) for e in trusted) == 6 and len(trusted) == 8
    # the quality classifier's positives: every trusted text and response
    want = TEXTS[:2] + [good(200 + i).response for i in range(6)]
    assert sorted(modelling.trusted_texts(catalog)) == sorted(want)
    reference = modelling.ensure_reference(catalog, settings)
    assert read_config(reference.path)["data_fingerprint"] == data_fingerprint(trusted)
    current = modelling.train_round_model(catalog, settings, 1, reference)
    accepted = catalog.query(
        "SELECT text, kind, prompt FROM accepted_texts ORDER BY md5(text), candidate_id"
    ).to_pylist()
    assert sum(r["kind"] == "pair" for r in accepted) == 11  # the rewrite included
    expected = trusted + [Pair(r["prompt"], r["text"]) if r["kind"] == "pair" else r["text"]
                          for r in accepted]  # fmt: skip
    assert read_config(current.path)["data_fingerprint"] == data_fingerprint(expected)
    models = catalog.query(
        "SELECT model_id, val_bpb, val_response_bpb FROM models ORDER BY created_at"
    ).to_pylist()
    assert [m["model_id"] for m in models] == [reference.model_id, current.model_id]
    for m in models:
        assert math.isfinite(m["val_response_bpb"]) and math.isfinite(m["val_bpb"])
    # a rerun registers nothing new; a round with other pairs is another model
    assert modelling.train_round_model(catalog, settings, 1, reference) == current


def test_cli_passes_the_pair_fields_and_prints_accepted_vs_all_pairs(trained, monkeypatch):
    """The one command of the note: its pair options reach the flow, and it prints the
    response bpb of accepted vs all pairs at equal tokens from the experiment's summary."""
    import pipelines.experiment as experiment_module
    from pipelines.cli import app

    catalog, _ = trained
    seen = {}

    def fake_experiment(**kw):
        seen.update(kw)
        return {
            "experiment_id": "exp-pairs",
            "trained": 0,
            "summary": experiment_module.summary(catalog, "exp-pairs"),
            "kind": "pair",
        }

    monkeypatch.setattr(experiment_module, "experiment", fake_experiment)
    args = ["experiment", "--home", str(catalog.home), "--pool", "p.jsonl"]
    args += ["--validation", "v.jsonl", "--trusted", "t.jsonl", "--oracle-field", "gold"]
    args += ["--prompt-field", "prompt", "--response-field", "response"]
    args += ["--rewrite-field", "gold_response"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert seen["prompt_field"] == "prompt" and seen["response_field"] == "response"
    assert seen["rewrite_field"] == "gold_response" and seen["messages_field"] is None
    assert "final validation response bits per byte" in out.output
    runs = {
        r["arm"]: r
        for r in catalog.query(
            "SELECT arm, final_val_bpb, tokens_seen FROM experiment_runs "
            "WHERE experiment_id = 'exp-pairs'"
        ).to_pylist()
    }
    line = next(x for x in out.output.splitlines() if "accepted pairs" in x)
    assert f"{runs['curated']['final_val_bpb']:.4f}" in line
    assert f"{runs['full']['final_val_bpb']:.4f}" in line
    assert f"{runs['full']['tokens_seen']:,}" in line


def test_pair_sources_need_validation_pairs_and_a_preference_oracle(tmp_path):
    from pipelines.experiment import check_sources
    from pipelines.experiment_arms import ExperimentError

    catalog = Catalog(tmp_path / "home").init()
    write_candidates(catalog, "pool", [good(1), good(2)], "pool")
    write_candidates(catalog, "validation", TEXTS[:2], "validation")  # texts only
    with pytest.raises(ExperimentError, match="validation set holds no pairs"):
        check_sources(catalog, None, "text")
    write_candidates(catalog, "validation", VAL_PAIRS, "validation-pairs")
    check_sources(catalog, None, "text")
    with pytest.raises(ExperimentError, match="'candidate' or 'model' or 'both_bad'"):
        check_sources(catalog, "gold", "text")  # no pool row has a preference in 'gold'


@pytest.mark.slow  # a whole round and four runs: about 30 s on an idle core
def test_the_one_command_on_a_pool_of_pairs_only(harness, tmp_path):
    """`datawall experiment` with the pair fields on the demo instruction set (small): ingest
    pairs, a round that scores and routes them against the model's own answers (no text in
    the pool: the text route has nothing to do), simulated experts with rewrites, then the
    four arms on response bpb."""
    from pipelines.cli import app
    from pipelines.demo_instruct import build_instruct_set

    data = build_instruct_set(tmp_path / "data", seed=0, n_trusted=40, n_validation=8, n_pool=40)
    home = tmp_path / "home"
    Catalog(home).init()
    tiny = SETTINGS | {"experiment.rounds": 1, "experiment.epoch_cap": 2.0}
    fast = {"route.n_samples": 16, "route.sample_bytes": 64, "pairs.max_response_bytes": 48}
    fast |= {"quality.cv_folds": 3, "quality.n_features": 4096}
    save_settings(home, Settings().with_overrides(tiny | fast))
    args = ["experiment", "--home", str(home), "--id-field", "id", "--seeds", "1"]
    args += ["--prompt-field", "prompt", "--response-field", "response"]
    args += ["--oracle-field", "gold", "--rewrite-field", "gold_response"]
    for role in ("pool", "validation", "trusted"):
        args += [f"--{role}", str(data[role])]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "accepted pairs" in out.output and "response bits per byte" in out.output
    catalog = Catalog(home)
    assert catalog.scalar("SELECT count(*) FROM candidates WHERE kind = 'text'") == 0
    assert catalog.scalar("SELECT count(*) FROM pair_scores") > 0
    runs = catalog.query("SELECT arm, kind, n_docs, tokens_seen FROM experiment_runs").to_pylist()
    assert sorted(r["arm"] for r in runs) == sorted(ARMS)
    assert {r["kind"] for r in runs} == {"pair"} and len({r["tokens_seen"] for r in runs}) == 1
    n_accepted = catalog.scalar("SELECT count(*) FROM accepted_texts WHERE kind = 'pair'")
    assert next(r for r in runs if r["arm"] == "curated")["n_docs"] == n_accepted
    n_ingested = catalog.scalar(
        "SELECT count(*) FROM candidates WHERE role = 'pool' AND source <> ?", [REWRITE_SOURCE]
    )
    assert next(r for r in runs if r["arm"] == "full")["n_docs"] == n_ingested
