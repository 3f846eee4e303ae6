"""Scale-out: the per-document work of a round in one process vs on a 2-worker Dask cluster.

What is timed: the two sharded steps of a round, dedup signing (MinHash + LSH band keys of
every candidate) and scoring (heuristics; bits per byte under the current and reference
model; order gain; quality), over a pool of ``--docs`` demo-like texts, from a workspace
whose reference model and bar already exist.

- ``single``: ``scale.workers = 1``: ``dedup.sign_new`` and ``score.score_candidates`` in
  this process, torch on all cores (its default).
- ``dask``: ``scale.workers = 2``: ``pipelines.scale`` plans the shards, starts a
  ``distributed.LocalCluster`` of 2 worker processes (1 torch thread each) and runs one
  Prefect task per shard through ``prefect_dask.DaskTaskRunner``. The cluster start, the
  workers' imports and model loads are inside the timing.

Each repetition copies the prepared workspace, so both modes do the same work from the same
state; repetitions are interleaved (single, dask, dask, single, ...). After each run the
global steps (dedup clustering, routing against the bar) decide every candidate, and the
decisions are compared with the first single-process run's, field by field; scores are
compared as the largest absolute difference (quality included). Wall time and CPU time (this process and its
finished children: the Dask workers are children of their nannies, which are ours) are
printed per run, then the medians and the ratio.

The pool: the demo corpus's pool (clean docstrings and its junk kinds), topped up to
``--docs`` with texts made of 2-4 sentences of random demo documents (seeded).

Run: ``python benchmarks/dask_scale.py [--docs 20000] [--reps 2]``. On a shared machine run
it under ``nice`` and read the load averages it prints beside the times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# a loaded machine can take longer than the default 20 s to start the ephemeral API
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from pipelines import dedup, modelling, route, scale, score  # noqa: E402
from pipelines.catalog import Catalog  # noqa: E402
from pipelines.demo_corpus import build_demo_corpus  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402
from pipelines.settings import Settings, load_settings, save_settings  # noqa: E402

SMALL = {
    "model.d_model": 64,
    "model.n_layers": 2,
    "model.d_state": 16,
    "model.headdim": 16,
    "train.steps": 30,
    "train.batch_size": 8,
    "train.seq_len": 128,
    "train.warmup_steps": 3,
    "route.n_samples": 64,
    "route.sample_bytes": 128,
    "quality.cv_folds": 3,
    "score.max_bytes": 512,
}


def build_pool(out: Path, n_docs: int, seed: int) -> dict[str, Path]:
    paths = build_demo_corpus(out, seed=seed, n_trusted=500, n_validation=100, n_pool=1500)
    rows = []
    for line in paths["pool"].open():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the demo pool's deliberately malformed lines
        if isinstance(row, dict) and isinstance(row.get("text"), str) and row["text"]:
            rows.append(row)
    docs = [json.loads(line)["text"] for line in paths["trusted"].open()] + [
        r["text"] for r in rows if r.get("kind") == "clean"
    ]
    sentences = [s for d in docs for s in re.split(r"(?<=[.!?])\s+", d) if len(s) > 20]
    rng = np.random.default_rng(seed)
    while len(rows) < n_docs:
        picked = rng.choice(len(sentences), size=int(rng.integers(2, 5)), replace=False)
        rows.append({"id": f"mix-{len(rows)}", "text": " ".join(sentences[i] for i in picked)})
    big = out / "pool-big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in rows[:n_docs]))
    return {"trusted": paths["trusted"], "validation": paths["validation"], "pool": big}


def prepare(root: Path, n_docs: int, seed: int) -> Path:
    """Workspace with the pool ingested, the reference model trained and round 1's bar set."""
    home = root / "prepared"
    catalog = Catalog(home).init()
    save_settings(home, Settings().with_overrides(SMALL))
    settings = load_settings(home)
    for role, path in build_pool(root / "data", n_docs, seed).items():
        ingest(catalog, str(path), role=role, id_field="id")
    ref = modelling.ensure_reference(catalog, settings)
    score.model_bar(catalog, settings, catalog.current_round(), ref, ref)
    return home


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(prepared: Path, dest: Path, workers: int) -> dict:
    """Sign and score in a copy of the workspace; then decide with the global steps."""
    shutil.copytree(prepared, dest)
    catalog = Catalog(dest)
    settings = load_settings(dest).with_overrides({"scale.workers": workers})
    round_ = catalog.current_round()
    ref = modelling.latest_model(catalog, "reference")
    bar = score.read_bar(catalog, round_)
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), cpu_seconds()
    signed = scale.sign_sharded(catalog, settings, round_)
    signed += dedup.sign_new(catalog, settings.dedup, round_)
    n = scale.score_sharded(catalog, settings, round_, ref, ref, bar)
    if n is None:
        n = score.score_candidates(catalog, settings, round_, ref, ref, bar)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    dedup.dedup(catalog, settings.dedup, round_)  # global clustering: nothing left to sign
    route.route_round(catalog, settings, round_, bar)
    decisions = catalog.query(
        "SELECT candidate_id, decision, reason, duplicate_of FROM latest_decisions "
        "ORDER BY candidate_id"
    )
    scores = catalog.query(
        "SELECT candidate_id, loss_model, loss_ref, order_gain, quality FROM scores "
        "ORDER BY candidate_id"
    )
    return {
        "wall": wall,
        "cpu": cpu,
        "load": load,
        "signed": signed,
        "scored": n,
        "decisions": decisions,
        "scores": scores,
    }


def n_different(a, b) -> int:
    """Candidates whose (decision, reason, duplicate kept) differ between two runs."""
    rows = {tuple(r.values()) for r in a.to_pylist()} ^ {tuple(r.values()) for r in b.to_pylist()}
    return len({r[0] for r in rows})


def max_diff(a, b) -> float:
    worst = 0.0
    for name in ("loss_model", "loss_ref", "order_gain", "quality"):
        x = a.column(name).to_numpy(zero_copy_only=False).astype(float)
        y = b.column(name).to_numpy(zero_copy_only=False).astype(float)
        both = ~(np.isnan(x) & np.isnan(y))
        worst = max(worst, float(np.max(np.abs(x[both] - y[both]), initial=0.0)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000, help="pool size")
    parser.add_argument("--reps", type=int, default=2, help="runs of each mode, interleaved")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from prefect import flow

    @flow
    def warm_up() -> None:
        """Start Prefect's ephemeral API before anything is timed."""

    with tempfile.TemporaryDirectory(prefix="dask-scale-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        prepared = prepare(root, args.docs, args.seed)
        warm_up()
        n_pool = Catalog(prepared).scalar("SELECT count(*) FROM candidates WHERE role = 'pool'")
        print(
            f"prepared {n_pool} pool candidates in {time.perf_counter() - start:.0f} s; "
            f"{os.cpu_count()} cores; shard {Settings().scale.shard_size} candidates",
            flush=True,
        )
        order = []
        for rep in range(args.reps):
            order += ["single", "dask"] if rep % 2 == 0 else ["dask", "single"]
        results: dict[str, list[dict]] = {"single": [], "dask": []}
        baseline = None
        print(f"{'run':<10}{'wall s':>9}{'cpu s':>9}{'load':>7}{'scored':>8}  same decisions")
        for i, mode in enumerate(order):
            res = run(prepared, root / f"run-{i}-{mode}", 1 if mode == "single" else 2)
            if baseline is None:
                baseline = res  # the first run is single-process
            res["same"] = res["decisions"].equals(baseline["decisions"])
            res["n_diff"] = n_different(baseline["decisions"], res["decisions"])
            res["diff"] = max_diff(baseline["scores"], res["scores"])
            results[mode].append(res)
            print(
                f"{mode:<10}{res['wall']:>9.1f}{res['cpu']:>9.1f}{res['load']:>7.2f}"
                f"{res['scored']:>8}  {res['same']} ({res['n_diff']} differ; "
                f"max |score diff| {res['diff']:.2e})",
                flush=True,
            )
            shutil.rmtree(root / f"run-{i}-{mode}")
        med = {m: statistics.median(r["wall"] for r in rs) for m, rs in results.items()}
        cpu = {m: statistics.median(r["cpu"] for r in rs) for m, rs in results.items()}
        print()
        print(f"{'mode':<28}{'median wall s':>14}{'median cpu s':>14}")
        print(f"{'single process (2 threads)':<28}{med['single']:>14.1f}{cpu['single']:>14.1f}")
        print(f"{'dask, 2 workers x 1 thread':<28}{med['dask']:>14.1f}{cpu['dask']:>14.1f}")
        print(f"speed ratio single / dask (wall): {med['single'] / med['dask']:.2f}x")
        same = all(r["same"] for rs in results.values() for r in rs)
        worst = max(r["diff"] for rs in results.values() for r in rs)
        print(f"decisions identical in every run: {same}; largest score difference {worst:.2e}")


if __name__ == "__main__":
    main()
