import pytest
import torch

from trainer.config import ModelConfig
from trainer.model import SSMLanguageModel


def tiny(**kw):
    base = dict(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=8)
    return ModelConfig(**(base | kw))


def test_forward_shapes_and_param_count():
    model = SSMLanguageModel(tiny())
    logits = model(torch.randint(0, 258, (3, 11)))
    assert logits.shape == (3, 11, 264)
    assert model.num_params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("seqlen", [1, 13])
def test_step_matches_forward(ngroups, seqlen):
    torch.manual_seed(0)
    model = SSMLanguageModel(tiny(ngroups=ngroups)).eval()
    ids = torch.randint(0, 258, (3, seqlen))
    with torch.no_grad():
        full = model(ids)
        cache = model.allocate_inference_cache(3)
        stepped = torch.stack([model.step(ids[:, t], cache) for t in range(seqlen)], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)


def test_ref_and_chunked_scan_give_the_same_model():
    torch.manual_seed(0)
    model = SSMLanguageModel(tiny(scan_impl="torch"))
    ref = SSMLanguageModel(tiny(scan_impl="ref"))
    ref.load_state_dict(model.state_dict())
    ids = torch.randint(0, 258, (2, 20))
    torch.testing.assert_close(model(ids), ref(ids), atol=1e-5, rtol=1e-5)


def test_forward_is_causal():
    torch.manual_seed(0)
    model = SSMLanguageModel(tiny()).eval()
    ids = torch.randint(0, 258, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 258
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :10], model(changed)[:, :10])
