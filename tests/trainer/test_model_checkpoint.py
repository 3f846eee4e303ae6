import json

import pytest
import torch

from trainer.checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointError,
    load_model,
    load_train_state,
    read_config,
    save_checkpoint,
)
from trainer.config import ModelConfig
from trainer.model import SSMLanguageModel

CFG = ModelConfig(d_model=32, n_layers=2, d_state=8, headdim=16, chunk_size=8)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = SSMLanguageModel(CFG)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 258, (1, 5))).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, model, {"step": 3}, train_state={"optimizer": opt.state_dict()})
    return tmp_path, model, opt


def test_round_trip(saved):
    path, model, opt = saved
    loaded, cfg = load_model(path)
    assert cfg == CFG
    for (k, v), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)
    assert read_config(path)["step"] == 3
    state = load_train_state(path)
    assert torch.equal(
        state["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert not [p.name for p in path.iterdir() if ".tmp" in p.name]  # no temporary leftovers


def test_truncated_weights_raise(saved):
    path = saved[0]
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_truncated_weights_without_checksum_raise(saved):
    path = saved[0]
    config = json.loads((path / CONFIG).read_text())
    del config["files"]
    (path / CONFIG).write_text(json.dumps(config))
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="cannot read model.safetensors"):
        load_model(path)


def test_missing_and_corrupt_config_raise(saved, tmp_path):
    path = saved[0]
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_model(tmp_path / "nowhere")
    (path / CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)


def test_mismatched_config_raises(saved):
    path = saved[0]
    config = json.loads((path / CONFIG).read_text())
    config["model"]["d_state"] = 16
    del config["files"]
    (path / CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match the model config"):
        load_model(path)
