import pytest
import torch

from trainer.checkpoint import load_model, read_config, save_checkpoint
from trainer.config import ModelConfig, TrainConfig
from trainer.evaluate import corpus_bpb
from trainer.models import build_model
from trainer.sample import sample_texts
from trainer.train import train
from trainer.transformer import TransformerLanguageModel, rotary


def tiny(**kw):
    return ModelConfig(**(dict(arch="transformer", d_model=32, n_layers=2, n_heads=2) | kw))


def test_build_model_picks_the_arch():
    assert isinstance(build_model(tiny()), TransformerLanguageModel)
    assert type(build_model(ModelConfig(d_model=32, n_layers=1))).__name__ == "SSMLanguageModel"
    with pytest.raises(ValueError, match="needs arch='transformer'"):
        TransformerLanguageModel(ModelConfig())


def test_forward_shapes():
    model = TransformerLanguageModel(tiny())
    assert model(torch.randint(0, 258, (3, 11))).shape == (3, 11, 264)


@pytest.mark.parametrize("seqlen", [1, 13])
def test_step_matches_forward(seqlen):
    torch.manual_seed(0)
    model = TransformerLanguageModel(tiny()).eval()
    ids = torch.randint(0, 258, (3, seqlen))
    with torch.no_grad():
        full = model(ids)
        cache = model.allocate_inference_cache(3)
        stepped = torch.stack([model.step(ids[:, t], cache) for t in range(seqlen)], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)


def test_forward_is_causal_and_position_aware():
    torch.manual_seed(0)
    model = TransformerLanguageModel(tiny()).eval()
    ids = torch.randint(0, 258, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 258
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :10], model(changed)[:, :10])
        # without positions, a causal transformer sees its prefix as a bag of tokens
        ab, ba = model(torch.tensor([[65, 66, 67]])), model(torch.tensor([[66, 65, 67]]))
    assert not torch.allclose(ab[0, -1], ba[0, -1], atol=1e-4)


def test_rotary_preserves_norm_and_relative_angle():
    q, k = torch.randn(2, 1, 1, 1, 8).unbind(0)
    assert torch.allclose(rotary(q, 5).norm(), q.norm())
    # <R_m q, R_n k> depends only on m - n
    assert torch.allclose((rotary(q, 7) * rotary(k, 3)).sum(), (rotary(q, 4) * rotary(k, 0)).sum())


def test_checkpoint_records_arch_and_loads_back(tmp_path):
    torch.manual_seed(0)
    model = TransformerLanguageModel(tiny())
    save_checkpoint(tmp_path, model, {"step": 0})
    assert read_config(tmp_path)["model"]["arch"] == "transformer"
    loaded, cfg = load_model(tmp_path)
    assert isinstance(loaded, TransformerLanguageModel) and cfg == tiny()
    ids = torch.randint(0, 258, (2, 7))
    torch.testing.assert_close(loaded(ids), model(ids))


def test_trains_evaluates_and_samples(tmp_path):
    texts = [f"The quick brown fox {i} jumps over the lazy dog. " * 3 for i in range(20)]
    tc = TrainConfig(seq_len=32, batch_size=4, steps=8, warmup_steps=2, checkpoint_every=0)
    result = train(texts, texts[:2], tiny(), tc, tmp_path)
    assert result.losses[-1] < result.losses[0] - 0.5
    model, _ = load_model(tmp_path)
    assert corpus_bpb(model, texts[:2], seq_len=32) == pytest.approx(result.val_bpb)
    assert len(sample_texts(model, 2, max_bytes=10, seed=1)) == 2
