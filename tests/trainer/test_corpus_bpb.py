import math

import torch

from trainer.config import ModelConfig
from trainer.evaluate import corpus_bpb
from trainer.model import SSMLanguageModel


def test_untrained_model_is_near_uniform_and_batching_does_not_matter():
    torch.manual_seed(0)
    model = SSMLanguageModel(ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16))
    texts = ["hello world, " * 5, "another document", "x"]
    bpb = corpus_bpb(model, texts, seq_len=16, batch_size=2)
    assert abs(bpb - math.log2(264)) < 0.1  # small init: close to uniform over the vocab
    assert math.isclose(bpb, corpus_bpb(model, texts, seq_len=16, batch_size=64), rel_tol=1e-6)
    assert math.isnan(corpus_bpb(model, []))
