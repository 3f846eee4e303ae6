"""The four arms of ``datawall experiment`` (step 3 of :mod:`pipelines.experiment`).

All four are drawn from the pool; the validation set is never in an arm and the trusted
set is in none, so the arms differ only in how the pool was filtered:

- ``curated``: pool candidates whose latest decision is accept (rules, bar or experts),
  with the experts' corrected text where they fixed it (``accepted_texts``);
- ``random``: a seeded uniform sample of pool candidates with the same number of *tokens*
  as ``curated``, another per seed (documents vary from a 3-word fragment to a sentence
  repeated 25 times, so equal tokens, not equal documents, gives both the same repetition);
- ``full``: every ingested pool candidate (exact duplicates included, quarantine not);
- ``heuristic``: pool candidates no heuristic rule and no exact/near dedup rejected (no
  model-based decision).

A pool of prompt/response pairs (candidates of kind ``pair``) makes a **pair experiment**: the
same four arms drawn from the pool's pairs (``curated`` = the accepted pairs, experts'
rewritten responses included, as corrected text is for text; ``full`` = all ingested pairs,
rewrites not included), trained as ``Pair(prompt, response)`` on the response tokens only. A text
experiment draws from the pool's plain texts only, as it always did. Tokens count as
trained: BOS + prefix + response + EOS for a pair (the masked prompt tokens too, since they
fill the windows and cost the same compute), BOS + text + EOS for a text.

The selection is frozen in ``HOME/experiments/ID/arms.json`` the first time, so a resumed
experiment trains on the same data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.annotate_pairs import REWRITE_SOURCE  # an expert's rewritten response
from pipelines.catalog import Catalog
from scoring.heuristics import RULE_REASONS
from scoring.pairs import PAIR_RULE_REASONS
from trainer.data import Example, Pair, render_prefix

ARMS = ("curated", "random", "full", "heuristic")
DEDUP_REASONS = ("exact_duplicate", "near_duplicate")
MANIFEST = "arms.json"


class ExperimentError(ValueError):
    """A bad option or an experiment that cannot run (e.g. an empty arm)."""


@dataclass(frozen=True)
class Arm:
    """The data of one arm for one seed (only ``random`` differs between seeds)."""

    name: str
    seed: int
    candidate_ids: list[str]
    texts: list[Example]  # plain texts, or Pairs in a pair experiment

    @property
    def tokens(self) -> int:
        return count_tokens(self.texts)


def count_tokens(texts: list[Example]) -> int:
    """Byte tokens of ``texts`` as packed for training: BOS + UTF-8 bytes + EOS each; a pair's
    bytes are its prefix's (``render_prefix``, the masked prompt) and its response's."""
    return sum(_tokens(t) for t in texts)


def _tokens(example: Example) -> int:
    if isinstance(example, Pair):
        return len(render_prefix(example.prompt).encode("utf-8")) + _tokens(example.response)
    return len(example.encode("utf-8")) + 2


def _example(row: dict[str, Any]) -> Example:
    return Pair(row["prompt"], row["text"]) if row["kind"] == "pair" else row["text"]


def experiment_kind(catalog: Catalog) -> str:
    """``pair`` when the pool holds prompt/response pairs, else ``text``."""
    n = catalog.scalar(
        "SELECT count(*) FROM candidates WHERE role = 'pool' AND coalesce(kind, 'text') = 'pair'"
    )
    return "pair" if n else "text"


def _ids(catalog: Catalog, sql: str, params: list[Any] | None = None) -> list[str]:
    return catalog.query(sql, params).column("candidate_id").to_pylist()


def validation_examples(catalog: Catalog, kind: str) -> list[Example]:
    """The validation set of an experiment of ``kind``: its texts, or its pairs."""
    rows = catalog.named("role_texts", ["validation"]).to_pylist()
    return [_example(r) for r in rows if r["kind"] == kind]


def select_arm_ids(catalog: Catalog, seeds: list[int], kind: str = "text") -> dict[str, list[str]]:
    """Candidate ids per arm (``random-sSEED`` per seed), each sorted by content; pool
    candidates of ``kind`` (text or pair) only."""
    order = " ORDER BY c.content_hash, c.candidate_id"
    # an expert's rewritten response is a pool candidate of its own: curated only
    of_kind = " AND coalesce(c.kind, 'text') = ? AND c.source IS DISTINCT FROM ?"
    kind_params = [kind, REWRITE_SOURCE]
    curated = _ids(
        catalog,
        "SELECT a.candidate_id FROM accepted_texts a JOIN candidates c USING (candidate_id) "
        "WHERE a.kind = ?" + order,
        [kind],
    )
    full = _ids(
        catalog,
        "SELECT candidate_id FROM candidates c WHERE c.role = 'pool'" + of_kind + order,
        kind_params,
    )
    heuristic = _ids(
        catalog,
        "SELECT candidate_id FROM candidates c WHERE c.role = 'pool'" + of_kind + " AND "
        "candidate_id NOT IN (SELECT candidate_id FROM decisions WHERE decision = 'reject' "
        "AND list_contains(?, reason))" + order,
        [*kind_params, [*RULE_REASONS, *PAIR_RULE_REASONS, *DEDUP_REASONS]],
    )
    out = {"curated": curated, "full": full, "heuristic": heuristic}
    pool = catalog.query(
        "SELECT candidate_id, text, coalesce(kind, 'text') AS kind, prompt FROM candidates c "
        "WHERE role = 'pool'" + of_kind,
        kind_params,
    ).to_pylist()
    lengths = {r["candidate_id"]: _tokens(_example(r)) for r in pool}
    accepted = catalog.query(
        "SELECT text, kind, prompt FROM accepted_texts WHERE kind = ?", [kind]
    ).to_pylist()
    target = count_tokens([_example(r) for r in accepted])
    for seed in seeds:
        out[f"random-s{seed}"] = random_sample(full, lengths, target, seed)
    return out


def random_sample(ids: list[str], tokens: dict[str, int], target: int, seed: int) -> list[str]:
    """A seeded uniform sample of ``ids`` whose tokens first reach ``target``."""
    chosen, total = set(), 0
    for i in np.random.default_rng([seed, 0x5EED]).permutation(len(ids)):
        if total >= target:
            break
        chosen.add(ids[i])
        total += tokens[ids[i]]
    return [i for i in ids if i in chosen]  # in the order of ``ids``


def frozen_arm_ids(
    catalog: Catalog, run_dir: Path, seeds: list[int], kind: str = "text"
) -> dict[str, list[str]]:
    """The arms' ids from ``run_dir/arms.json``, selecting (and saving) what is missing."""
    path = run_dir / MANIFEST
    saved = json.loads(path.read_text()) if path.exists() else {}
    wanted = [a for a in ARMS if a != "random"] + [f"random-s{s}" for s in seeds]
    if all(k in saved for k in wanted):
        return saved
    fresh = select_arm_ids(catalog, seeds, kind)
    merged = {**fresh, **saved}  # never reselect an arm that was already trained on
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=0))
    os.replace(tmp, path)
    return merged


def arm_data(catalog: Catalog, arm_ids: dict[str, list[str]], name: str, seed: int) -> Arm:
    """Texts (or pairs) of one arm: the experts' corrected text for curated, else the
    ingested text."""
    key = f"random-s{seed}" if name == "random" else name
    ids = arm_ids[key]
    if not ids:
        raise ExperimentError(
            f"arm {name!r} is empty: no pool candidate qualifies (curated: accepted ones; "
            "run more rounds, raise --budget, or check the decisions with datawall sql)"
        )
    view = "accepted_texts" if name == "curated" else "candidates"
    rows = catalog.query(
        f"SELECT candidate_id, text, coalesce(kind, 'text') AS kind, prompt FROM {view} "
        "WHERE list_contains(?, candidate_id)",
        [ids],
    ).to_pylist()
    text = {r["candidate_id"]: _example(r) for r in rows}
    missing = [i for i in ids if i not in text]
    if missing:
        raise ExperimentError(
            f"arm {name!r}: {len(missing)} frozen candidate(s) no longer qualify "
            f"(first {missing[0]}); start a new experiment in a fresh workspace"
        )
    return Arm(name, seed, ids, [text[i] for i in ids])
