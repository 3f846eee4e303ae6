"""Scale-out on Dask (pipelines/scale.py): a round on a real 2-worker cluster decides exactly
what the single-process round decides, dedup stays global across shards, reruns add nothing.

The cluster is a real ``distributed.LocalCluster`` with worker *processes* (as users run it:
torch holds the GIL, threads would not scale), started by the test and reached through
``--dask-address``; a second test lets ``--workers 2`` start its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from dedup_texts import edit, random_docs
from typer.testing import CliRunner

from pipelines import dedup, modelling, scale
from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.flows import curation_round
from pipelines.ingest import ingest
from pipelines.settings import load_settings, save_settings
from trainer.checkpoint import CONFIG

SHARD = {"score.shard_rows": 40, "scale.shard_size": 40}  # 120 pool texts: 3 score shards


def pair_across_shards(catalog: Catalog, tmp_path: Path) -> tuple[str, str]:
    """Ingest a near-duplicate pair whose members fall in different signing shards."""
    base = random_docs(8, seed=5)
    for i, text in enumerate(base):
        copy = edit(text, 1, seed=i)
        path = tmp_path / f"pair-{i}.jsonl"
        rows = [{"id": f"orig-{i}", "text": text}, {"id": f"copy-{i}", "text": copy}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        ingest(catalog, str(path), role="pool", id_field="id")
        ids = catalog.query(
            "SELECT source_id, candidate_id FROM candidates WHERE source_id IN (?, ?)",
            [f"orig-{i}", f"copy-{i}"],
        ).to_pylist()
        shards = scale.plan_signing(catalog, load_settings(catalog.home).dedup, 40)
        where = {r["source_id"]: _shard_of(shards, r["candidate_id"]) for r in ids}
        if where[f"orig-{i}"] != where[f"copy-{i}"]:
            return f"orig-{i}", f"copy-{i}"
    raise AssertionError("no pair landed in two shards")  # pragma: no cover


def _shard_of(shards: list[scale.Shard], candidate_id: str) -> int:
    return next(s.index for s in shards if s.lo <= candidate_id <= s.hi)


@pytest.fixture
def base_home(harness, tiny_home, tmp_path) -> tuple[Path, tuple[str, str]]:
    """The tiny workspace with small shards and a cross-shard near-duplicate pair."""
    save_settings(tiny_home, load_settings(tiny_home).with_overrides(SHARD))
    pair = pair_across_shards(Catalog(tiny_home), tmp_path)
    return tiny_home, pair


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as c:
        yield c


def copy_home(base: Path, dest: Path, **scale_overrides) -> Path:
    shutil.copytree(base, dest)
    overrides = {f"scale.{k}": v for k, v in scale_overrides.items()}
    if overrides:
        save_settings(dest, load_settings(dest).with_overrides(overrides))
    return dest


def table(catalog: Catalog, sql: str) -> list[dict]:
    return catalog.query(sql).to_pylist()


@pytest.mark.slow
@pytest.mark.integration
def test_two_dask_workers_decide_exactly_as_one_process(base_home, cluster, tmp_path):
    base, (orig, copy) = base_home
    # copies share the reference model: only where the shards run differs
    modelling.ensure_reference(Catalog(base), load_settings(base))
    single = copy_home(base, tmp_path / "single", workers=1)
    dask = copy_home(base, tmp_path / "dask", train_nproc=2)

    one = curation_round(home=str(single))
    result = CliRunner().invoke(
        app,
        ["round", "--home", str(dask), "--dask-address", cluster.scheduler_address],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    a, b = Catalog(single), Catalog(dask)

    # the shards ran on the external cluster's workers, as Prefect tasks
    prefixes = set(cluster.scheduler.task_prefixes)
    assert any(p.startswith("sign_shard_task") for p in prefixes), prefixes
    assert any(p.startswith("score_shard_task") for p in prefixes), prefixes
    assert len(list((dask / "lake" / "minhash").glob("*.parquet"))) > 2

    # same signatures, same decisions (reason, duplicate kept, bar), same scores
    sig = "SELECT candidate_id, signature, band_keys FROM minhash ORDER BY candidate_id"
    assert table(a, sig) == table(b, sig)
    dec = (
        "SELECT candidate_id, round, decision, reason, decided_by, model_id, bar, quality, "
        "queued, duplicate_of FROM decisions ORDER BY candidate_id, decided_by"
    )
    assert table(a, dec) == table(b, dec)
    assert a.scalar("SELECT count(*) FROM decisions WHERE decided_by = 'model'") > 0
    cols = ["loss_model", "loss_ref", "learnability", "quality", "quality_sd", "order_gain"]
    sql = f"SELECT candidate_id, rule_reason, {', '.join(cols)} FROM scores ORDER BY 1"
    sa, sb = a.query(sql), b.query(sql)
    assert sa.num_rows == sb.num_rows > 80
    assert sa.column("candidate_id") == sb.column("candidate_id")
    assert sa.column("rule_reason") == sb.column("rule_reason")
    for name in cols:
        x = sa.column(name).to_numpy(zero_copy_only=False).astype(float)
        y = sb.column(name).to_numpy(zero_copy_only=False).astype(float)
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-6, equal_nan=True, err_msg=name)

    # the near-duplicate pair, signed in two different shards, was found by the global step
    assert dups(b).get(copy) == orig or dups(b).get(orig) == copy

    # the round's model was trained by 2 torchrun processes; the single run's by one
    summary = json.loads(result.stdout)
    trained = b.scalar("SELECT path FROM models WHERE model_id = ?", [summary["new_model_id"]])
    assert json.loads((Path(trained) / CONFIG).read_text())["world_size"] == 2
    assert one["n_accept"] == summary["n_accept"] and one["bar"] == summary["bar"]

    # a rerun of the sharded steps plans nothing and writes nothing
    settings = load_settings(dask).with_overrides({"scale.dask_address": cluster.scheduler_address})
    files = sorted(p.name for p in (dask / "lake").rglob("*.parquet"))
    assert scale.plan_signing(b, settings.dedup, 40) == []
    assert scale.plan_scoring(b, settings, 1) == []
    assert scale.sign_sharded(b, settings, 2) == 0
    assert sorted(p.name for p in (dask / "lake").rglob("*.parquet")) == files


def dups(catalog: Catalog) -> dict[str, str]:
    """source_id of each near-duplicate → source_id of the one kept."""
    rows = catalog.query(
        "SELECT c.source_id, k.source_id AS kept FROM decisions d "
        "JOIN candidates c USING (candidate_id) JOIN candidates k ON k.candidate_id = d.duplicate_of "
        "WHERE d.reason = 'near_duplicate'"
    ).to_pylist()
    return {r["source_id"]: r["kept"] for r in rows}


@pytest.mark.slow
@pytest.mark.integration
def test_workers_option_starts_a_local_cluster_for_dedup(base_home, tmp_path, caplog):
    base, (orig, copy) = base_home
    home = copy_home(base, tmp_path / "local")
    caplog.set_level("INFO", logger="pipelines")
    result = CliRunner().invoke(
        app, ["dedup", "--home", str(home), "--workers", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["signed"] > 40  # more than one shard
    assert dedup.count_unsigned(Catalog(home), load_settings(home).dedup) == 0
    assert "starting a local Dask cluster: 2 worker processes" in caplog.text
    assert dups(Catalog(home)).get(copy) == orig or dups(Catalog(home)).get(orig) == copy
    # again: nothing to sign, nothing new rejected
    again = CliRunner().invoke(app, ["dedup", "--home", str(home), "--workers", "2"])
    report2 = json.loads(again.stdout)
    assert report2["signed"] == 0 and report2["rejected"] == 0
    assert report2["already_rejected"] == report["rejected"]


def test_bad_scale_options_are_refused(tmp_path):
    base = Catalog(tmp_path / "home").init().home
    for args in (["--workers", "0"], ["--workers", "many"], ["--dask-address", "localhost"]):
        result = CliRunner().invoke(app, ["dedup", "--home", str(base), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "scale." in result.output


def test_auto_runs_small_work_in_process():
    from pipelines.config import ScaleConfig

    auto = ScaleConfig()
    assert scale.workers_for(auto, 1) == 0 and scale.workers_for(auto, 0) == 0
    assert 1 <= scale.workers_for(auto, 50) <= 50
    assert scale.workers_for(ScaleConfig(workers=1), 50) == 0
    assert scale.workers_for(ScaleConfig(workers=3), 1) == 3
    assert ScaleConfig.parse_workers("4") == 4 and ScaleConfig.parse_workers("Auto") == "auto"
    with pytest.raises(ValueError, match="scale.workers"):
        ScaleConfig(workers=0)


def test_a_shard_whose_rows_changed_is_refused_and_a_planned_one_is_written_once(tmp_path):
    """Workers check they read the planned rows (keys are digests of the ids)."""
    catalog = Catalog(tmp_path / "home").init()
    texts = random_docs(12, seed=3)
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    ingest(catalog, str(path), role="pool", id_field="id")
    cfg = load_settings(catalog.home).dedup
    shards = scale.plan_signing(catalog, cfg, 5)
    assert [s.rows for s in shards] == [5, 5, 2]
    assert scale.sign_shard(str(catalog.home), cfg, 1, shards[0]) == 5
    assert scale.sign_shard(str(catalog.home), cfg, 1, shards[0]) == 0  # exists: skipped
    more = tmp_path / "b.jsonl"
    more.write_text(
        "".join(
            json.dumps({"id": f"b{i}", "text": t}) + "\n"
            for i, t in enumerate(random_docs(30, seed=4))
        )
    )
    ingest(catalog, str(more), role="pool", id_field="id")  # new ids inside the planned ranges
    with pytest.raises(RuntimeError, match="dedup signing shard 1 .* not the 5 planned"):
        scale.sign_shard(str(catalog.home), cfg, 1, shards[1])
