"""CUDA checks for instruction data (``pytest -m gpu``): masked-loss training on pairs in bf16,
conditional bits per byte and the model's own answers on the GPU against the CPU."""

import math

import pytest
import torch
from sample_helpers import greedy_by_forward

from scoring.loss import example_bpb
from trainer.config import ModelConfig, TrainConfig
from trainer.data import Pair, pack_examples
from trainer.models import build_model
from trainer.sample import sample_responses
from trainer.tokenizer import ByteTokenizer
from trainer.train import masked_loss, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PAIRS = [
    Pair(f"What does `mod.func_{i}` do?", f"Return the number {i} squared, as an int.")
    for i in range(40)
]
VAL = [Pair("What does `mod.func_7` do?", "Return the number 7 squared, as an int.")]
ARCHS = {
    "ssm": ModelConfig(d_model=64, n_layers=2, d_state=16, headdim=32, chunk_size=32),
    "transformer": ModelConfig(arch="transformer", d_model=64, n_layers=2, n_heads=2),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_bf16_pair_training_on_cuda(arch, tmp_path):
    tc = TrainConfig(
        seq_len=64, batch_size=8, steps=40, warmup_steps=3, checkpoint_every=0, device="cuda"
    )
    result = train(PAIRS, VAL, ARCHS[arch], tc, tmp_path)
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < result.losses[0] - 1.0
    assert math.isfinite(result.val_response_bpb) and result.val_response_bpb > 0


def test_masked_loss_on_cuda_matches_cpu():
    """The same windows and mask give the same masked loss and gradients on both devices."""
    torch.manual_seed(0)
    model = build_model(ARCHS["ssm"])
    packed = pack_examples(PAIRS[:8], 64, ByteTokenizer())
    windows, mask = packed.windows[:4], packed.mask[:4]
    inputs, targets = windows[:, :-1], windows[:, 1:]
    assert 0 < mask.sum() < mask.numel()  # prompts are masked out, responses kept

    def loss_and_grads(device: str):
        m = build_model(ARCHS["ssm"]).to(device)
        m.load_state_dict(model.state_dict())
        loss = masked_loss(m(inputs.to(device)), targets.to(device), mask.to(device), mask.sum())
        loss.backward()
        return loss.item(), [p.grad.detach().cpu() for p in m.parameters()]

    cpu_loss, cpu_grads = loss_and_grads("cpu")
    gpu_loss, gpu_grads = loss_and_grads("cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    for g_cpu, g_gpu in zip(cpu_grads, gpu_grads, strict=True):
        torch.testing.assert_close(g_gpu, g_cpu, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_conditional_bpb_on_cuda_matches_cpu(arch):
    torch.manual_seed(0)
    model = build_model(ARCHS[arch]).eval()
    prompts = [p.prompt for p in PAIRS[:6]] + [None]
    texts = [p.response for p in PAIRS[:6]] + ["A plain text, scored whole."]
    cpu = example_bpb(model, texts, prompts)
    gpu = example_bpb(model.cuda(), texts, prompts)
    assert gpu == pytest.approx(cpu, rel=1e-4)


def test_own_answers_on_cuda_are_the_greedy_continuation():
    """Greedy answers from the recurrent step on CUDA (ragged prompts in one batch) equal the
    argmax of the parallel forward, one whole forward per token, on the same device."""
    torch.manual_seed(0)
    model = build_model(ARCHS["ssm"]).cuda().eval()
    prompts = ["Hi?", "What does `json.dumps` do, in one sentence?", PAIRS[3].prompt]
    answers = sample_responses(model, prompts, max_bytes=16, temperature=0.0, batch_size=3)
    for prompt, answer in zip(prompts, answers, strict=True):
        assert answer == greedy_by_forward(model, prompt, 16, device="cuda")
