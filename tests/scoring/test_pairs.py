"""Pairs: conditional bits per byte, the pair score, the rules for answers, per-example routing."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from scoring.config import HeuristicConfig, PairsConfig
from scoring.heuristics import heuristic_signals, rule_reasons
from scoring.loss import LossScorer, example_bpb, hf_example_bpb
from scoring.pairs import (
    ABOVE_MODEL,
    BELOW_MODEL,
    GENERIC,
    GENERIC_SQL,
    NEAR_MODEL,
    UNFINISHED,
    answer_rule_reasons,
    is_finished,
    pair_rule_config,
    pair_score,
    relevance,
    route_pairs,
    sigmoid,
)
from trainer.config import ModelConfig
from trainer.data import render_prefix
from trainer.model import SSMLanguageModel
from trainer.sample import prompt_tail
from trainer.tokenizer import ByteTokenizer

MODEL = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SSMLanguageModel(MODEL)


def hand_bpb(model, prompt: str, response: str) -> float:
    """Bits of the response's bytes after [BOS] + prefix, over its bytes, by hand."""
    tok = ByteTokenizer()
    head = [tok.BOS, *render_prefix(prompt).encode()]
    body = list(response.encode())
    ids = torch.tensor([head + body])
    with torch.no_grad():
        logits = model(ids[:, :-1])[0].float()  # (len - 1, vocab)
    nll = F.cross_entropy(logits, ids[0, 1:], reduction="none")
    return nll[len(head) - 1 :].sum().item() / math.log(2) / len(body)


# -- conditional bits per byte -------------------------------------------------------------
def test_conditional_bpb_counts_only_the_response(model):
    prompts = ["What does abs do?", "Why?", "Ünïcödé question ✓ with a longer body"]
    responses = ["Return the absolute value.", "Because.", "héllo"]
    got = example_bpb(model, responses, prompts, batch_tokens=64)
    for p, r, value in zip(prompts, responses, got, strict=True):
        assert value == pytest.approx(hand_bpb(model, p, r), rel=1e-4)
    # the prompt changes the number (it is context, not ignored) ...
    plain = example_bpb(model, responses)
    assert not np.allclose(got, plain)
    # ... and a None prompt scores the row as plain text, in a mixed batch
    mixed = example_bpb(model, responses, [prompts[0], None, prompts[2]])
    assert mixed[1] == pytest.approx(plain[1], rel=1e-5)
    assert mixed[0] == pytest.approx(got[0], rel=1e-5)


def test_conditional_bpb_batching_and_edge_cases(model):
    prompts = ["a", "a much longer prompt than the others, to pad the batch", "b", "c"]
    responses = ["one", "two two", "", "x" * 40]
    batched = example_bpb(model, responses, prompts, batch_tokens=80)
    single = [example_bpb(model, [r], [p])[0] for p, r in zip(prompts, responses, strict=True)]
    np.testing.assert_allclose(batched, single, rtol=1e-5, equal_nan=True)
    assert np.isnan(batched[2])  # an empty response has no byte to predict
    # max_bytes cuts the response, not the prompt
    np.testing.assert_allclose(
        example_bpb(model, ["x" * 40], ["c"], max_bytes=8), example_bpb(model, ["x" * 8], ["c"])
    )
    with pytest.raises(ValueError, match="2 texts but 1 prompts"):
        example_bpb(model, ["a", "b"], ["p"])


def test_long_prompt_keeps_its_end(model):
    prompt = "background " * 30 + "Question: what does len do?"
    assert prompt_tail(prompt, 27) == "Question: what does len do?"
    assert prompt_tail("é" * 5, 3) == "é"  # a split character is dropped
    assert prompt_tail("short", 0) == ""
    cut = example_bpb(model, ["It counts."], [prompt], max_prompt_bytes=27)
    assert cut[0] == pytest.approx(hand_bpb(model, prompt[-27:], "It counts."), rel=1e-4)


def test_scorer_bpb_takes_prompts(model):
    scorer = LossScorer(model)
    got = scorer.bpb(["Return x."], ["What?"], max_bytes=64)
    assert got[0] == pytest.approx(hand_bpb(model, "What?", "Return x."), rel=1e-4)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from tiny_hf import save_tiny_hf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = save_tiny_hf(tmp_path_factory.mktemp("gpt2"))
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_hf_conditional_bpb_encodes_prefix_and_response_apart(tiny_gpt2):
    model, tok = tiny_gpt2
    prompts, responses = ["Each candidate is scored", "Why?"], ["by the model.", ""]
    got = hf_example_bpb(model, tok, responses, prompts)
    assert np.isnan(got[1])
    head = [tok.bos_token_id, *tok(render_prefix(prompts[0]), add_special_tokens=False).input_ids]
    body = tok(responses[0], add_special_tokens=False).input_ids
    ids = torch.tensor([head + body])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1]
    nll = F.cross_entropy(logits, ids[0, 1:], reduction="none")[len(head) - 1 :]
    want = nll.sum().item() / math.log(2) / len(responses[0].encode())
    assert got[0] == pytest.approx(want, rel=1e-4)


def test_hf_respond_returns_the_answer_only(tiny_gpt2):
    model, tok = tiny_gpt2
    scorer = LossScorer(model, tok)
    prompts = ["Each candidate", "The scheduler starts a new round every night and"]
    a = scorer.respond(prompts, max_bytes=24, temperature=0.7, seed=3)
    assert a == scorer.respond(prompts, max_bytes=24, temperature=0.7, seed=3)
    assert len(a) == 2 and all(len(x.encode()) <= 24 for x in a)
    assert all("### Question" not in x for x in a)
    greedy = scorer.respond(prompts, max_bytes=24, temperature=0, seed=0)
    alone = [scorer.respond([p], max_bytes=24, temperature=0, seed=0)[0] for p in prompts]
    assert greedy == alone  # left padding leaves each answer as if it were alone


# -- the pair score --------------------------------------------------------------------------
def test_pair_score_is_logit_quality_plus_weighted_relevance():
    rel = relevance(np.array([2.0, 1.5, np.nan]), np.array([1.0, 1.6, 1.0]))
    np.testing.assert_allclose(rel, [1.0, -0.1, np.nan])
    cfg = PairsConfig(relevance_weight=2.0, max_quality_logit=3.0)
    score = pair_score(np.array([0.5, 0.8, 0.1]), rel, cfg)
    np.testing.assert_allclose(score, [2.0, math.log(4) - 0.2, math.log(1 / 9)], rtol=1e-9)
    # the classifier's vote is clipped: 0.999 and 1.0 count the same
    np.testing.assert_allclose(
        pair_score(np.array([0.999, 1.0, 0.0]), np.zeros(3), cfg), [3, 3, -3]
    )
    np.testing.assert_allclose(sigmoid(np.array([0.0, math.log(3)])), [0.5, 0.75])


def test_pair_score_charges_incoherence_only_with_enough_words():
    cfg = PairsConfig(relevance_weight=0.0, coherence_weight=2.0, coherence_min_words=8)
    q, rel = np.full(4, 0.5), np.zeros(4)
    gain = np.array([3.0, 0.5, 0.5, np.nan])  # coherent, salad, short salad, unknown
    words = np.array([20, 20, 3, 20])
    got = pair_score(q, rel, cfg, order_gain=gain, n_words=words, min_order_gain=1.5)
    np.testing.assert_allclose(got, [0.0, -2.0, 0.0, 0.0])
    # no floor (no trusted texts): no charge
    assert (pair_score(q, rel, cfg, order_gain=gain, n_words=words, min_order_gain=None) == 0).all()


# -- rules for answers -----------------------------------------------------------------------
def test_pair_rules_keep_short_answers_and_reject_degenerate_ones():
    text_cfg = HeuristicConfig()
    cfg = pair_rule_config(text_cfg)
    answers = [
        "Return the absolute value of x.",  # short, few stop words: fine as an answer
        "42",
        "x ** 2 + 1",
        "- first\n- second",
        "",
        "the same line\nthe same line\nthe same line\nthe same line",
        " ".join(["loop loop loop loop loop"] * 6),
    ]
    signals = heuristic_signals(answers)
    as_text = rule_reasons(signals, text_cfg).to_pylist()
    assert as_text[0] == "too_short"  # what the text rules would do to a good answer
    got = rule_reasons(signals, cfg).to_pylist()
    assert got[:4] == [None, None, None, None]
    assert got[4] == "too_short"  # empty
    assert got[5] == "repeated_lines" and got[6] == "repeated_ngrams"


FINISHED = [
    "Return the absolute value of x.",
    "Raise ValueError if the list is empty!",
    "Is it sorted? Only if you ask for it?",
    "The keyword arguments are the following:",
    'The function returns the string "done."',
    "Wrap it as `sorted(items, key=len)`.",
    "Call it as sorted(items, key=len, reverse=True)",  # code ends at its own bracket
    "Copy it with the call `shutil.copy(src, dst)`",  # ... or backtick
    "```\nimport os\nprint(os.getcwd())\n```",  # a fenced code answer
    "The answer is the word \u201cyes\u201d",
    "It returns a list (see the notes above.)",
]
UNFINISHED_ANSWERS = [
    "Return a new list containing all items from the",  # cut mid-sentence
    "Return the number of items in a container,",
    "Return the hexadecimal representation of an integer -",
    "The default recursion limit of the interpreter is 1000",  # a digit: C4 says unfinished
    "Return a copy of the string with the rest...",  # the writer's own mark of a cut
    "Return a copy of the string with the rest\u2026",
    "Return the value as is and then close it)",  # a bracket it never opened
]


def test_is_finished_accepts_answer_endings_and_rejects_cuts():
    assert [is_finished(t) for t in FINISHED] == [True] * len(FINISHED)
    assert [is_finished(t) for t in UNFINISHED_ANSWERS] == [False] * len(UNFINISHED_ANSWERS)
    assert not is_finished("") and not is_finished("   ")


def reasons_of(texts, cfg=None, digests=frozenset(), base=None):
    cfg = cfg or PairsConfig()
    base = pa.nulls(len(texts), pa.string()) if base is None else pa.array(base, pa.string())
    return answer_rule_reasons(texts, base, cfg, digests).to_pylist()


def test_unfinished_response_fires_on_long_cut_answers_only():
    got = reasons_of(FINISHED + UNFINISHED_ANSWERS)
    assert got == [None] * len(FINISHED) + [UNFINISHED] * len(UNFINISHED_ANSWERS)
    # short answers are exempt: 5 words < unfinished_min_words (6), and 42 is an answer
    assert reasons_of(["42", "Returns x", "Return the absolute value of"]) == [None] * 3
    assert reasons_of(["Return the absolute value of"], PairsConfig(unfinished_min_words=5)) == [
        UNFINISHED
    ]
    off = PairsConfig(unfinished_min_words=0)
    assert reasons_of(UNFINISHED_ANSWERS, off) == [None] * len(UNFINISHED_ANSWERS)
    # a text rule that fired first keeps its reason
    assert reasons_of([UNFINISHED_ANSWERS[0]], base=["repeated_lines"]) == ["repeated_lines"]


def generic_digests(rows, cfg=None):
    """``GENERIC_SQL`` over an in-memory ``candidates`` table (prompt, text, role, ...)."""
    import duckdb

    cfg = cfg or PairsConfig()
    con = duckdb.connect()
    candidates = pa.Table.from_pylist(  # noqa: F841 (read by the query by name)
        [{"kind": "pair", "role": "pool", "source": "hand", **r} for r in rows]
    )
    out = con.sql(GENERIC_SQL, params=[cfg.generic_min_words, cfg.generic_min_prompts])
    return frozenset(out.to_arrow_table().column("digest").to_pylist())


def test_generic_response_needs_two_prompts_enough_words_and_no_expert():
    canned = "Please refer to the official docs for details."
    short = "It returns a list."
    rows = [
        {"prompt": "What does abs do?", "text": canned},
        {"prompt": "What does len do?", "text": canned},
        {"prompt": "What does abs do?", "text": short},  # shared, but only 4 words
        {"prompt": "What does len do?", "text": short},
        {"prompt": "What does ord do?", "text": "Return the code point of a character."},
        {"prompt": "What does ord do?", "text": "Return the code point of a character."},
        # two rows of one prompt are one prompt (above); one answer to two prompts is generic
        {"prompt": "What does hex do?", "text": "Return the hex form of the integer."},
        {"prompt": "What does oct do?", "text": "Return the hex form of the integer."},
        # ... a rewrite by an expert neither counts nor is hit
        {"prompt": "What does bin do?", "text": "See the documentation of the module."},
        {
            "source": "expert-rewrite",
            "prompt": "What does chr do?",
            "text": "See the documentation of the module.",
        },
        {"role": "trusted", "prompt": "What does chr do?", "text": "Return the hex form."},
        {"kind": "text", "prompt": None, "text": canned},
    ]
    digests = generic_digests(rows)
    texts = [r["text"] for r in rows[:9]]
    got = reasons_of(texts, digests=digests)
    assert got == [GENERIC, GENERIC, None, None, None, None, GENERIC, GENERIC, None]
    # the set alone does not decide: a generic text with fewer words than the floor passes
    assert reasons_of([canned], PairsConfig(generic_min_words=9), digests) == [None]
    # three prompts needed: no longer generic
    assert generic_digests(rows, PairsConfig(generic_min_prompts=3)) == frozenset()
    # generic wins over unfinished where both fire
    cut = "Please see the documentation for the"
    both = generic_digests([{"prompt": p, "text": cut} for p in ("a?", "b?")])
    assert reasons_of([cut], digests=both) == [GENERIC]
    assert reasons_of([cut]) == [UNFINISHED]


# -- routing -----------------------------------------------------------------------------------
def frame(rows):
    return pa.Table.from_pylist(
        rows,
        pa.schema(
            [
                ("candidate_id", pa.string()),
                ("rule_reason", pa.string()),
                ("score", pa.float64()),
                ("own_score", pa.float64()),
            ]
        ),
    )


def test_route_pairs_by_gap_against_the_model_response():
    rows = [
        {"candidate_id": "a", "rule_reason": None, "score": 3.0, "own_score": 1.0},  # +2
        {"candidate_id": "b", "rule_reason": None, "score": -2.0, "own_score": 0.5},  # -2.5
        {"candidate_id": "c", "rule_reason": None, "score": 0.2, "own_score": 0.0},  # +0.2
        {"candidate_id": "d", "rule_reason": None, "score": 0.0, "own_score": 0.9},  # -0.9
        {"candidate_id": "e", "rule_reason": "repeated_lines", "score": None, "own_score": None},
        {"candidate_id": "f", "rule_reason": None, "score": 1.0, "own_score": 1.2},  # -0.2
        {"candidate_id": "g", "rule_reason": None, "score": 1.0, "own_score": 0.0},  # +1.0
    ]
    out = route_pairs(frame(rows), PairsConfig(margin=1.0, budget=2)).to_pylist()
    by = {r["candidate_id"]: r for r in out}
    assert [r["candidate_id"] for r in out] == list("abcdefg")  # input order
    assert (by["a"]["decision"], by["a"]["reason"]) == ("accept", ABOVE_MODEL)
    assert (by["b"]["decision"], by["b"]["reason"]) == ("reject", BELOW_MODEL)
    assert (by["e"]["decision"], by["e"]["reason"]) == ("reject", "repeated_lines")
    # exactly at the margin is still a close call
    assert by["g"]["decision"] == "hard" and by["g"]["priority"] == pytest.approx(0.0)
    hard = {k for k, r in by.items() if r["decision"] == "hard"}
    assert hard == {"c", "d", "f", "g"}
    assert all(by[k]["reason"] == NEAR_MODEL for k in hard)
    assert by["c"]["priority"] == pytest.approx(0.8)
    # the closest two are queued (c and f tie at |gap| 0.2: both fit)
    assert {k for k, r in by.items() if r["queued"]} == {"c", "f"}
    assert all(r["priority"] is None for k, r in by.items() if k not in hard)


def test_a_candidate_that_is_the_model_answer_is_never_queued():
    rows = [
        {"candidate_id": "same", "rule_reason": None, "score": 1.0, "own_score": 1.0},
        {"candidate_id": "near", "rule_reason": None, "score": 1.5, "own_score": 1.0},
    ]
    table = frame(rows).append_column("same_as_model", pa.array([True, False]))
    out = {r["candidate_id"]: r for r in route_pairs(table, PairsConfig(budget=5)).to_pylist()}
    assert out["same"]["decision"] == "hard" and out["same"]["priority"] == 0.0
    assert not out["same"]["queued"] and out["near"]["queued"]


def test_route_pairs_budget_ties_break_by_id_and_errors_are_clear():
    rows = [{"candidate_id": k, "rule_reason": None, "score": 0.5, "own_score": 0.0} for k in "zyx"]
    out = route_pairs(frame(rows), PairsConfig(budget=1)).to_pylist()
    assert [r["candidate_id"] for r in out if r["queued"]] == ["x"]
    bad = frame([{"candidate_id": "q", "rule_reason": None, "score": None, "own_score": 0.0}])
    with pytest.raises(ValueError, match="first: 'q'"):
        route_pairs(bad, PairsConfig())
    with pytest.raises(ValueError, match="missing column"):
        route_pairs(pa.table({"candidate_id": ["a"]}), PairsConfig())


def test_pairs_config_validates():
    with pytest.raises(ValueError, match="PairsConfig.margin"):
        PairsConfig(margin=0)
    with pytest.raises(ValueError, match="PairsConfig.max_response_bytes"):
        PairsConfig(max_response_bytes=0)
    with pytest.raises(ValueError, match="PairsConfig.generic_min_prompts"):
        PairsConfig(generic_min_prompts=1)
    with pytest.raises(ValueError, match="PairsConfig.unfinished_min_words"):
        PairsConfig(unfinished_min_words=-1)
    with pytest.raises(ValueError, match="PairsConfig.generic_min_words"):
        PairsConfig(generic_min_words=0)
