import numpy as np
import pytest
import torch

from scoring.loss import example_bpb
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
