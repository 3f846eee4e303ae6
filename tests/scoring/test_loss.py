import math

import numpy as np
import pytest
import torch

from scoring.loss import LossScorer, example_bpb, hf_example_bpb
from trainer.checkpoint import load_model
from trainer.config import ModelConfig, TrainConfig
from trainer.model import SSMLanguageModel
from trainer.train import train

MODEL = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16)
TEXTS = ["short", "a somewhat longer text, with punctuation!", "", "x", "héllo wörld " * 4, "mid"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SSMLanguageModel(MODEL)


def test_batched_equals_one_by_one_and_order_preserved(model):
    calls = []
    batched = example_bpb(model, TEXTS, batch_tokens=64, progress=calls.append)
    single = np.array([example_bpb(model, [t])[0] for t in TEXTS])
    assert batched.dtype == np.float64 and batched.shape == (len(TEXTS),)
    np.testing.assert_allclose(batched, single, rtol=1e-5, equal_nan=True)
    assert np.isnan(batched[2])  # empty text: no byte to predict
    assert sum(calls) == len(TEXTS) and len(calls) > 2  # several batches
    reordered = example_bpb(model, TEXTS[::-1], batch_tokens=64)
    np.testing.assert_allclose(reordered[::-1], batched, rtol=1e-5, equal_nan=True)
    assert model.training


def test_max_bytes_truncates(model):
    long = "abcdefgh" * 10
    np.testing.assert_allclose(
        example_bpb(model, [long], max_bytes=8), example_bpb(model, [long[:8]]), rtol=1e-6
    )


def test_empty_input(model):
    out = example_bpb(model, [])
    assert out.shape == (0,) and out.dtype == np.float64


def test_trained_model_prefers_its_training_text(tmp_path):
    text = "the cat sat on the mat. " * 8
    cfg = TrainConfig(seq_len=64, batch_size=4, steps=30, warmup_steps=3, checkpoint_every=0)
    train([text] * 8, [], MODEL, cfg, tmp_path)
    trained, _ = load_model(tmp_path)
    rng = np.random.default_rng(0)
    noise = bytes(rng.integers(32, 127, size=len(text), dtype=np.uint8)).decode("ascii")
    seen, random = example_bpb(trained, [text, noise])
    assert seen < random - 2.0


# -- Hugging Face causal LMs ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from tiny_hf import save_tiny_hf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = save_tiny_hf(tmp_path_factory.mktemp("gpt2"))
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


HF_TEXTS = ["short", "", "a somewhat longer text, with punctuation!", "héllo wörld ✓ " * 5]


def test_hf_bpb_is_token_loss_over_utf8_bytes(tiny_gpt2):
    model, tok = tiny_gpt2
    got = hf_example_bpb(model, tok, HF_TEXTS, batch_tokens=40)
    assert got.dtype == np.float64 and got.shape == (4,) and np.isnan(got[1])
    for text, value in zip(HF_TEXTS, got, strict=True):
        if not text:
            continue
        ids = torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False).input_ids]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        nats = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        assert value == pytest.approx(nats / math.log(2) / len(text.encode("utf-8")), rel=1e-4)
    # padding and batching change nothing; order is the input's
    again = hf_example_bpb(model, tok, HF_TEXTS[::-1], batch_tokens=10_000)
    np.testing.assert_allclose(again[::-1], got, rtol=1e-4, equal_nan=True)


def test_hf_max_bytes_cuts_on_a_character_boundary(tiny_gpt2):
    model, tok = tiny_gpt2
    text = "é" * 20  # 2 bytes each: 7 bytes keep 3 characters
    np.testing.assert_allclose(
        hf_example_bpb(model, tok, [text], max_bytes=7),
        hf_example_bpb(model, tok, ["ééé"]),
        rtol=1e-6,
    )


def test_scorer_samples_from_an_hf_model(tiny_gpt2):
    model, tok = tiny_gpt2
    texts = LossScorer(model, tok).sample(3, max_bytes=20, temperature=1.0, seed=0)
    assert len(texts) == 3 and all(len(t.encode("utf-8")) <= 20 for t in texts)
    assert texts == LossScorer(model, tok).sample(3, max_bytes=20, temperature=1.0, seed=0)
