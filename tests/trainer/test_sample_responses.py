"""The model's own answer to a prompt: teacher-forced prefix through ``step``, then sampling."""

from __future__ import annotations

import pytest
import torch
from sample_helpers import greedy_by_forward

from scoring.loss import LossScorer
from trainer.checkpoint import load_model
from trainer.config import ModelConfig, TrainConfig
from trainer.data import render_prefix
from trainer.model import SSMLanguageModel
from trainer.models import build_model
from trainer.sample import sample_responses
from trainer.train import train

MODEL = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=16)
PROMPTS = ["Why?", "What does abs do in Python, and when would I use it?", "", "ÿ ✓"]


@pytest.fixture(scope="module", params=["ssm", "transformer"])
def model(request):
    torch.manual_seed(0)
    if request.param == "transformer":
        return build_model(ModelConfig(arch="transformer", d_model=32, n_layers=2, n_heads=2))
    return SSMLanguageModel(MODEL)


def test_ragged_prompts_in_one_batch_answer_as_if_alone(model):
    batched = sample_responses(model, PROMPTS, max_bytes=12, temperature=0, batch_size=8)
    alone = [sample_responses(model, [p], max_bytes=12, temperature=0)[0] for p in PROMPTS]
    assert batched == alone
    # the recurrent answer is the parallel form's answer: the prefix really was read
    assert batched[0] == greedy_by_forward(model, PROMPTS[0], 12)
    assert batched[1] == greedy_by_forward(model, PROMPTS[1], 12)
    assert all(len(a.encode()) <= 12 for a in batched)


def test_same_seed_same_answers_and_order_kept(model):
    a = sample_responses(model, PROMPTS, max_bytes=16, temperature=1.0, seed=5, batch_size=2)
    assert a == sample_responses(
        model, PROMPTS, max_bytes=16, temperature=1.0, seed=5, batch_size=2
    )
    assert a != sample_responses(
        model, PROMPTS, max_bytes=16, temperature=1.0, seed=6, batch_size=2
    )
    assert sample_responses(model, [], max_bytes=8) == []
    assert sample_responses(model, PROMPTS, max_bytes=0) == [""] * len(PROMPTS)
    with pytest.raises(ValueError, match="temperature"):
        sample_responses(model, PROMPTS, temperature=-1.0)


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    """A byte model overfit on one question/answer pair (plain-text training of the layout)."""
    pairs = [("What does abs do?", "Return the absolute value.")]
    docs = [render_prefix(q) + a for q, a in pairs] * 16
    out = tmp_path_factory.mktemp("answerer")
    cfg = TrainConfig(
        seq_len=64, batch_size=8, steps=120, lr=3e-3, warmup_steps=10, checkpoint_every=0
    )
    train(docs, [], ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16), cfg, out)
    return load_model(out)[0], pairs


@pytest.mark.slow
def test_overfit_model_answers_its_question_and_stops_at_eos(answerer):
    model, pairs = answerer
    scorer = LossScorer(model)
    answers = scorer.respond([q for q, _ in pairs], max_bytes=64, temperature=0, seed=0)
    # the answer, without the prompt, ended by EOS well before max_bytes
    assert answers == [a for _, a in pairs]
