"""Benchmark: near-duplicate detection + heuristic rules, datawall vs DataTrove, in one run.

Setup (DataTrove and its English word tokenizer live in their own venv, never in .venv)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install datatrove spacy 'xxhash<4' regex tokenizers nltk orjson
    .venv/bin/python benchmarks/dedup_heuristics.py --sizes 10000 100000 --reps 2 \
        --memory-sizes 10000 100000 1000000

1. **Pool** (untimed): web-like documents of 3-5 sentences (about 300-500 characters)
   drawn from the prose in Python's own documentation (``pipelines.stdlib_text``; no
   download), some split into lines; 10 % are near copies of an earlier document (1-4
   word edits, as the demo's junk) and 5 % are junk for the rules (one sentence repeated,
   menu boilerplate). Written as a ``candidates`` Parquet file (ours) and JSONL (DataTrove).
2. **Ours**, in a child process on a fresh catalog: ``heuristic_signals`` + ``rule_reasons``
   over every document (streamed from Parquet in batches), then the dedup step
   (``pipelines.dedup.dedup``: sign, global DuckDB buckets, verify, cluster, decisions).
3. **DataTrove**, in a child process of ``.venv-bench``: ``GopherRepetitionFilter`` +
   ``GopherQualityFilter`` over every document, then its MinHash dedup in its four stages
   (``MinhashDedupSignature`` → ``MinhashDedupBuckets`` → ``MinhashDedupCluster`` →
   ``MinhashDedupFilter`` writing the kept and the removed documents), default config
   (14 buckets × 8 hashes over word 5-grams), one task, one worker, as ours uses one core.
4. Repetitions interleave ours and DataTrove; the table shows the median of each and the
   ratio. Peak memory is each child's own ``ru_maxrss`` (its children included).
5. **Quality** on the planted pairs whose character-shingle Jaccard similarity is at least
   the threshold (0.8): recall = share of those pairs merged into one cluster (DataTrove:
   one of the two removed; it keeps no pointer to the kept copy); precision = share of
   removed documents that are planted (a near copy, its original, or a menu page, which
   are near copies of one another by construction); for ours also the share whose exact
   similarity to the document kept for it is at least the threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# -- the pool -----------------------------------------------------------------------------
def build_pool(n: int, seed: int, out: Path) -> dict:
    """Write ``pool.parquet`` (candidates schema) and ``pool.jsonl``; return the plan."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.catalog import SCHEMAS
    from pipelines.stdlib_text import SENTENCE_END, read_stdlib_docs

    rng = np.random.default_rng(seed)
    docs, _ = read_stdlib_docs()
    sentences = [s for d in docs for s in SENTENCE_END.split(d.text) if 40 <= len(s) <= 200]
    sentences = np.array(sorted(set(sentences)), dtype=object)
    n_near, n_junk = n // 10, n // 20
    n_base = n - n_near - n_junk
    texts: list[str] = []
    for _ in range(n_base):
        picks = sentences[rng.choice(len(sentences), size=int(rng.integers(3, 6)), replace=False)]
        cut = int(rng.integers(1, len(picks))) if rng.random() < 0.3 else len(picks)
        texts.append(
            " ".join(picks[:cut]) + ("\n" + " ".join(picks[cut:]) if cut < len(picks) else "")
        )
    origin = np.full(n, -1, dtype=np.int64)  # planted copy -> its original
    for k in range(n_near):
        src = int(rng.integers(n_base))
        origin[n_base + k] = src
        texts.append(near_copy(texts[src], rng))
    menu = ["Home | About | Products | Blog | Contact", "Read more >>", "Back to top"]
    is_menu = np.zeros(n, dtype=bool)  # menu pages are near copies of one another too
    for k in range(n_junk):
        if rng.random() < 0.5:
            texts.append(" ".join([str(sentences[int(rng.integers(len(sentences)))])] * 8))
        else:
            texts.append("\n".join(menu[int(i)] for i in rng.integers(0, 3, 12)))
            is_menu[n_base + n_near + k] = True
    # shuffle, keeping the planted links
    perm = rng.permutation(n)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    texts = [texts[int(i)] for i in perm]
    origin = np.where(origin[perm] >= 0, inv[np.maximum(origin[perm], 0)], -1)
    is_menu = is_menu[perm]

    out.mkdir(parents=True, exist_ok=True)
    ids = [f"d{i:07d}" for i in range(n)]
    stamp = pa.array([0] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "candidate_id": ids,
            "content_hash": ids,
            "source": ["bench"] * n,
            "source_id": ids,
            "row": np.arange(n, dtype=np.int64),
            "role": ["pool"] * n,
            "text": texts,
            "n_chars": [len(t) for t in texts],
            "meta": ["{}"] * n,
            "ingest_id": ["bench"] * n,
            "round": np.ones(n, dtype=np.int32),
            "ingested_at": stamp,
        },
        schema=SCHEMAS["candidates"],
    )
    pq.write_table(table, out / "pool.parquet", row_group_size=65536)
    with open(out / "pool.jsonl", "w", encoding="utf-8") as fh:
        for i, t in zip(ids, texts, strict=True):
            fh.write(json.dumps({"id": i, "text": t}) + "\n")
    np.save(out / "origin.npy", origin)
    np.save(out / "menu.npy", is_menu)
    return {"n": n, "near": n_near, "junk": n_junk, "chars": sum(len(t) for t in texts) / n}


def near_copy(text: str, rng) -> str:
    """A near copy: 1-4 word substitutions, insertions or deletions (also used by memory_scale)."""
    words = text.split(" ")
    for _ in range(int(rng.integers(1, 5))):
        op, i = int(rng.integers(3)), int(rng.integers(len(words)))
        other = words[int(rng.integers(len(words)))]
        if op == 0:
            words[i] = other
        elif op == 1 or len(words) < 10:
            words.insert(i, other)
        else:
            del words[i]
    return " ".join(words)


# -- children -----------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def child_ours(pool: Path, work: Path) -> dict:
    import pyarrow.parquet as pq

    from pipelines.catalog import Catalog
    from pipelines.dedup import dedup
    from scoring.config import DedupConfig, HeuristicConfig
    from scoring.heuristics import heuristic_signals, rule_reasons

    shutil.rmtree(work, ignore_errors=True)
    catalog = Catalog(work / "home").init()
    os.link(pool / "pool.parquet", catalog.lake / "candidates" / "pool.parquet")
    cfg = HeuristicConfig()
    start = time.perf_counter()
    n = rejected = 0
    for batch in pq.ParquetFile(pool / "pool.parquet").iter_batches(8192, columns=["text"]):
        reasons = rule_reasons(heuristic_signals(batch.column("text")), cfg)
        n += len(reasons)
        rejected += len(reasons) - reasons.null_count
    heur_s = time.perf_counter() - start
    start = time.perf_counter()
    report = dedup(catalog, DedupConfig(), round_=1)
    dedup_s = time.perf_counter() - start
    pairs = catalog.query(
        "SELECT candidate_id, duplicate_of FROM decisions WHERE reason = 'near_duplicate'"
    )
    pq.write_table(pairs, work / "removed.parquet")
    return {
        "heuristics_s": heur_s,
        "dedup_s": dedup_s,
        "rule_rejects": rejected,
        "removed": report.rejected,
        "buckets": report.buckets,
        "candidate_pairs": report.candidate_pairs,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_datatrove(pool: Path, work: Path) -> dict:
    import logging

    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    logging.disable(logging.INFO)
    shutil.rmtree(work, ignore_errors=True)
    cfg = MinhashConfig()

    def run(name: str, steps: list, tasks: int = 1) -> None:
        LocalPipelineExecutor(
            pipeline=steps,
            tasks=tasks,
            workers=1,
            logging_dir=str(work / "logs" / name),
            skip_completed=False,
        ).run()

    def reader():
        return JsonlReader(str(pool), glob_pattern="pool.jsonl")

    start = time.perf_counter()
    run("gopher", [reader(), GopherRepetitionFilter(), GopherQualityFilter()])
    heur_s = time.perf_counter() - start
    start = time.perf_counter()
    run(
        "signatures",
        [reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)],
    )
    run(
        "buckets",
        [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=cfg)],
        tasks=cfg.num_buckets,
    )
    run("cluster", [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=cfg)])
    run(
        "filter",
        [
            reader(),
            MinhashDedupFilter(
                str(work / "remove"), exclusion_writer=JsonlWriter(str(work / "removed"))
            ),
            JsonlWriter(str(work / "kept")),
        ],
    )
    dedup_s = time.perf_counter() - start
    import gzip

    removed = []
    for path in sorted((work / "removed").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            removed += [json.loads(line)["id"] for line in fh]
    (work / "removed.json").write_text(json.dumps(removed))
    return {
        "heuristics_s": heur_s,
        "dedup_s": dedup_s,
        "removed": len(removed),
        "peak_rss_mb": _peak_rss_mb(),
    }


def spawn(kind: str, python: str, pool: Path, work: Path, log: Path) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--child", kind, str(pool), str(work)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- quality ------------------------------------------------------------------------------
def quality(pool: Path, work_ours: Path, work_dt: Path | None, threshold: float) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    from scoring.dedup import components, shingle_hashes

    texts = pq.read_table(pool / "pool.parquet", columns=["text"]).column("text").to_pylist()
    origin = np.load(pool / "origin.npy")
    n = len(texts)

    def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty(len(a))
        for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            h, c = shingle_hashes([texts[i], texts[j]], 5)
            sa, sb = set(h[: c[0]].tolist()), set(h[c[0] :].tolist())
            out[k] = len(sa & sb) / len(sa | sb)
        return out

    copies = np.flatnonzero(origin >= 0)
    planted = np.load(pool / "menu.npy")  # what a removal may rightly hit
    planted[copies] = True
    planted[origin[copies]] = True
    sims = jaccard(copies, origin[copies])
    true = sims >= threshold
    result = {"planted": len(copies), "planted_above_threshold": int(true.sum())}

    removed = pq.read_table(work_ours / "removed.parquet").to_pydict()
    rem = np.array([int(x[1:]) for x in removed["candidate_id"]], dtype=np.int64)
    kept = np.array([int(x[1:]) for x in removed["duplicate_of"]], dtype=np.int64)
    labels = components(n, rem, kept)
    hit = labels[copies] == labels[origin[copies]]
    result["ours_recall"] = float(hit[true].mean())
    result["ours_precision"] = float(planted[rem].mean()) if len(rem) else 1.0
    result["ours_precision_exact"] = (
        float((jaccard(rem, kept) >= threshold).mean()) if len(rem) else 1.0
    )
    if work_dt is not None:
        gone = np.zeros(n, dtype=bool)
        ids = json.loads((work_dt / "removed.json").read_text())
        gone[[int(x[1:]) for x in ids]] = True
        hit = gone[copies] | gone[origin[copies]]
        result["datatrove_recall"] = float(hit[true].mean())
        result["datatrove_precision"] = float(planted[gone].mean()) if gone.any() else 1.0
    return result


# -- main ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per size (interleaved)")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--bench-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-dedup")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    log = args.work / "children.log"
    args.work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    has_dt = Path(args.bench_python).exists()
    if not has_dt:
        print(f"no {args.bench_python}: DataTrove is skipped (see the setup in this file)")

    rows = []
    for n in args.sizes:
        pool = args.work / f"pool-{n}"
        plan = build_pool(n, args.seed, pool)
        print(
            f"pool {n}: {plan['near']} planted near copies, {plan['junk']} junk, "
            f"{plan['chars']:.0f} chars/doc",
            flush=True,
        )
        ours, theirs = [], []
        for rep in range(args.reps):
            ours.append(spawn("ours", python, pool, args.work / "ours", log))
            if has_dt:
                theirs.append(spawn("datatrove", args.bench_python, pool, args.work / "dt", log))
            print(
                f"  rep {rep + 1}: ours {_total(ours[-1]):.1f} s"
                + (f", datatrove {_total(theirs[-1]):.1f} s" if has_dt else ""),
                flush=True,
            )
        q = quality(pool, args.work / "ours", args.work / "dt" if has_dt else None, 0.8)
        rows.append((n, ours, theirs, q))

    print("\n## Throughput (docs/s, median of interleaved reps; 1 process each)\n")
    print(
        "| docs | ours heuristics | ours dedup | ours total | DataTrove Gopher | DataTrove MinHash | DataTrove total | ratio total |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, ours, theirs, _ in rows:
        o_h, o_d = _med(ours, "heuristics_s"), _med(ours, "dedup_s")
        line = f"| {n:,} | {n / o_h:,.0f} | {n / o_d:,.0f} | {n / (o_h + o_d):,.0f} |"
        if theirs:
            t_h, t_d = _med(theirs, "heuristics_s"), _med(theirs, "dedup_s")
            line += f" {n / t_h:,.0f} | {n / t_d:,.0f} | {n / (t_h + t_d):,.0f} | {(t_h + t_d) / (o_h + o_d):.1f}× |"
        else:
            line += " – | – | – | – |"
        print(line)

    print("\n## Near-duplicates found (planted pairs with Jaccard ≥ 0.8)\n")
    print(
        "| docs | planted pairs ≥ 0.8 | ours recall | ours precision | ours precision (exact J) "
        "| DataTrove recall | DataTrove precision |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, _, theirs, q in rows:
        dt = f"{q['datatrove_recall']:.3f} | {q['datatrove_precision']:.3f}" if theirs else "– | –"
        print(
            f"| {n:,} | {q['planted_above_threshold']:,} | {q['ours_recall']:.3f} | "
            f"{q['ours_precision']:.3f} | {q['ours_precision_exact']:.3f} | {dt} |"
        )

    print("\n## Peak memory (RSS of the child process, MB)\n")
    lines = [
        "| docs | ours | DataTrove | ours s | ours LSH buckets ≥ 2 | ours candidate pairs |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    done = {n: (ours, theirs) for n, ours, theirs, _ in rows}
    for n in args.memory_sizes:
        if n not in done:
            pool = args.work / f"pool-{n}"
            build_pool(n, args.seed, pool)
            done[n] = ([spawn("ours", python, pool, args.work / "ours", log)], [])
            print(f"  memory run {n}: ours {_total(done[n][0][0]):.1f} s", flush=True)
        ours, theirs = done[n]
        dt = f"{max(r['peak_rss_mb'] for r in theirs):,.0f}" if theirs else "–"
        last = ours[-1]
        lines.append(
            f"| {n:,} | {max(r['peak_rss_mb'] for r in ours):,.0f} | {dt} | "
            f"{_total(last):.1f} | {last['buckets']:,} | {last['candidate_pairs']:,} |"
        )
    print("\n".join(lines))


def _total(r: dict) -> float:
    return r["heuristics_s"] + r["dedup_s"]


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        kind, pool_dir, work_dir = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        child = child_ours if kind == "ours" else child_datatrove
        print(json.dumps(child(pool_dir, work_dir)))
    else:
        main()
