"""Benchmark: peak memory of ingest → dedup → heuristic rules as the pool grows (issue 7).

::

    nice -n 5 .venv/bin/python benchmarks/memory_scale.py --sizes 10000 100000 1000000
    nice -n 5 .venv/bin/python benchmarks/memory_scale.py --pool adversarial --sizes 10000 1000000

1. **Pool** (untimed, streamed to ``pool-KIND-N.jsonl`` in chunks, never held whole): documents of 3-5
   sentences drawn from the prose in Python's own documentation (``pipelines.stdlib_text``,
   no download), some split into lines.

   - ``realistic`` (default): every sentence has 30 % of its words replaced by random words
     of the same prose, so documents are distinct the way web pages are; 5 % are near
     copies (1-4 word edits) of a document among the previous 10,000, 2 % exact copies of
     one, 2 % junk for the rules (one sentence repeated) and 0.5 % navigation-menu pages
     (near copies of one another: boilerplate).
   - ``adversarial``: the pool of ``benchmarks/dedup_heuristics.py``: unedited sentences
     (each reused in ~500 documents at 1M), 10 % near copies of any earlier document, 5 %
     junk of which half are menu pages: the most LSH collisions per document.

2. **Run**, one fresh child process and workspace per size, the real steps a round runs:
   ``pipelines.ingest.ingest`` of the JSONL file (exact duplicates, ids, batches of 10,000),
   ``pipelines.dedup.sign_new`` (MinHash signing), the rest of ``pipelines.dedup.dedup``
   (global DuckDB buckets, verification, clusters, decisions), then the rule step the score
   step runs, ``pipelines.score.rule_scan``: every candidate still to score, streamed from
   the catalog in shards, through ``heuristic_signals`` + ``rule_reasons``.
3. **Measure** per step the peak resident set size (Linux: ``VmHWM``, reset between steps
   by writing 5 to ``/proc/self/clear_refs``; DuckDB runs in the process, so its memory
   counts), the wall and CPU seconds; and overall ``ru_maxrss``. The table shows docs/s
   over the wall time of all steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from dedup_heuristics import near_copy  # the sibling benchmark's near-copy edit (same folder)

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("ingest", "sign", "cluster", "rules")
_CHUNK = 10_000
_MENU = ["Home | About | Products | Blog | Contact", "Read more >>", "Back to top"]


# -- the pool -----------------------------------------------------------------------------
def build_pool(n: int, kind: str, seed: int, path: Path) -> dict:
    """Stream ``n`` documents of ``kind`` to ``path`` (JSONL: id, text); return the counts."""
    import numpy as np

    from pipelines.stdlib_text import SENTENCE_END, read_stdlib_docs

    rng = np.random.default_rng(seed)
    docs, _ = read_stdlib_docs()
    sentences = sorted({s for d in docs for s in SENTENCE_END.split(d.text) if 40 <= len(s) <= 200})
    split = [s.split() for s in sentences]
    vocab = np.array(sorted({w for words in split for w in words}), dtype=object)
    index = {w: i for i, w in enumerate(vocab)}
    words = np.array([index[w] for ws in split for w in ws], dtype=np.int64)  # all sentences
    lengths = np.array([len(ws) for ws in split], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if kind == "realistic":
        rates = {"near": 0.05, "exact": 0.02, "junk": 0.02, "menu": 0.005, "edit": 0.3}
    elif kind == "adversarial":
        rates = {"near": 0.10, "exact": 0.0, "junk": 0.025, "menu": 0.025, "edit": 0.0}
    else:
        raise ValueError(f"unknown pool kind {kind!r}: realistic or adversarial")

    def sentences_of(m: int) -> list[str]:
        """``m`` sentences, ``rates['edit']`` of their words replaced (vectorised)."""
        pick = rng.integers(len(split), size=m)
        size = lengths[pick]
        ends = np.cumsum(size)
        within = np.arange(ends[-1]) - np.repeat(ends - size, size)
        ids = words[np.repeat(starts[pick], size) + within]
        hit = rng.random(len(ids)) < rates["edit"]
        ids[hit] = rng.integers(len(vocab), size=int(hit.sum()))
        text = vocab[ids]
        return [
            " ".join(text[a - k : a]) for a, k in zip(ends.tolist(), size.tolist(), strict=True)
        ]

    counts = dict.fromkeys(("base", "near", "exact", "junk", "menu"), 0)
    recent: deque[str] = deque(maxlen=10_000)
    every: list[str] = []  # adversarial: copies of any earlier document, as the old pool
    edges = np.cumsum([rates["near"], rates["exact"], rates["junk"], rates["menu"]])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for lo in range(0, n, _CHUNK):
            m = min(_CHUNK, n - lo)
            what = np.searchsorted(edges, rng.random(m), side="right")  # 0 near .. 3 menu, 4 base
            per_doc = rng.integers(3, 6, size=m)
            pieces = iter(sentences_of(int(per_doc.sum())))
            cuts = rng.random(m)
            lines = []
            for k in range(m):
                picks = [next(pieces) for _ in range(int(per_doc[k]))]
                pool = every if kind == "adversarial" else recent
                w = int(what[k]) if pool else 4
                if w == 0:
                    text, name = near_copy(pool[int(rng.integers(len(pool)))], rng), "near"
                elif w == 1:
                    text, name = pool[int(rng.integers(len(pool)))], "exact"
                elif w == 2:
                    text, name = " ".join([picks[0]] * 8), "junk"
                elif w == 3:
                    text = "\n".join(_MENU[int(i)] for i in rng.integers(0, 3, 12))
                    name = "menu"
                else:
                    cut = int(rng.integers(1, len(picks))) if cuts[k] < 0.3 else len(picks)
                    text = " ".join(picks[:cut])
                    if cut < len(picks):
                        text += "\n" + " ".join(picks[cut:])
                    name = "base"
                    pool.append(text)
                counts[name] += 1
                lines.append(json.dumps({"id": f"d{lo + k:07d}", "text": text}))
            fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return counts


# -- the child: one size, one fresh workspace -----------------------------------------------
def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def child(pool: Path, work: Path) -> dict:
    from pipelines.catalog import Catalog
    from pipelines.dedup import dedup, sign_new
    from pipelines.ingest import ingest
    from pipelines.score import rule_scan
    from pipelines.settings import Settings

    shutil.rmtree(work, ignore_errors=True)
    catalog = Catalog(work / "home").init()
    settings = Settings()
    out: dict = {"start_rss_mb": _status_mb("VmRSS")}
    facts: dict = {}

    def step(name: str, fn) -> None:
        _reset_peak()
        out[f"{name}_start_mb"] = _status_mb("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        facts[name] = fn()
        out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_cpu_s"] = time.process_time() - c0
        out[f"{name}_peak_mb"] = _status_mb("VmHWM")

    step("ingest", lambda: ingest(catalog, str(pool), role="pool", round_=1))
    step("sign", lambda: sign_new(catalog, settings.dedup, 1))
    step("cluster", lambda: dedup(catalog, settings.dedup, 1))
    step("rules", lambda: rule_scan(catalog, settings, 1))
    # clear_refs resets ru_maxrss too: the run's peak is the highest step peak
    out["peak_rss_mb"] = max(out[f"{s}_peak_mb"] for s in STEPS)
    ing, dd, rules = facts["ingest"], facts["cluster"], facts["rules"]
    out |= {
        "added": ing.added,
        "exact_duplicates": ing.duplicates,
        "signed": facts["sign"],
        "buckets": dd.buckets,
        "candidate_pairs": dd.candidate_pairs,
        "near_duplicates": dd.rejected,
        "ruled": rules[0],
        "rule_rejects": rules[1],
    }
    return out


def spawn(pool: Path, work: Path, log: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(pool), str(work)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- main ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--pool", choices=("realistic", "adversarial"), default="realistic")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the pool files and workspaces")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "children.log"
    rows = []
    for n in args.sizes:
        pool = args.work / f"pool-{args.pool}-{n}.jsonl"
        if not pool.exists():
            t0 = time.perf_counter()
            counts = build_pool(n, args.pool, args.seed, pool)
            print(
                f"pool {n:,} ({args.pool}): {counts}, {time.perf_counter() - t0:.0f} s", flush=True
            )
        r = spawn(pool, args.work / f"run-{n}", log)
        print(f"  {n:,}: {json.dumps(r)}", flush=True)
        rows.append((n, r))
        if not args.keep:
            shutil.rmtree(args.work / f"run-{n}", ignore_errors=True)
            pool.unlink()

    print_tables(rows, args.pool)


def print_tables(rows: list[tuple[int, dict]], pool: str) -> None:
    print(f"\n## Peak RSS per step (MB), {pool} pool, one process per size\n")
    print(
        "| docs | after imports | ingest | sign | buckets + cluster + decide | rules | whole run "
        "| × 1st size | wall s | CPU s | docs/s (CPU) | LSH buckets ≥ 2 | candidate pairs "
        "| near dups | exact dups |"
    )
    print("|---:|" + "---:|" * 14)
    first = rows[0][1]["peak_rss_mb"] if rows else 1.0
    for n, r in rows:
        wall = sum(r[f"{s}_s"] for s in STEPS)
        cpu = sum(r[f"{s}_cpu_s"] for s in STEPS)
        peaks = " | ".join(f"{r[f'{s}_peak_mb']:,.0f}" for s in STEPS)
        print(
            f"| {n:,} | {r['start_rss_mb']:,.0f} | {peaks} | {r['peak_rss_mb']:,.0f} | "
            f"{r['peak_rss_mb'] / first:.2f} | {wall:,.1f} | {cpu:,.1f} | {n / cpu:,.0f} | "
            f"{r['buckets']:,} | {r['candidate_pairs']:,} | {r['near_duplicates']:,} | "
            f"{r['exact_duplicates']:,} |"
        )
    print("\n## Seconds per step (wall / CPU)\n")
    print("| docs | " + " | ".join(STEPS) + " |")
    print("|---:|" + "---:|" * len(STEPS))
    for n, r in rows:
        cells = " | ".join(f"{r[f'{s}_s']:,.1f} / {r[f'{s}_cpu_s']:,.1f}" for s in STEPS)
        print(f"| {n:,} | {cells} |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(Path(sys.argv[2]), Path(sys.argv[3]))))
    else:
        main()
