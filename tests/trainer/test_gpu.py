"""CUDA checks: the bf16 autocast training path for both architectures (``pytest -m gpu``)."""

import math

import pytest
import torch

from trainer.checkpoint import load_model
from trainer.config import ModelConfig, TrainConfig
from trainer.models import build_model
from trainer.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TEXTS = [f"The quick brown fox {i} jumps over the lazy dog. " * 4 for i in range(40)]
VAL = ["The lazy dog sleeps while the quick brown fox jumps."]
ARCHS = {
    "ssm": ModelConfig(d_model=64, n_layers=2, d_state=16, headdim=32, chunk_size=32),
    "transformer": ModelConfig(arch="transformer", d_model=64, n_layers=2, n_heads=2),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_bf16_training_on_cuda(arch, tmp_path):
    tc = TrainConfig(
        seq_len=64, batch_size=8, steps=30, warmup_steps=3, checkpoint_every=0, device="cuda"
    )
    result = train(TEXTS, VAL, ARCHS[arch], tc, tmp_path)
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < result.losses[0] - 1.0
    assert math.isfinite(result.val_bpb) and result.tokens_per_s > 0
    model, _ = load_model(tmp_path, "cpu")  # a GPU checkpoint loads on the CPU
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("arch", list(ARCHS))
def test_cuda_bf16_forward_matches_cpu_fp32(arch):
    torch.manual_seed(0)
    model = build_model(ARCHS[arch]).eval()
    ids = torch.randint(0, 258, (2, 100))
    with torch.no_grad():
        ref = model(ids)
        gpu = model.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = gpu(ids.cuda()).float().cpu()
    assert out.shape == ref.shape
    # bf16 keeps ~3 significant digits: compare with a tolerance scaled to the logits
    torch.testing.assert_close(out, ref, atol=0.05 * ref.abs().max().item(), rtol=0.05)
